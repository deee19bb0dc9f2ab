"""Relay Animus webhooks to GitLab CI as pipeline triggers.

GitLab's trigger API takes a trigger token and form fields, not a signed JSON body,
so this relay checks the Animus signature, then starts a pipeline on REF with the
event in CI/CD variables: ANIMUS_EVENT_TYPE, ANIMUS_EVENT_ID, ANIMUS_PROJECT and
ANIMUS_EVENT (the whole body as JSON).

    ANIMUS_WEBHOOK_SECRET=whsec_...     the webhook's signing secret
    GITLAB_TRIGGER_TOKEN=glptt-...      Settings → CI/CD → Pipeline trigger tokens
    GITLAB_PROJECT_ID=42                the GitLab project's numeric id
    GITLAB_URL=https://gitlab.example.org
    GITLAB_REF=main
    python relay_gitlab.py --port 8767
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ["ANIMUS_WEBHOOK_SECRET"]
TRIGGER_TOKEN = os.environ["GITLAB_TRIGGER_TOKEN"]
PROJECT_ID = os.environ["GITLAB_PROJECT_ID"]
GITLAB = os.environ.get("GITLAB_URL", "https://gitlab.com").rstrip("/")
REF = os.environ.get("GITLAB_REF", "main")
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


def trigger(event: dict, body: bytes) -> int:
    form = urllib.parse.urlencode(
        {
            "token": TRIGGER_TOKEN,
            "ref": REF,
            "variables[ANIMUS_EVENT_TYPE]": event["type"],
            "variables[ANIMUS_EVENT_ID]": event["id"],
            "variables[ANIMUS_PROJECT]": event["project"] or "",
            "variables[ANIMUS_EVENT]": body.decode(),
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 (an https URL we configure)
        f"{GITLAB}/api/v4/projects/{urllib.parse.quote(PROJECT_ID, safe='')}/trigger/pipeline", data=form, method="POST"
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
        status = trigger(json.loads(body), body)
        self.send_response(204 if status == 201 else 502)  # GitLab answers 201 with the new pipeline
        self.end_headers()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8767)
    args = parser.parse_args()
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()
