"""A notification daemon for hoist's tests: it owns
org.freedesktop.Notifications on the D-Bus bus at the address given as its
argument and prints each notice it receives as one JSON line, after READY.
A real D-Bus daemon and a real bus; only the rendering on a screen is left
out. Needs jeepney (Debian: python3-jeepney)."""

import json
import sys

from jeepney import HeaderFields, MessageType, new_error, new_method_return
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection

NAME = "org.freedesktop.Notifications"


def main() -> None:
    conn = open_dbus_connection(bus=sys.argv[1])
    reply = conn.send_and_get_reply(message_bus.RequestName(NAME))
    if reply.body[0] != 1:
        sys.exit(f"could not own {NAME}: {reply.body}")
    print("READY", flush=True)
    last = 0
    while True:
        msg = conn.receive()
        if msg.header.message_type != MessageType.method_call:
            continue
        member = msg.header.fields.get(HeaderFields.member)
        if member == "Notify":
            app, replaces, icon, summary, body, actions, hints, timeout = msg.body
            last += 1
            print(
                json.dumps(
                    {"id": last, "app": app, "icon": icon, "summary": summary, "body": body}
                ),
                flush=True,
            )
            conn.send(new_method_return(msg, "u", (last,)))
        elif member == "GetCapabilities":
            conn.send(new_method_return(msg, "as", (["body", "body-markup"],)))
        elif member == "GetServerInformation":
            conn.send(new_method_return(msg, "ssss", ("hoist-test", "hoist", "1", "1.2")))
        else:
            conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod"))


if __name__ == "__main__":
    main()
