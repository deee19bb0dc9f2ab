"""A minimal Animus webhook receiver: verifies the signature, dedupes by event id, prints events.

    ANIMUS_WEBHOOK_SECRET=whsec_... python receiver.py --port 8765

Standard library only. Put your own work in handle(); answer 2xx quickly (Animus
waits at most `WebhookDelivery.timeout`, 10 s by default) and do slow work later.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ["ANIMUS_WEBHOOK_SECRET"]
TOLERANCE = 300  # seconds: older (or future) timestamps are refused, so a captured request cannot be replayed later
seen: set[str] = set()  # event ids already handled; use a database table in production


def verify(timestamp: str, body: bytes, signature_header: str) -> bool:
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - sent) > TOLERANCE:
        return False
    expected = "v1=" + hmac.new(SECRET.encode(), f"{sent}.".encode() + body, hashlib.sha256).hexdigest()
    # constant-time comparison; the header may list several signatures separated by commas
    return any(hmac.compare_digest(expected, s.strip()) for s in signature_header.split(","))


def handle(event: dict) -> None:
    print(f"{event['type']} in project {event['project']}: {json.dumps(event['data'])}", flush=True)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not verify(self.headers.get("Animus-Timestamp", ""), body, self.headers.get("Animus-Signature", "")):
            self.send_response(401)
            self.end_headers()
            return
        event = json.loads(body)
        if event["id"] not in seen:  # at-least-once delivery: the same event may come again
            seen.add(event["id"])
            handle(event)
        self.send_response(204)
        self.end_headers()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()
