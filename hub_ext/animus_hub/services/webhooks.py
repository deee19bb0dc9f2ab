"""Webhooks: project subscriptions to events, their deliveries, and the delivery bookkeeping.

The API side creates, changes and lists subscriptions, shows the delivery log and
queues manual redeliveries and pings. The scheduler side (``fan_out``,
``claim_due``, ``record_results``) turns outbox events into deliveries, hands due
deliveries to the sender and records each attempt:

- fan-out writes one delivery per matching enabled subscription and marks the event
  dispatched in one transaction, so a crash loses or duplicates nothing;
- a claimed delivery is hidden (``next_attempt_at`` moved ahead) while it is in flight;
  if the process dies, the claim expires and the delivery is tried again (at least once);
- a failed attempt is retried with exponential backoff and jitter until the retry
  horizon; then the delivery is failed, and if nothing reached the receiver since the
  delivery was created the subscription is disabled and the audit trail says so.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from .. import audit
from ..errors import AnimusError
from ..events import EVENT_TYPES
from ..orm import Delivery, DeliveryAttempt, OutboxEvent, Project, Webhook, new_uuid, utcnow
from ..schemas import WebhookCreate, WebhookUpdate
from ..webhook_delivery import AttemptResult, NetworkPolicy, SecretBox, check_url, new_secret
from .pagination import decode_cursor, encode_cursor
from .projects import ensure_active, iso

PING = "Ping"
SCHEDULER_ACTOR = audit.Actor(name="animus-scheduler", kind="system")
DELIVERY_FILTER_STATES = ("pending", "succeeded", "failed")


# --- JSON ---------------------------------------------------------------------------------


def webhook_json(w: Webhook, project_slug: str) -> dict[str, Any]:
    """A subscription as the API shows it: never its secret, only the secret's last characters."""
    return {
        "id": w.id,
        "project": project_slug,
        "url": w.url,
        "description": w.description,
        "event_types": list(w.event_types or []),
        "enabled": w.enabled,
        "secret_hint": w.secret_hint,
        "created_at": iso(w.created_at),
        "created_by": w.created_by,
        "updated_at": iso(w.updated_at),
        "disabled_at": iso(w.disabled_at),
        "disabled_reason": w.disabled_reason,
        "last_success_at": iso(w.last_success_at),
        "last_failure_at": iso(w.last_failure_at),
        "consecutive_failures": w.consecutive_failures,
    }


def attempt_json(a: DeliveryAttempt) -> dict[str, Any]:
    return {
        "attempt": a.attempt,
        "started_at": iso(a.started_at),
        "duration_ms": a.duration_ms,
        "status_code": a.status_code,
        "error": a.error,
        "response_excerpt": a.response_excerpt,
    }


def delivery_json(d: Delivery, attempts: list[DeliveryAttempt] | None = None) -> dict[str, Any]:
    out = {
        "id": d.id,
        "webhook_id": d.webhook_id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "state": d.state,
        "attempts": d.attempts,
        "next_attempt_at": iso(d.next_attempt_at) if d.state == "pending" else None,
        "last_attempt_at": iso(d.last_attempt_at),
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "redelivery_of": d.redelivery_of,
        "requested_by": d.requested_by,
        "created_at": iso(d.created_at),
        "completed_at": iso(d.completed_at),
    }
    if attempts is not None:
        out["attempt_log"] = [attempt_json(a) for a in attempts]
        out["body"] = json.loads(d.body)
    return out


def envelope(event_id: str, event_type: str, created_at: dt.datetime, project: str | None, data: dict) -> str:
    """The body every receiver gets: the same envelope for every event type (schemas: events_schema)."""
    return json.dumps(
        {"id": event_id, "type": event_type, "created_at": iso(created_at), "project": project, "data": data},
        separators=(",", ":"),
        sort_keys=False,
    )


def event_body(event: OutboxEvent) -> str:
    payload = dict(event.payload or {})
    project = payload.pop("project", None)
    return envelope(event.id, event.type, event.created_at, project, payload)


# --- checks -------------------------------------------------------------------------------


def check_event_types(types: Iterable[str]) -> list[str]:
    wanted = sorted(set(types))
    unknown = [t for t in wanted if t not in EVENT_TYPES]
    if unknown:
        raise AnimusError(
            422,
            "unknown_event_type",
            f"Unknown event type(s) {', '.join(unknown)}; known: {', '.join(sorted(EVENT_TYPES))}",
            {"unknown": unknown, "known": sorted(EVENT_TYPES)},
        )
    if not wanted:
        raise AnimusError(
            422, "unknown_event_type", "Subscribe to at least one event type", {"known": sorted(EVENT_TYPES)}
        )
    return wanted


def ensure_unique_url(session: Session, project: Project, url: str, except_id: int | None = None) -> None:
    stmt = select(Webhook.id).where(Webhook.project_id == project.id, Webhook.url == url)
    if except_id is not None:
        stmt = stmt.where(Webhook.id != except_id)
    existing = session.scalar(stmt)
    if existing is not None:
        raise AnimusError(
            409,
            "webhook_exists",
            f"Project {project.slug!r} already has webhook {existing} for this URL; change its event types instead",
            {"webhook_id": existing},
        )


def ensure_enabled(w: Webhook) -> None:
    if not w.enabled:
        raise AnimusError(
            409,
            "webhook_disabled",
            f"Webhook {w.id} is disabled ({w.disabled_reason or 'by a maintainer'}); enable it first",
            {"disabled_reason": w.disabled_reason},
        )


# --- subscriptions --------------------------------------------------------------------------


def list_webhooks(
    session: Session, project: Project, limit: int, cursor: str | None
) -> tuple[list[Webhook], str | None]:
    after = decode_cursor(cursor)
    rows = list(
        session.scalars(
            select(Webhook)
            .where(Webhook.project_id == project.id, Webhook.id > after)
            .order_by(Webhook.id)
            .limit(limit + 1)
        )
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].id) if more and rows else None


def find_webhook(session: Session, project: Project, webhook_id: str) -> Webhook:
    w = None
    if webhook_id.isdigit() and len(webhook_id) < 12:
        w = session.scalar(select(Webhook).where(Webhook.project_id == project.id, Webhook.id == int(webhook_id)))
    if w is None:
        raise AnimusError(404, "webhook_not_found", f"No webhook {webhook_id!r} in project {project.slug!r}")
    return w


def create_webhook(
    session: Session, project: Project, data: WebhookCreate, by: str, box: SecretBox, policy: NetworkPolicy
) -> tuple[Webhook, str]:
    """Create a subscription; returns it and its signing secret (shown once, stored encrypted)."""
    ensure_active(project)
    url = check_url(data.url, policy)
    types = check_event_types(data.event_types)
    ensure_unique_url(session, project, url)
    secret = new_secret()
    now = utcnow()
    w = Webhook(
        project_id=project.id,
        url=url,
        description=data.description,
        event_types=types,
        enabled=data.enabled,
        secret_encrypted="",
        secret_hint="…" + secret[-4:],
        created_at=now,
        created_by=by,
        updated_at=now,
        disabled_at=None if data.enabled else now,
        disabled_reason="" if data.enabled else "created disabled",
        consecutive_failures=0,
    )
    session.add(w)
    session.flush()  # the id is bound into the ciphertext
    w.secret_encrypted = box.encrypt(secret, w.id)
    return w, secret


def update_webhook(session: Session, project: Project, w: Webhook, data: WebhookUpdate, policy: NetworkPolicy) -> dict:
    """Apply the change; returns {field: [old, new]} (URLs only as 'changed': they may carry tokens)."""
    ensure_active(project)
    changes: dict[str, Any] = {}
    now = utcnow()
    if data.url is not None and data.url != w.url:
        url = check_url(data.url, policy)
        ensure_unique_url(session, project, url, except_id=w.id)
        w.url = url
        changes["url"] = "changed"
    if data.event_types is not None:
        types = check_event_types(data.event_types)
        if types != list(w.event_types or []):
            changes["event_types"] = [list(w.event_types or []), types]
            w.event_types = types
    if data.description is not None and data.description != w.description:
        w.description = data.description
        changes["description"] = "changed"
    if data.enabled is not None and data.enabled != w.enabled:
        changes["enabled"] = [w.enabled, data.enabled]
        w.enabled = data.enabled
        if data.enabled:
            w.disabled_at, w.disabled_reason, w.consecutive_failures = None, "", 0
            # deliveries that waited while it was disabled go out now
            session.execute(
                update(Delivery)
                .where(Delivery.webhook_id == w.id, Delivery.state == "pending")
                .values(next_attempt_at=now)
            )
        else:
            w.disabled_at, w.disabled_reason = now, "disabled by a maintainer"
    if changes:
        w.updated_at = now
    return changes


def delete_webhook(session: Session, project: Project, w: Webhook) -> None:
    ensure_active(project)
    session.delete(w)


# --- the delivery log, redelivery and pings ---------------------------------------------------


def list_deliveries(
    session: Session, w: Webhook, limit: int, cursor: str | None, state: str | None = None
) -> tuple[list[Delivery], str | None]:
    """Newest first; the cursor names the last id seen."""
    before = decode_cursor(cursor)
    stmt = select(Delivery).where(Delivery.webhook_id == w.id)
    if before:
        stmt = stmt.where(Delivery.id < before)
    if state is not None:
        if state not in DELIVERY_FILTER_STATES:
            raise AnimusError(
                400, "invalid_argument", f"state must be one of {', '.join(DELIVERY_FILTER_STATES)}", {"state": state}
            )
        stmt = stmt.where(Delivery.state == state)
    rows = list(session.scalars(stmt.order_by(Delivery.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].id) if more and rows else None


def find_delivery(session: Session, w: Webhook, delivery_id: str) -> Delivery:
    d = None
    if delivery_id.isdigit() and len(delivery_id) < 19:
        d = session.scalar(select(Delivery).where(Delivery.webhook_id == w.id, Delivery.id == int(delivery_id)))
    if d is None:
        raise AnimusError(404, "delivery_not_found", f"Webhook {w.id} has no delivery {delivery_id!r}")
    return d


def delivery_attempts(session: Session, d: Delivery) -> list[DeliveryAttempt]:
    return list(
        session.scalars(
            select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == d.id).order_by(DeliveryAttempt.attempt)
        )
    )


def redeliver(session: Session, project: Project, w: Webhook, d: Delivery, by: str) -> Delivery:
    """Queue the same body again (same event id, so receivers can dedupe) as a new delivery."""
    ensure_active(project)
    ensure_enabled(w)
    if d.state == "pending":
        raise AnimusError(
            409,
            "delivery_pending",
            f"Delivery {d.id} is still being retried; wait for it to finish",
            {"delivery_id": d.id},
        )
    return _queue(session, w, d.event_id, d.event_type, d.body, by, redelivery_of=d.id)


def ping(session: Session, project: Project, w: Webhook, by: str) -> Delivery:
    """Queue a `Ping` event for this webhook alone (to check a receiver and its signature check)."""
    ensure_active(project)
    ensure_enabled(w)
    event_id = new_uuid()
    body = envelope(event_id, PING, utcnow(), project.slug, {"webhook_id": w.id, "requested_by": by})
    return _queue(session, w, event_id, PING, body, by)


def _queue(
    session: Session, w: Webhook, event_id: str, event_type: str, body: str, by: str, redelivery_of: int | None = None
) -> Delivery:
    now = utcnow()
    d = Delivery(
        webhook_id=w.id,
        event_id=event_id,
        event_type=event_type,
        body=body,
        state="pending",
        attempts=0,
        next_attempt_at=now,
        last_error="",
        redelivery_of=redelivery_of,
        requested_by=by,
        created_at=now,
    )
    session.add(d)
    session.flush()
    return d


# --- the scheduler's side --------------------------------------------------------------------


def fan_out(session: Session, limit: int) -> int:
    """Turn up to `limit` pending outbox events into deliveries and mark them dispatched.

    The caller commits: deliveries and the dispatched mark land together or not at all.
    Returns how many events were dispatched.
    """
    events = list(
        session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.dispatched_at.is_(None))
            .order_by(OutboxEvent.seq)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not events:
        return 0
    project_ids = {e.project_id for e in events if e.project_id is not None}
    hooks: dict[int, list[tuple[int, frozenset[str]]]] = {}
    if project_ids:
        for wid, pid, types in session.execute(
            select(Webhook.id, Webhook.project_id, Webhook.event_types).where(
                Webhook.project_id.in_(project_ids), Webhook.enabled.is_(True)
            )
        ):
            hooks.setdefault(pid, []).append((wid, frozenset(types or ())))
    now = utcnow()
    rows = []
    for e in events:
        matching = [wid for wid, types in hooks.get(e.project_id, []) if e.type in types]
        if not matching:
            continue
        body = event_body(e)
        for wid in matching:
            rows.append(
                {
                    "webhook_id": wid,
                    "event_id": e.id,
                    "event_type": e.type,
                    "body": body,
                    "state": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "last_error": "",
                    "requested_by": "",
                    "created_at": now,
                }
            )
    if rows:
        session.execute(insert(Delivery), rows)
    session.execute(update(OutboxEvent).where(OutboxEvent.seq.in_([e.seq for e in events])).values(dispatched_at=now))
    return len(events)


@dataclass(frozen=True)
class ClaimedDelivery:
    id: int
    webhook_id: int
    url: str
    secret_encrypted: str
    event_id: str
    event_type: str
    body: str
    attempt: int


def claim_due(
    session: Session, limit: int, hold: dt.timedelta, exclude: set[int] | None = None
) -> list[ClaimedDelivery]:
    """Take up to `limit` due deliveries of enabled webhooks and hide them for `hold` while in flight.

    The caller commits. If the process dies, the deliveries come due again after `hold`.
    """
    now = utcnow()
    stmt = (
        select(
            Delivery.id,
            Delivery.webhook_id,
            Webhook.url,
            Webhook.secret_encrypted,
            Delivery.event_id,
            Delivery.event_type,
            Delivery.body,
            Delivery.attempts,
        )
        .join(Webhook, Webhook.id == Delivery.webhook_id)
        .where(Delivery.state == "pending", Delivery.next_attempt_at <= now, Webhook.enabled.is_(True))
        .order_by(Delivery.next_attempt_at, Delivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=Delivery)
    )
    if exclude:
        stmt = stmt.where(Delivery.id.not_in(exclude))
    claimed = [
        ClaimedDelivery(r.id, r.webhook_id, r.url, r.secret_encrypted, r.event_id, r.event_type, r.body, r.attempts + 1)
        for r in session.execute(stmt)
    ]
    if claimed:
        session.execute(
            update(Delivery).where(Delivery.id.in_([c.id for c in claimed])).values(next_attempt_at=now + hold)
        )
    return claimed


def record_results(session: Session, results: list[AttemptResult], backoff: Any, horizon: dt.timedelta) -> list[int]:
    """Record attempts and move deliveries on; the caller commits. Returns the ids of
    webhooks this disabled (each audited in the same transaction)."""
    if not results:
        return []
    by_id = {r.delivery_id: r for r in results}
    # plain rows and one executemany UPDATE: a busy scheduler records hundreds of attempts a round
    deliveries = {
        row.id: row
        for row in session.execute(
            select(Delivery.id, Delivery.webhook_id, Delivery.state, Delivery.created_at).where(Delivery.id.in_(by_id))
        )
    }
    webhook_ids = {d.webhook_id for d in deliveries.values()}
    webhooks = {w.id: w for w in session.scalars(select(Webhook).where(Webhook.id.in_(webhook_ids)))}
    now = utcnow()
    attempts = []
    changes: list[dict[str, Any]] = []
    disabled: list[int] = []
    for delivery_id, r in by_id.items():
        d = deliveries.get(delivery_id)
        w = webhooks.get(d.webhook_id) if d is not None else None
        if d is None or w is None or d.state != "pending":
            continue  # deleted meanwhile (the webhook with its log), or already settled
        change: dict[str, Any] = {
            "id": d.id,
            "attempts": r.attempt,
            "last_attempt_at": r.started_at,
            "last_status_code": r.status_code,
            "last_error": r.error,
            "state": "pending",
            "completed_at": None,
            "next_attempt_at": None,
        }
        changes.append(change)
        attempts.append(
            {
                "delivery_id": d.id,
                "attempt": r.attempt,
                "started_at": r.started_at,
                "duration_ms": r.duration_ms,
                "status_code": r.status_code,
                "error": r.error,
                "response_excerpt": r.excerpt,
            }
        )
        if r.ok:
            change.update(state="succeeded", completed_at=now)
            w.last_success_at, w.consecutive_failures = now, 0
            continue
        w.consecutive_failures += 1
        w.last_failure_at = now
        next_at = now + dt.timedelta(seconds=backoff(r.attempt))
        if next_at <= d.created_at + horizon:
            change["next_attempt_at"] = next_at
            continue
        change.update(state="failed", completed_at=now)
        nothing_got_through = w.last_success_at is None or w.last_success_at < d.created_at
        if w.enabled and nothing_got_through:
            w.enabled = False
            w.disabled_at = now
            w.disabled_reason = (
                f"automatically, after {w.consecutive_failures} failed attempts: nothing reached the receiver "
                f"within the retry horizon (last: {r.error or r.status_code})"
            )[:500]
            w.updated_at = now
            disabled.append(w.id)
            slug = session.scalar(select(Project.slug).where(Project.id == w.project_id)) or ""
            audit.record(
                session,
                SCHEDULER_ACTOR,
                "webhook.disable",
                resource=f"project/{slug}/webhooks/{w.id}",
                project=slug,
                details={
                    "automatic": True,
                    "consecutive_failures": w.consecutive_failures,
                    "failed_delivery": d.id,
                    "last_error": r.error[:200],
                    "last_status_code": r.status_code,
                },
            )
    if changes:
        session.execute(update(Delivery), changes)
    if attempts:
        session.execute(insert(DeliveryAttempt), attempts)
    return disabled
