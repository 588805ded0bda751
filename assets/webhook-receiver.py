#!/usr/bin/env python3
"""An example receiver for hoistd's webhook targets (Python 3 standard library only).

hoistd POSTs {"delivery": "<uuid>", "target": "<its name in the policy>",
"action": "provision" | "deprovision" | "inspect", "grant": {...},
"issuer": "https://...", "leader_epoch": N} with three headers:

  X-Hoist-Delivery:  the body's "delivery": a UUID for this call (log it;
                     retries get a new one)
  X-Hoist-Timestamp: Unix seconds when it was signed
  X-Hoist-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>

This receiver checks the signature in constant time, refuses timestamps more
than five minutes off (so a captured call cannot be replayed later), refuses
(409) a delivery it has already taken (so it cannot be replayed sooner
either: an inspect hands over a credential), refuses (409) a call for
another target than its --target (a call captured at another receiver that
shares the secret), and keeps the grants it provisioned in memory. Replace `provision` and `deprovision` with
calls to the real system (create and delete a Kubernetes RoleBinding, attach and
detach an IAM policy, ...). Each must be idempotent: hoistd retries until it
gets {"status": "ok"}.

With several hoistd instances, one leads at a time and makes the provision and
deprovision calls; `leader_epoch` is its lease's epoch, higher for each new
leader of the deployment `issuer` names. A call already under way when its
instance lost the lease may still arrive after the new leader's: this receiver
keeps the highest epoch it has seen from each issuer and refuses (409) a
provision under a lower one, so a late provision cannot bring back access the
new leader removed. A deprovision is never refused: removing access is always
safe. A real receiver keeps the epochs where it keeps its grants. An epoch is
never below the milliseconds since 1970 when its term began, so a restarted
hoistd, or one whose database was restored from a backup, starts higher still.

A grant is provisioned, perhaps again and again, then removed, and never
provisioned after that. So this receiver also refuses (409) a provision for a
grant it has removed, or whose `expires_at` has passed: such a call is late (a
provision that hoistd gave up waiting for, still being worked on here when the
removal came) or replayed (the signature stops replays only outside the
timestamp window). It remembers removed grants until they would have ended.

    HOIST_WEBHOOK_SECRET=... python3 webhook-receiver.py --port 8711 --target k8s-prod

Answers: 2xx with {"status": "ok"} for provision and deprovision, and
{"present": true|false} for inspect, optionally with
{"credential": {"env": {...}, "uri": "...", "command": "..."}}, which hoistd
hands to the grant's holder when they fetch their credential (of "env", only
the names the target's `env` declares: here EXAMPLE_GRANT and EXAMPLE_USER;
"command" and "uri" only where the target says `command = true` or
`uri = true`). Anything else (4xx, 5xx, other JSON, a redirect) is a failure
hoistd retries with backoff.
"""

import argparse
import datetime
import hashlib
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_SECS = 300
MAX_BODY = 64 * 1024

SECRET = os.environ.get("HOIST_WEBHOOK_SECRET", "").encode()
GRANTS = {}
EPOCHS = {}  # the highest leader_epoch seen, by issuer
REMOVED = {}  # (issuer, grant id) -> Unix seconds until which it is remembered
SEEN = {}  # delivery -> Unix seconds until which it is remembered
TARGET = None  # the policy's name for this receiver (--target), if given
LOCK = threading.Lock()


def verify(headers, body):
    """The reason a call is refused, or None if it is genuine and fresh."""
    timestamp = headers.get("X-Hoist-Timestamp", "")
    signature = headers.get("X-Hoist-Signature", "")
    if not timestamp.isdigit():
        return "missing or malformed X-Hoist-Timestamp"
    if abs(time.time() - int(timestamp)) > TOLERANCE_SECS:
        return "stale X-Hoist-Timestamp"
    expected = hmac.new(SECRET, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(signature, "v1=" + expected):
        return "bad X-Hoist-Signature"
    return None


def replayed(delivery):
    """The reason a signed call is refused as taken before, or None. A
    delivery is remembered for as long as its timestamp would be taken."""
    now = time.time()
    with LOCK:
        for seen, until in list(SEEN.items()):
            if until < now:
                del SEEN[seen]
        if delivery in SEEN:
            return "delivery %s was taken before: a replay" % delivery
        SEEN[delivery] = now + 2 * TOLERANCE_SECS
    return None


def stale(issuer, epoch):
    """Whether a call comes from a leader that lost its lease to a newer one
    of the same deployment; notes a newer epoch. Called under LOCK, with the
    change it guards."""
    if not isinstance(epoch, int) or isinstance(epoch, bool):
        return False  # an hoistd too old to send one, or not leading
    if epoch < EPOCHS.get(issuer, 0):
        return True
    EPOCHS[issuer] = epoch
    return False


def ends_at(grant):
    """The grant's end in Unix seconds, or None if it does not say."""
    try:
        text = grant["expires_at"].replace("Z", "+00:00")
        return datetime.datetime.fromisoformat(text).timestamp()
    except (KeyError, AttributeError, TypeError, ValueError):
        return None


def provision(grant, issuer, epoch):
    """None if provisioned, else why not. Called for a grant's first
    provision and for every retry of it."""
    now = time.time()
    with LOCK:
        if stale(issuer, epoch):
            return "leader_epoch %s is stale" % epoch
        if (issuer, grant["id"]) in REMOVED:
            return "grant %s was removed: a provision after that is late or replayed" % grant["id"]
        ends = ends_at(grant)
        if ends is not None and ends <= now:
            return "grant %s has ended" % grant["id"]
        GRANTS[grant["id"]] = grant
        return None


def deprovision(grant, issuer, epoch):
    now = time.time()
    with LOCK:
        stale(issuer, epoch)  # noted, never refused
        GRANTS.pop(grant["id"], None)
        for key, until in list(REMOVED.items()):
            if until < now:
                del REMOVED[key]
        ends = ends_at(grant)
        REMOVED[(issuer, grant["id"])] = (ends if ends is not None else now + 86400) + TOLERANCE_SECS


def present(grant):
    with LOCK:
        return grant["id"] in GRANTS


class Receiver(BaseHTTPRequestHandler):
    def answer(self, status, document):
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self.answer(413, {"status": "error", "message": "body too large"})
        body = self.rfile.read(length)
        refused = verify(self.headers, body)
        if refused:
            return self.answer(401, {"status": "error", "message": refused})
        call = json.loads(body)
        delivery = call.get("delivery")
        if not isinstance(delivery, str) or not delivery:
            return self.answer(400, {"status": "error", "message": "no delivery in the body"})
        refused = replayed(delivery)
        if refused:
            return self.answer(409, {"status": "error", "message": refused})
        if TARGET is not None and call.get("target") != TARGET:
            return self.answer(409, {
                "status": "error",
                "message": "this receiver is target %s, not %s" % (TARGET, call.get("target")),
            })
        action, grant = call.get("action"), call.get("grant") or {}
        issuer, epoch = call.get("issuer"), call.get("leader_epoch")
        if action == "provision":
            refused = provision(grant, issuer, epoch)
            if refused:
                return self.answer(409, {"status": "error", "message": refused})
            return self.answer(200, {"status": "ok"})
        if action == "deprovision":
            deprovision(grant, issuer, epoch)
            return self.answer(200, {"status": "ok"})
        if action == "inspect":
            if not present(grant):
                return self.answer(200, {"present": False})
            # What the holder gets at their credential fetch. A real receiver
            # would mint a short-lived token here; nothing is kept by hoistd.
            return self.answer(200, {
                "present": True,
                "credential": {
                    "env": {"EXAMPLE_GRANT": grant["id"], "EXAMPLE_USER": grant["holder"]},
                    "command": "echo granted " + grant["id"],
                },
            })
        return self.answer(400, {"status": "error", "message": "unknown action"})

    def log_message(self, fmt, *args):
        sys.stderr.write("webhook-receiver: " + (fmt % args) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8711)
    parser.add_argument("--target", help="the policy's [[targets]] name for this receiver")
    args = parser.parse_args()
    global TARGET
    TARGET = args.target
    if not SECRET:
        sys.exit("webhook-receiver: set HOIST_WEBHOOK_SECRET to the target's secret")
    server = ThreadingHTTPServer((args.host, args.port), Receiver)
    print(f"webhook-receiver: listening on http://{args.host}:{server.server_port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
