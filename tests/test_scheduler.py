"""The scheduler loop and webhook delivery in-process, against real databases and a real receiver.

Leader election, fan-out atomicity, claims that survive a crash, backoff, the secret
box and the network policy; the API side is in test_webhooks.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from webhook_receiver import Receiver

from animus_hub import db as dbmod
from animus_hub.cli import main as hub_cli
from animus_hub.errors import AnimusError
from animus_hub.events import record_event
from animus_hub.orm import AuditEvent, Delivery, DeliveryAttempt, OutboxEvent, Project, Webhook, utcnow
from animus_hub.scheduler import Lease, Scheduler, WebhookDeliveryStep
from animus_hub.schemas import WebhookCreate
from animus_hub.services import webhooks as svc
from animus_hub.webhook_delivery import (
    AttemptResult,
    NetworkPolicy,
    SecretBox,
    SecretUnavailable,
    WebhookDelivery,
    WebhookSender,
    check_url,
    sign,
    verify_signature,
)

KEY = "k" * 40


@pytest.fixture
def factory(fresh_db_url):
    engine = dbmod.make_engine(fresh_db_url)
    dbmod.ensure_schema(engine, fresh_db_url)
    yield dbmod.make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def fast_settings(**overrides) -> WebhookDelivery:
    values = dict(
        secret_keys=[KEY],
        retry_base_seconds=0.1,
        retry_max_interval=0.5,
        retry_horizon_seconds=30,
        timeout=2.0,
        connect_timeout=1.0,
    )
    values.update(overrides)
    return WebhookDelivery(**values)


def make_webhook(factory, url: str, types=("RunFinished",), settings: WebhookDelivery | None = None):
    settings = settings or fast_settings()
    with factory() as s:
        p = Project(slug=f"p{random.randrange(10**6)}", display_name="p", created_by="t")
        s.add(p)
        s.flush()
        w, secret = svc.create_webhook(
            s, p, WebhookCreate(url=url, event_types=list(types)), "t", settings.secret_box(), settings.policy
        )
        s.commit()
        return p.id, w.id, secret


def record_events(factory, project_id: int, n: int, type_: str = "RunFinished") -> list[str]:
    with factory() as s:
        p = s.get(Project, project_id)
        ids = [record_event(s, type_, {"run_id": f"r{i}"}, p).id for i in range(n)]
        s.commit()
        return ids


async def run_until(schedulers: list[Scheduler], done, timeout: float = 20) -> None:
    tasks = [sch.start() for sch in schedulers]
    assert all(tasks)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not done():
            await asyncio.sleep(0.05)
    finally:
        for sch in schedulers:
            await sch.stop()


# --- leader election ------------------------------------------------------------------------


def test_only_one_holder_gets_the_lease_until_it_expires_or_is_released(factory):
    a = Lease(factory, "main", "replica-a", ttl=0.5)
    b = Lease(factory, "main", "replica-b", ttl=0.5)
    assert a.acquire() is True
    assert b.acquire() is False
    assert a.acquire() is True  # renewal
    assert a.current() == ("replica-a", 1)
    time.sleep(0.6)
    assert b.acquire() is True  # a stopped renewing
    assert a.acquire() is False
    assert b.current() == ("replica-b", 2)
    b.release()
    assert a.acquire() is True
    assert a.current() == ("replica-a", 3)


@pytest.mark.parametrize("backend", ["postgresql"])
def test_two_schedulers_on_postgresql_deliver_each_event_exactly_once(factory, receiver):
    _, wid, secret = make_webhook(factory, receiver.url())
    receiver.secrets["/hook"] = secret
    project_id = factory().get(Webhook, wid).project_id
    ids = record_events(factory, project_id, 60)

    def scheduler(name: str) -> Scheduler:
        settings = fast_settings()
        return Scheduler(
            session_factory=factory,
            steps=[WebhookDeliveryStep(factory, settings)],
            interval=0.02,
            lease_seconds=5,
            holder_id=name,
        )

    one, two = scheduler("one"), scheduler("two")
    asyncio.run(run_until([one, two], lambda: len(receiver.unique_events()) >= len(ids)))
    got = receiver.received()
    assert sorted(r.event_id for r in got) == sorted(ids), "each event exactly once, none lost"
    assert all(r.signature_ok for r in got)
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Delivery).where(Delivery.state == "succeeded")) == len(ids)
        assert s.scalar(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.dispatched_at.is_(None))) == 0


# --- crash safety -----------------------------------------------------------------------------


def test_a_crash_during_fan_out_leaves_events_pending_and_makes_no_deliveries(factory):
    project_id, wid, _ = make_webhook(factory, "http://127.0.0.1:9/hook")
    ids = record_events(factory, project_id, 3)
    with factory() as s:
        assert svc.fan_out(s, 100) == 3
        s.rollback()  # the process died before commit
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(Delivery)) == 0
        assert [e.id for e in s.scalars(select(OutboxEvent).where(OutboxEvent.dispatched_at.is_(None)))] == ids
        assert svc.fan_out(s, 100) == 3
        s.commit()
        assert sorted(s.scalars(select(Delivery.event_id))) == sorted(ids)
        assert svc.fan_out(s, 100) == 0  # dispatched: never fanned out twice


def test_claimed_deliveries_of_a_dead_process_come_due_again(factory):
    project_id, _, _ = make_webhook(factory, "http://127.0.0.1:9/hook")
    record_events(factory, project_id, 2)
    with factory() as s:
        svc.fan_out(s, 100)
        s.commit()
    with factory() as s:
        claimed = svc.claim_due(s, 10, dt.timedelta(seconds=0.3))
        s.commit()
    assert len(claimed) == 2 and all(c.attempt == 1 for c in claimed)
    with factory() as s:
        assert svc.claim_due(s, 10, dt.timedelta(seconds=0.3)) == []  # hidden while in flight
    time.sleep(0.4)  # ... and the process that claimed them never recorded a result
    with factory() as s:
        again = svc.claim_due(s, 10, dt.timedelta(seconds=0.3))
    assert sorted(c.id for c in again) == sorted(c.id for c in claimed)


def test_fan_out_skips_disabled_webhooks_and_other_event_types(factory):
    project_id, wid, _ = make_webhook(factory, "http://127.0.0.1:9/a", types=("DatasetVersionCreated",))
    record_events(factory, project_id, 2, "RunFinished")
    with factory() as s:
        svc.fan_out(s, 100)
        s.commit()
        assert s.scalar(select(func.count()).select_from(Delivery)) == 0
        s.get(Webhook, wid).enabled = False
        s.commit()
    record_events(factory, project_id, 1, "DatasetVersionCreated")
    with factory() as s:
        svc.fan_out(s, 100)
        s.commit()
        assert s.scalar(select(func.count()).select_from(Delivery)) == 0


# --- retries ---------------------------------------------------------------------------------


def test_backoff_doubles_with_jitter_up_to_the_cap():
    settings = WebhookDelivery(retry_base_seconds=1, retry_max_interval=10)
    rng = random.Random(7)
    for attempt, full in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (30, 10)]:
        for _ in range(20):
            assert full / 2 <= settings.backoff(attempt, rng) <= full


def test_failing_receiver_is_retried_until_it_answers_and_every_attempt_is_logged(factory, receiver):
    receiver.respond = lambda n: 500 if n < 3 else 200
    project_id, wid, secret = make_webhook(factory, receiver.url())
    receiver.secrets["/hook"] = secret
    (event_id,) = record_events(factory, project_id, 1)
    sch = Scheduler(
        session_factory=factory, steps=[WebhookDeliveryStep(factory, fast_settings())], interval=0.02, holder_id="x"
    )
    asyncio.run(
        run_until([sch], lambda: any(r.headers.get("Animus-Delivery-Attempt") == "4" for r in receiver.received()))
    )
    got = receiver.received()
    assert [r.event_id for r in got] == [event_id] * 4
    assert [r.headers["Animus-Delivery-Attempt"] for r in got] == ["1", "2", "3", "4"]
    assert all(r.signature_ok for r in got)
    gaps = [b.at - a.at for a, b in zip(got, got[1:], strict=False)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2  # base 0.1 s, doubling, at least half of it
    with factory() as s:
        d = s.scalars(select(Delivery)).one()
        attempts = s.scalars(select(DeliveryAttempt).order_by(DeliveryAttempt.attempt)).all()
        w = s.get(Webhook, wid)
    assert (d.state, d.attempts, d.last_status_code) == ("succeeded", 4, 200)
    assert [a.status_code for a in attempts] == [500, 500, 500, 200]
    assert w.enabled and w.consecutive_failures == 0 and w.last_success_at is not None


def test_a_receiver_that_never_answers_well_gets_the_webhook_disabled_and_audited(factory, receiver):
    receiver.respond = lambda n: 500
    project_id, wid, _ = make_webhook(factory, receiver.url())
    record_events(factory, project_id, 1)
    settings = fast_settings(retry_horizon_seconds=0.8)
    sch = Scheduler(session_factory=factory, steps=[WebhookDeliveryStep(factory, settings)], interval=0.02)

    def disabled() -> bool:
        with factory() as s:
            return not s.get(Webhook, wid).enabled

    asyncio.run(run_until([sch], disabled))
    with factory() as s:
        w = s.get(Webhook, wid)
        slug = s.get(Project, project_id).slug
        d = s.scalars(select(Delivery)).one()
        events = s.scalars(select(AuditEvent).where(AuditEvent.action == "webhook.disable")).all()
    assert not w.enabled and "retry horizon" in w.disabled_reason
    assert d.state == "failed" and d.attempts == len(receiver.received()) >= 2
    assert [(e.actor, e.actor_kind, e.resource) for e in events] == [
        ("animus-scheduler", "system", f"project/{slug}/webhooks/{wid}")
    ]


# --- what the sender refuses ---------------------------------------------------------------------


def test_sender_records_redirects_timeouts_and_refused_addresses_as_failures(receiver):
    receiver.respond = lambda n: ("redirect", receiver.url("/elsewhere")) if n == 0 else ("hang", 5)
    sender = WebhookSender(fast_settings(timeout=0.5))

    async def go():
        try:
            redirect = await sender.send(receiver.url("/r"), {}, b"{}", 1, 1)
            t0 = time.monotonic()
            slow = await sender.send(receiver.url("/slow"), {}, b"{}", 2, 1)
            slow_took = time.monotonic() - t0
            metadata = await sender.send("http://169.254.169.254/latest/meta-data", {}, b"{}", 3, 1)
            mapped = await sender.send("http://[::ffff:169.254.169.254]/", {}, b"{}", 4, 1)
            closed = await sender.send("http://127.0.0.1:9/hook", {}, b"{}", 5, 1)
            return redirect, slow, slow_took, metadata, mapped, closed
        finally:
            await sender.close()

    redirect, slow, slow_took, metadata, mapped, closed = asyncio.run(go())
    assert redirect.status_code == 307 and not redirect.ok and "not followed" in redirect.error
    assert [r.path for r in receiver.received()] == ["/r", "/slow"], "the redirect target was never requested"
    assert not slow.ok and "no complete answer" in slow.error and slow_took < 3
    assert metadata.status_code is None and metadata.error.startswith("refused")
    assert mapped.error.startswith("refused")
    assert closed.status_code is None and closed.error.startswith("connection failed")


def test_a_host_name_resolving_to_a_blocked_address_is_refused_at_connect(receiver):
    sender = WebhookSender(fast_settings(blocked_networks=["127.0.0.0/8", "::1/128"]))

    async def go():
        try:
            return await sender.send(f"http://localhost:{receiver.port}/hook", {}, b"{}", 1, 1)
        finally:
            await sender.close()

    result = asyncio.run(go())
    assert result.error.startswith("refused") and receiver.received() == []


@pytest.mark.parametrize(
    "url,reason",
    [
        ("ftp://example.org/hook", "invalid_webhook_url"),
        ("javascript:alert(1)", "invalid_webhook_url"),
        ("file:///etc/passwd", "invalid_webhook_url"),
        ("http:///no-host", "invalid_webhook_url"),
        ("https://user:pw@example.org/hook", "invalid_webhook_url"),
        ("http://example.org:99999/", "invalid_webhook_url"),
        ("http://exa mple.org/", "invalid_webhook_url"),
        ("http://169.254.169.254/latest/meta-data/", "webhook_url_blocked"),
        ("http://[fe80::1]/", "webhook_url_blocked"),
        ("http://100.100.100.200/", "webhook_url_blocked"),
    ],
)
def test_bad_webhook_urls_are_refused_with_a_reason(url, reason):
    with pytest.raises(AnimusError) as e:
        check_url(url, NetworkPolicy(WebhookDelivery().blocked_networks, []))
    assert (e.value.status, e.value.reason) == (422, reason)


def test_the_admin_allow_list_overrides_the_block_list():
    blocked = WebhookDelivery().blocked_networks
    assert check_url("http://127.0.0.1:8000/hook", NetworkPolicy(blocked, [])) == "http://127.0.0.1:8000/hook"
    assert check_url("http://169.254.10.1/", NetworkPolicy(blocked, ["169.254.10.0/24"]))
    with pytest.raises(AnimusError):
        check_url("http://169.254.169.254/", NetworkPolicy(blocked, ["169.254.10.0/24"]))


# --- secrets and signatures ------------------------------------------------------------------------


def test_secret_box_rotates_keys_and_binds_the_webhook_id():
    old = SecretBox(["old-" + "a" * 40])
    stored = old.encrypt("whsec_value", 7)
    assert "whsec_value" not in stored
    rotated = SecretBox(["new-" + "b" * 40, "old-" + "a" * 40])
    assert rotated.decrypt(stored, 7) == "whsec_value"
    assert rotated.key_id_of(stored) != rotated.primary_key_id
    assert rotated.key_id_of(rotated.encrypt("whsec_value", 7)) == rotated.primary_key_id
    with pytest.raises(SecretUnavailable):
        rotated.decrypt(stored, 8)  # copied onto another webhook
    with pytest.raises(SecretUnavailable):
        SecretBox(["new-" + "b" * 40]).decrypt(stored, 7)  # the old key was dropped too early
    with pytest.raises(ValueError):
        SecretBox(["short"])


def test_signature_covers_timestamp_and_body_and_expires():
    now = int(time.time())
    header = sign("whsec_x", now, b'{"a":1}')
    assert verify_signature("whsec_x", str(now), b'{"a":1}', header)
    assert not verify_signature("whsec_x", str(now), b'{"a":2}', header)
    assert not verify_signature("whsec_y", str(now), b'{"a":1}', header)
    assert not verify_signature("whsec_x", str(now + 1), b'{"a":1}', header)
    old = now - 600
    assert not verify_signature("whsec_x", str(old), b"{}", sign("whsec_x", old, b"{}"))  # a replay, too late


def test_created_at_of_deliveries_bounds_the_retry_horizon(factory):
    """A delivery created long ago fails at its next failed attempt instead of being retried."""
    project_id, wid, _ = make_webhook(factory, "http://127.0.0.1:9/hook")
    record_events(factory, project_id, 1)
    with factory() as s:
        svc.fan_out(s, 10)
        d = s.scalars(select(Delivery)).one()
        d.created_at = utcnow() - dt.timedelta(hours=2)
        s.commit()
        disabled = svc.record_results(
            s, [AttemptResult(d.id, 1, utcnow(), 5, 503, "answered 503", "")], lambda n: 1.0, dt.timedelta(hours=1)
        )
        s.commit()
        assert disabled == [wid]
        assert s.get(Delivery, d.id).state == "failed"


def test_rotate_keys_re_encrypts_every_secret_with_the_new_key(factory, fresh_db_url, monkeypatch):
    _, wid, secret = make_webhook(factory, "http://127.0.0.1:9/rot")
    new = "n" * 40
    monkeypatch.setenv("ANIMUS_WEBHOOK_SECRET_KEYS", f"{new},{KEY}")
    result = CliRunner().invoke(hub_cli, ["webhooks", "rotate-keys", "--db-url", fresh_db_url])
    assert result.exit_code == 0, result.output
    assert "re-encrypted 1 signing secret" in result.output
    with factory() as s:
        stored = s.get(Webhook, wid).secret_encrypted
    assert SecretBox([new]).decrypt(stored, wid) == secret  # the old key can go now
    with pytest.raises(SecretUnavailable):
        SecretBox([KEY]).decrypt(stored, wid)
    monkeypatch.setenv("ANIMUS_WEBHOOK_SECRET_KEYS", "z" * 40)
    result = CliRunner().invoke(hub_cli, ["webhooks", "rotate-keys", "--db-url", fresh_db_url])
    assert result.exit_code == 1 and "could not be decrypted" in result.output
