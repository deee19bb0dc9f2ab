"""Relay Animus webhooks to GitHub Actions as `repository_dispatch` events.

GitHub's dispatch API wants its own authentication (`Authorization: Bearer <token>`)
and its own body (`{"event_type": ..., "client_payload": ...}`); Animus sends neither
(it never puts credentials into webhook URLs). This relay checks the Animus signature,
then calls GitHub with a token that only it holds.

    ANIMUS_WEBHOOK_SECRET=whsec_...   the webhook's signing secret
    GITHUB_TOKEN=...                  fine-grained token with "Contents: write" on the repository
    GITHUB_REPOSITORY=owner/repo
    python relay_github.py --port 8766

In the workflow: `on: repository_dispatch: types: [animus-ModelApproved]`; the whole
Animus event is in `github.event.client_payload`.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ["ANIMUS_WEBHOOK_SECRET"]
TOKEN = os.environ["GITHUB_TOKEN"]
REPOSITORY = os.environ["GITHUB_REPOSITORY"]
API = os.environ.get("GITHUB_API_URL", "https://api.github.com")
TOLERANCE = 300


def verify(timestamp: str, body: bytes, signature_header: str) -> bool:
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - sent) > TOLERANCE:
        return False
    expected = "v1=" + hmac.new(SECRET.encode(), f"{sent}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, s.strip()) for s in signature_header.split(","))


def dispatch(event: dict) -> int:
    request = urllib.request.Request(  # noqa: S310 (an https URL we configure)
        f"{API}/repos/{REPOSITORY}/dispatches",
        data=json.dumps({"event_type": f"animus-{event['type']}", "client_payload": event}).encode(),
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "Content-Type": "application/json",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=8) as answer:  # noqa: S310
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 502


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not verify(self.headers.get("Animus-Timestamp", ""), body, self.headers.get("Animus-Signature", "")):
            self.send_response(401)
            self.end_headers()
            return
        status = dispatch(json.loads(body))
        # GitHub answers 204; anything else makes Animus retry later (same event id)
        self.send_response(204 if status == 204 else 502)
        self.end_headers()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()
