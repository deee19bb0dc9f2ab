"""Webhooks through the real stack: the API, the scheduler inside animus-api, a receiver on 127.0.0.1.

The stack runs with fast retries (base 0.2 s, horizon 4 s) so that backoff, failure
and automatic disabling happen within a test.
"""

from __future__ import annotations

import hashlib
import json
import time

import jsonschema
import pytest
import requests
from sqlalchemy import select
from sqlalchemy import text as sql
from sqlalchemy.orm import Session
from stack import STACK_API_CONFIG, HubStack, running_stack
from webhook_receiver import Receiver

from animus_hub import db as dbmod
from animus_hub.event_schemas import event_schema
from animus_hub.events import EVENT_TYPES, record_event
from animus_hub.orm import OutboxEvent, Project
from animus_hub.services.webhooks import event_body

WEBHOOK_CONFIG = """
c.Scheduler.interval = 0.1
c.WebhookDelivery.retry_base_seconds = 0.2
c.WebhookDelivery.retry_max_interval = 1.0
c.WebhookDelivery.retry_horizon_seconds = 4.0
c.WebhookDelivery.timeout = 1.5
"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hooks_stack(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"hooks-{request.param}")
    with running_stack(root, request.param, api_config=STACK_API_CONFIG + WEBHOOK_CONFIG) as s:
        yield s


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


class Project_:
    """A project with an owner, a maintainer and a contributor."""

    def __init__(self, stack: HubStack, unique):
        self.stack = stack
        self.slug = unique("hk")
        self.owner = stack.user_token(unique("own"))
        self.contributor = stack.user_token(unique("con"))
        contributor_name = stack.api("GET", "/whoami", self.contributor).json()["name"]
        assert stack.api("POST", "/projects", self.owner, json={"slug": self.slug}).status_code == 201
        r = stack.api(
            "POST",
            f"/projects/{self.slug}/members",
            self.owner,
            json={"kind": "user", "name": contributor_name, "role": "contributor"},
        )
        assert r.status_code == 201, r.text

    def api(self, method: str, path: str = "", token: str | None = None, **kw):
        return self.stack.api(method, f"/projects/{self.slug}{path}", token or self.owner, **kw)

    def create_hook(self, url: str, types=("RunFinished", "DatasetVersionCreated"), **kw) -> dict:
        r = self.api("POST", "/webhooks", json={"url": url, "event_types": list(types), **kw})
        assert r.status_code == 201, r.text
        return r.json()

    def finish_run(self) -> str:
        r = self.api("POST", "/runs", json={"name": "r"})
        assert r.status_code == 201, r.text
        run_id = r.json()["id"]
        r = self.api("PATCH", f"/runs/{run_id}", json={"status": "succeeded"})
        assert r.status_code == 200, r.text
        return run_id

    def push_dataset(self, name: str) -> None:
        data = b"a,b\n1,2\n"
        base = "/datasets"
        assert self.api("POST", base, json={"name": name}).status_code == 201
        files = [{"path": "d.csv", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}]
        upload = self.api("POST", f"{base}/{name}/uploads", json={"files": files}).json()["id"]
        for item in self.api("GET", f"{base}/{name}/uploads/{upload}/missing").json()["items"]:
            assert requests.put(item["url"], data=data, headers=item["headers"], timeout=30).status_code < 300
        r = self.api("POST", f"{base}/{name}/uploads/{upload}/commit")
        assert r.status_code == 201, r.text

    def deliveries(self, hook_id: int, **params) -> list[dict]:
        r = self.api("GET", f"/webhooks/{hook_id}/deliveries", params=params)
        assert r.status_code == 200, r.text
        return r.json()["items"]


@pytest.fixture
def project(hooks_stack, unique):
    return Project_(hooks_stack, unique)


def wait(predicate, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def validate(body: dict) -> None:
    jsonschema.validate(body, event_schema(body["type"]), format_checker=jsonschema.FormatChecker())


# --- the subscription API -------------------------------------------------------------------


def test_secret_is_shown_once_at_creation_and_never_again(project, hooks_stack):
    r = project.api(
        "POST",
        "/webhooks",
        json={"url": "http://127.0.0.1:9/once", "event_types": ["RunFinished"]},
        headers={"Idempotency-Key": "create-once"},
    )
    assert r.status_code == 201, r.text
    hook = r.json()
    secret = hook["secret"]
    assert secret.startswith("whsec_") and len(secret) > 40
    assert hook["secret_hint"] == "…" + secret[-4:]
    replay = project.api(
        "POST",
        "/webhooks",
        json={"url": "http://127.0.0.1:9/once", "event_types": ["RunFinished"]},
        headers={"Idempotency-Key": "create-once"},
    )
    assert replay.headers.get("Idempotent-Replayed") == "true" and replay.json()["secret"] is None
    for text in (
        project.api("GET", f"/webhooks/{hook['id']}").text,
        project.api("GET", "/webhooks").text,
        project.api("PATCH", f"/webhooks/{hook['id']}", json={"description": "x"}).text,
        project.api("GET", "/audit/events", params={"limit": 500}).text,
    ):
        assert secret not in text and "secret_encrypted" not in text
    assert "secret" not in project.api("GET", f"/webhooks/{hook['id']}").json()
    with dbmod.make_engine(hooks_stack.db_url).connect() as conn:
        stored = conn.execute(sql("SELECT secret_encrypted FROM webhook WHERE id = :i"), {"i": hook["id"]}).scalar()
    assert stored.startswith("v1.") and secret not in stored


def test_bad_input_answers_4xx_and_changes_nothing(project):
    hook = project.create_hook("http://127.0.0.1:9/dup")
    cases = [
        ({"url": "ftp://example.org/x", "event_types": ["RunFinished"]}, 422, "invalid_webhook_url"),
        ({"url": "gopher://127.0.0.1/", "event_types": ["RunFinished"]}, 422, "invalid_webhook_url"),
        (
            {"url": "http://169.254.169.254/latest/meta-data/", "event_types": ["RunFinished"]},
            422,
            "webhook_url_blocked",
        ),
        ({"url": "http://127.0.0.1:9/x", "event_types": ["RunStarted"]}, 422, "unknown_event_type"),
        ({"url": "http://127.0.0.1:9/x", "event_types": []}, 422, "validation_failed"),
        ({"url": "http://127.0.0.1:9/x", "event_types": "RunFinished"}, 422, "validation_failed"),
        ({"url": "http://127.0.0.1:9/dup", "event_types": ["ModelApproved"]}, 409, "webhook_exists"),
        ({"url": "http://127.0.0.1:9/x", "event_types": ["RunFinished"], "extra": 1}, 422, "validation_failed"),
    ]
    for body, status, reason in cases:
        r = project.api("POST", "/webhooks", json=body)
        assert (r.status_code, r.json()["reason"]) == (status, reason), (body, r.text)
        assert set(r.json()) == {"status", "reason", "message", "details"}
    assert [h["url"] for h in project.api("GET", "/webhooks").json()["items"]] == ["http://127.0.0.1:9/dup"]
    r = project.api("PATCH", f"/webhooks/{hook['id']}", json={"url": "file:///etc/passwd"})
    assert (r.status_code, r.json()["reason"]) == (422, "invalid_webhook_url")
    assert project.api("GET", f"/webhooks/{hook['id']}").json()["url"] == "http://127.0.0.1:9/dup"
    assert project.api("GET", "/webhooks/nope").status_code == 404
    assert project.api("GET", f"/webhooks/{hook['id']}/deliveries/123456").status_code == 404
    assert project.api("GET", f"/webhooks/{hook['id']}/deliveries", params={"state": "odd"}).status_code == 400
    r = project.api(
        "POST", "/webhooks", project.contributor, json={"url": "http://127.0.0.1:9/c", "event_types": ["RunFinished"]}
    )
    assert r.status_code == 403


# --- delivery ----------------------------------------------------------------------------------


def test_real_events_are_delivered_signed_and_match_their_published_schemas(project, receiver):
    hook = project.create_hook(receiver.url())
    receiver.secrets["/hook"] = hook["secret"]
    run_id = project.finish_run()
    project.push_dataset("churn")
    assert receiver.wait_for(lambda: len(receiver.unique_events()) >= 2)
    got = receiver.received()
    assert len(got) == 2 and all(r.signature_ok for r in got)
    by_type = {r.json["type"]: r for r in got}
    assert set(by_type) == {"RunFinished", "DatasetVersionCreated"}
    run = by_type["RunFinished"]
    assert run.json["data"]["run_id"] == run_id and run.json["project"] == project.slug
    assert run.headers["Animus-Event-Id"] == run.json["id"] == run.headers["Idempotency-Key"]
    assert run.headers["Animus-Webhook-Id"] == str(hook["id"]) and run.headers["Animus-Event-Type"] == "RunFinished"
    assert by_type["DatasetVersionCreated"].json["data"]["dataset"] == "churn"
    for r in got:
        validate(r.json)
    assert wait(lambda: {d["state"] for d in project.deliveries(hook["id"])} == {"succeeded"})
    assert {d["attempts"] for d in project.deliveries(hook["id"])} == {1}


def test_every_event_the_stack_recorded_validates_against_its_schema(project, hooks_stack):
    """Whatever the services emitted during this module (projects, runs, datasets, archive) fits its schema."""
    assert project.api("POST", "/archive").status_code == 200
    assert project.api("POST", "/unarchive").status_code == 200
    engine = dbmod.make_engine(hooks_stack.db_url)
    seen = set()
    with Session(engine) as s:
        for e in s.scalars(select(OutboxEvent)):
            validate(json.loads(event_body(e)))
            seen.add(e.type)
    engine.dispose()
    assert {"ProjectCreated", "ProjectArchived", "ProjectUnarchived"} <= seen
    assert seen <= set(EVENT_TYPES)


def test_a_receiver_down_for_several_attempts_gets_the_event_once_it_is_back(project, receiver):
    receiver.respond = lambda n: 503 if n < 3 else 200
    hook = project.create_hook(receiver.url(), types=["RunFinished"])
    receiver.secrets["/hook"] = hook["secret"]
    project.finish_run()
    assert receiver.wait_for(lambda: len(receiver.received()) >= 4)
    time.sleep(0.5)  # nothing more comes after the success
    got = receiver.received()
    assert len(got) == 4 and len(receiver.unique_events()) == 1, "dedupe by event id sees it exactly once"
    assert [r.headers["Animus-Delivery-Attempt"] for r in got] == ["1", "2", "3", "4"]
    assert all(r.signature_ok for r in got)
    assert wait(lambda: project.deliveries(hook["id"])[0]["state"] == "succeeded")
    (delivery,) = project.deliveries(hook["id"])
    detail = project.api("GET", f"/webhooks/{hook['id']}/deliveries/{delivery['id']}").json()
    assert detail["state"] == "succeeded" and detail["attempts"] == 4
    assert [a["status_code"] for a in detail["attempt_log"]] == [503, 503, 503, 200]
    assert detail["attempt_log"][0]["error"] == "answered 503"
    assert detail["body"] == got[0].json
    validate(detail["body"])


def test_persistent_failure_disables_the_webhook_audits_it_and_redelivery_works_once_fixed(project, receiver):
    receiver.respond = lambda n: 500
    hook = project.create_hook(receiver.url(), types=["RunFinished"])
    project.finish_run()
    assert wait(lambda: not project.api("GET", f"/webhooks/{hook['id']}").json()["enabled"], timeout=30)
    state = project.api("GET", f"/webhooks/{hook['id']}").json()
    assert "retry horizon" in state["disabled_reason"] and state["consecutive_failures"] >= 2
    (failed,) = project.deliveries(hook["id"], state="failed")
    assert failed["attempts"] == len(receiver.received()) >= 2
    audit = project.api("GET", "/audit/events", params={"action": "webhook.disable", "limit": 50}).json()["items"]
    assert [(e["actor"], e["actor_kind"]) for e in audit] == [("animus-scheduler", "system")]
    # while disabled: redelivery and pings are refused, new events are not queued for it
    r = project.api("POST", f"/webhooks/{hook['id']}/deliveries/{failed['id']}/redeliver")
    assert (r.status_code, r.json()["reason"]) == (409, "webhook_disabled")
    project.finish_run()
    time.sleep(0.5)
    assert len(project.deliveries(hook["id"])) == 1
    # fixed: enable, redeliver the failed one; the receiver dedupes on the same event id
    receiver.respond = lambda n: 200
    before = len(receiver.received())
    assert project.api("PATCH", f"/webhooks/{hook['id']}", json={"enabled": True}).json()["enabled"] is True
    r = project.api("POST", f"/webhooks/{hook['id']}/deliveries/{failed['id']}/redeliver")
    assert r.status_code == 202, r.text
    assert r.json()["redelivery_of"] == failed["id"] and r.json()["event_id"] == failed["event_id"]
    assert receiver.wait_for(lambda: len(receiver.received()) > before)
    assert receiver.received()[-1].event_id == failed["event_id"]
    assert wait(lambda: project.deliveries(hook["id"])[0]["state"] == "succeeded")


def test_redirects_and_slow_receivers_are_recorded_failures(project, receiver):
    receiver.respond = lambda n: ("redirect", receiver.url("/other"))
    redirecting = project.create_hook(receiver.url("/redirect"), types=["RunFinished"])
    project.finish_run()
    assert wait(lambda: (project.deliveries(redirecting["id"]) or [{}])[0].get("attempts", 0) >= 1)
    (d,) = project.deliveries(redirecting["id"])
    assert d["last_status_code"] == 307 and "not followed" in d["last_error"]
    assert all(r.path == "/redirect" for r in receiver.received())
    project.api("DELETE", f"/webhooks/{redirecting['id']}")
    receiver.respond = lambda n: ("hang", 30)
    slow = project.create_hook(receiver.url("/slow"), types=["RunFinished"])
    project.finish_run()
    assert wait(lambda: (project.deliveries(slow["id"]) or [{}])[0].get("attempts", 0) >= 1)
    (d,) = project.deliveries(slow["id"])
    assert d["last_status_code"] is None and "no complete answer" in d["last_error"]


def test_ping_reaches_only_that_webhook_with_a_valid_signature(project, receiver):
    a = project.create_hook(receiver.url("/a"), types=["ModelApproved"])
    b = project.create_hook(receiver.url("/b"), types=["ModelApproved"])
    receiver.secrets.update({"/a": a["secret"], "/b": b["secret"]})
    r = project.api("POST", f"/webhooks/{a['id']}/ping")
    assert r.status_code == 202 and r.json()["event_type"] == "Ping"
    assert receiver.wait_for(lambda: receiver.received("/a"))
    time.sleep(0.3)
    (ping,) = receiver.received()
    assert ping.path == "/a" and ping.signature_ok and ping.json["data"]["webhook_id"] == a["id"]
    validate(ping.json)
    assert project.api("DELETE", f"/webhooks/{b['id']}").status_code == 204
    assert project.api("GET", f"/webhooks/{b['id']}").status_code == 404


def test_events_committed_before_a_restart_are_delivered_after_it(hooks_stack, unique, receiver):
    project = Project_(hooks_stack, unique)
    hook = project.create_hook(receiver.url(), types=["RunFinished"])
    receiver.secrets["/hook"] = hook["secret"]
    hooks_stack.stop()
    # what a crash leaves behind: events committed with their change, never dispatched
    engine = dbmod.make_engine(hooks_stack.db_url)
    with Session(engine) as s:
        p = s.scalars(select(Project).where(Project.slug == project.slug)).one()
        ids = [
            record_event(
                s,
                "RunFinished",
                {
                    "run_id": f"crash-{i}",
                    "experiment_id": "1",
                    "status": "failed",
                    "start_time": None,
                    "end_time": "2026-01-01T00:00:00Z",
                    "user": "u",
                },
                p,
            ).id
            for i in range(5)
        ]
        s.commit()
    engine.dispose()
    hooks_stack.start()
    assert receiver.wait_for(lambda: len(receiver.unique_events()) >= 5, timeout=30)
    assert sorted(receiver.unique_events()) == sorted(ids)
    assert len(receiver.received()) == 5 and all(r.signature_ok for r in receiver.received())


def test_the_signing_secret_never_reaches_the_log(hooks_stack, unique):
    project = Project_(hooks_stack, unique)
    secret = project.create_hook("http://127.0.0.1:9/logged")["secret"]
    time.sleep(0.3)
    assert secret not in hooks_stack.log_path.read_text(errors="replace")
    assert "whsec_" not in hooks_stack.log_path.read_text(errors="replace")


def test_event_types_are_published_with_their_schemas(hooks_stack, unique):
    token = hooks_stack.user_token(unique("reader"))
    items = hooks_stack.api("GET", "/event-types", token).json()["items"]
    assert {i["type"] for i in items} == set(EVENT_TYPES) | {"Ping"}
    for i in items:
        jsonschema.Draft202012Validator.check_schema(i["schema"])
    assert hooks_stack.api("GET", "/event-types").status_code == 401
