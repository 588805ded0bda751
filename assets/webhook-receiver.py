#!/usr/bin/env python3
"""An example receiver for hoistd's webhook targets (Python 3 standard library only).

hoistd POSTs {"action": "provision" | "deprovision" | "inspect", "grant": {...},
"leader_epoch": N} with three headers:

  X-Hoist-Delivery:  a UUID for this call (log it; retries get a new one)
  X-Hoist-Timestamp: Unix seconds when it was signed
  X-Hoist-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>

This receiver checks the signature in constant time, refuses timestamps more
than five minutes off (so a captured call cannot be replayed later), and keeps
the grants it provisioned in memory. Replace `provision` and `deprovision` with
calls to the real system (create and delete a Kubernetes RoleBinding, attach and
detach an IAM policy, ...). Each must be idempotent: hoistd retries until it
gets {"status": "ok"}.

With several hoistd instances, one leads at a time and makes the provision and
deprovision calls; `leader_epoch` is its lease's epoch, higher for each new
leader. A call already under way when its instance lost the lease may still
arrive after the new leader's: this receiver keeps the highest epoch it has
seen and refuses (409) a provision or deprovision with a lower one. The leader
makes the call again if it still has to. A real receiver keeps that epoch
where it keeps its grants, so that it survives a restart.

    HOIST_WEBHOOK_SECRET=... python3 webhook-receiver.py --port 8711

Answers: 2xx with {"status": "ok"} for provision and deprovision, and
{"present": true|false} for inspect, optionally with
{"credential": {"env": {...}, "uri": "...", "command": "..."}}, which hoistd
hands to the grant's holder when they fetch their credential. Anything else
(4xx, 5xx, other JSON, a redirect) is a failure hoistd retries with backoff.
"""

import argparse
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
HIGHEST_EPOCH = 0
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


def fenced(epoch):
    """Whether a call comes from a leader that lost its lease to a newer one.
    Called under LOCK, with the change it guards."""
    global HIGHEST_EPOCH
    if not isinstance(epoch, int):
        return False  # an hoistd too old to send one
    if epoch < HIGHEST_EPOCH:
        return True
    HIGHEST_EPOCH = epoch
    return False


def provision(grant, epoch):
    with LOCK:
        if fenced(epoch):
            return False
        GRANTS[grant["id"]] = grant
        return True


def deprovision(grant, epoch):
    with LOCK:
        if fenced(epoch):
            return False
        GRANTS.pop(grant["id"], None)
        return True


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
        action, grant = call.get("action"), call.get("grant") or {}
        epoch = call.get("leader_epoch")
        stale = {"status": "error", "message": "leader_epoch %s is stale" % epoch}
        if action == "provision":
            if not provision(grant, epoch):
                return self.answer(409, stale)
            return self.answer(200, {"status": "ok"})
        if action == "deprovision":
            if not deprovision(grant, epoch):
                return self.answer(409, stale)
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
    args = parser.parse_args()
    if not SECRET:
        sys.exit("webhook-receiver: set HOIST_WEBHOOK_SECRET to the target's secret")
    server = ThreadingHTTPServer((args.host, args.port), Receiver)
    print(f"webhook-receiver: listening on http://{args.host}:{server.server_port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
