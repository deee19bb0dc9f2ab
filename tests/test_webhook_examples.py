"""The receiver and relay examples of docs/how-to/webhooks.md work as documented.

Each example runs as its own process on 127.0.0.1 and gets deliveries signed by
Animus's own sender; the relays forward to a stand-in GitHub / GitLab API (a real
HTTP server on 127.0.0.1) that records what arrives.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
from webhook_receiver import Receiver

from animus_hub.event_schemas import markdown_reference
from animus_hub.orm import utcnow
from animus_hub.services.webhooks import envelope
from animus_hub.webhook_delivery import WebhookDelivery, WebhookSender

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples" / "webhooks"
SECRET = "whsec_" + "e" * 43


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def run_example(tmp_path):
    procs = []

    def start(name: str, **env: str) -> str:
        port = free_port()
        out = open(tmp_path / f"{name}.out", "w")
        proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / name), "--port", str(port)],
            env={**os.environ, "ANIMUS_WEBHOOK_SECRET": SECRET, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        procs.append((proc, out))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return f"http://127.0.0.1:{port}/"
            time.sleep(0.05)
        raise RuntimeError((tmp_path / f"{name}.out").read_text())

    yield start
    for proc, out in procs:
        proc.terminate()
        proc.wait(10)
        out.close()


def deliver(url: str, event_type: str = "ModelApproved", secret: str = SECRET, event_id: str | None = None):
    event_id = event_id or str(uuid.uuid4())
    body = envelope(event_id, event_type, utcnow(), "fraud", {"model": "churn", "version": 3}).encode()
    sender = WebhookSender(WebhookDelivery(timeout=10))
    headers = sender.headers(
        secret=secret, webhook_id=1, delivery_id=1, event_id=event_id, event_type=event_type, attempt=1, body=body
    )

    async def go():
        try:
            return await sender.send(url, headers, body, 1, 1)
        finally:
            await sender.close()

    return asyncio.run(go()), json.loads(body)


def test_python_receiver_verifies_signatures_and_handles_each_event_once(run_example, tmp_path):
    url = run_example("receiver.py")
    first, event = deliver(url)
    again, _ = deliver(url, event_id=event["id"])
    forged, _ = deliver(url, secret="whsec_wrong")
    assert (first.status_code, again.status_code, forged.status_code) == (204, 204, 401)
    time.sleep(0.2)
    output = (tmp_path / "receiver.py.out").read_text().splitlines()
    lines = [line for line in output if line.strip() and "HTTP/1.1" not in line]  # not the access log
    assert lines == ['ModelApproved in project fraud: {"model": "churn", "version": 3}']


def test_github_relay_sends_repository_dispatch_with_its_own_token(run_example):
    github = Receiver(respond=lambda n: 204).start()
    try:
        url = run_example(
            "relay_github.py",
            GITHUB_TOKEN="ghp-test-token",
            GITHUB_REPOSITORY="acme/models",
            GITHUB_API_URL=f"http://127.0.0.1:{github.port}",
        )
        ok, event = deliver(url)
        forged, _ = deliver(url, secret="whsec_wrong")
        assert (ok.status_code, forged.status_code) == (204, 401)
        (call,) = github.received()
        assert call.path == "/repos/acme/models/dispatches"
        assert call.headers["Authorization"] == "Bearer ghp-test-token"
        assert call.json == {"event_type": "animus-ModelApproved", "client_payload": event}
        github.respond = lambda n: 500  # GitHub failing: Animus is told to retry
        failed, _ = deliver(url)
        assert failed.status_code == 502
    finally:
        github.stop()


def test_gitlab_relay_triggers_a_pipeline_with_the_event_in_variables(run_example):
    gitlab = Receiver(respond=lambda n: 201).start()
    try:
        url = run_example(
            "relay_gitlab.py",
            GITLAB_TRIGGER_TOKEN="glptt-test",
            GITLAB_PROJECT_ID="42",
            GITLAB_URL=f"http://127.0.0.1:{gitlab.port}",
            GITLAB_REF="release",
        )
        ok, event = deliver(url, event_type="RunFinished")
        forged, _ = deliver(url, secret="whsec_wrong")
        assert (ok.status_code, forged.status_code) == (204, 401)
        (call,) = gitlab.received()
        assert call.path == "/api/v4/projects/42/trigger/pipeline"
        form = dict(urllib.parse.parse_qsl(call.body.decode()))
        assert form["token"] == "glptt-test" and form["ref"] == "release"
        assert form["variables[ANIMUS_EVENT_TYPE]"] == "RunFinished"
        assert form["variables[ANIMUS_EVENT_ID]"] == event["id"]
        assert json.loads(form["variables[ANIMUS_EVENT]"]) == event
    finally:
        gitlab.stop()


def test_published_event_reference_is_up_to_date():
    path = ROOT / "docs" / "reference" / "webhook-events.md"
    assert path.read_text() == markdown_reference(), (
        'regenerate: python -c "from animus_hub.event_schemas import markdown_reference; '
        "open('docs/reference/webhook-events.md','w').write(markdown_reference())\""
    )
