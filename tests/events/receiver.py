"""An app's event endpoint for tests/events.rs: verifies every delivery with the official
Standard Webhooks library and writes what it saw, one JSON line per request, to a log.

    python3 receiver.py --port 0 --port-file PORT --log LOG --secret NAME=whsec_... [...]

Each --secret stands for a receiver holding only that secret: every delivery is verified with
each of them on its own (`Webhook(secret).verify(body, headers)`), and the line says which
verified it and why the others refused. A delivery no secret verifies is answered 401.

Misbehaviour on request, by POST /control with a JSON object:
  {"fail": N}                 answer the next N verified deliveries 503 (-1: until told otherwise)
  {"hang": N, "hang_ms": M}   take the next N verified deliveries and answer nothing for M ms
A hang is applied before a failure. The port is written to --port-file once listening.
"""

import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

LOCK = threading.Lock()
STATE = {"fail": 0, "hang": 0, "hang_ms": 5000}


def take(kind):
    """Whether the next delivery gets misbehaviour `kind` (and counts it down)."""
    with LOCK:
        left = STATE[kind]
        if left == 0:
            return False
        if left > 0:
            STATE[kind] = left - 1
        return True


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status):
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def body(self):
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def do_POST(self):
        if self.path == "/control":
            change = json.loads(self.body())
            with LOCK:
                STATE.update(change)
            return self.answer(204)
        if self.path != "/hook":
            return self.answer(404)
        body = self.body()
        headers = {k: v for k, v in self.headers.items()}
        verified_by, rejected_by, event = [], {}, None
        for name, secret in self.server.secrets.items():
            try:
                event = Webhook(secret).verify(body, headers)
                verified_by.append(name)
            except WebhookVerificationError as e:
                rejected_by[name] = str(e)
        if not verified_by:
            answer = 401
        elif take("hang"):
            answer = "hang"
        elif take("fail"):
            answer = 503
        else:
            answer = 200
        self.server.write(
            {
                "at": time.time(),
                "webhook_id": self.headers.get("webhook-id"),
                "verified_by": sorted(verified_by),
                "rejected_by": rejected_by,
                "answer": answer,
                # Only what the library returned after verifying: the test reads nothing else.
                "event": event,
            }
        )
        if answer == "hang":
            time.sleep(STATE["hang_ms"] / 1000)
            self.close_connection = True
            return
        self.answer(answer)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # payroute sends to several orders at once: no connection may be refused for a full queue.
    request_queue_size = 64

    def __init__(self, port, secrets, log):
        super().__init__(("127.0.0.1", port), Handler)
        self.secrets = secrets
        self.log = open(log, "a", encoding="utf-8")

    def write(self, line):
        with LOCK:
            self.log.write(json.dumps(line) + "\n")
            self.log.flush()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--secret", action="append", default=[], help="NAME=whsec_...")
    a = p.parse_args()
    secrets = dict(s.split("=", 1) for s in a.secret)
    server = Server(a.port, secrets, a.log)
    tmp = a.port_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, a.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
