"""Appending to the audit trail (DESIGN.md §5 "Audit").

`record()` adds an event to the caller's session, so it commits or rolls back with
the change it describes. Appends are serialised on the chain head row
(``SELECT … FOR UPDATE`` on PostgreSQL; SQLite serialises writers itself), so the
chain stays linear with several animus-api replicas. There is no switch to turn
auditing off.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from animus.auditchain import GENESIS_HASH, VerifyResult, event_hash, format_time, verify

from .orm import AuditChainHead, AuditEvent, new_uuid, utcnow

SECRET_HINTS = ("password", "secret", "token", "credential", "private_key", "api_key")


@dataclass(frozen=True)
class Actor:
    name: str
    kind: str
    source: str = ""
    request_id: str = ""


def scrub(details: dict[str, Any]) -> dict[str, Any]:
    """Replace values under secret-looking keys: audit details never hold secrets."""
    clean: dict[str, Any] = {}
    for key, value in details.items():
        if any(h in key.lower() for h in SECRET_HINTS):
            clean[key] = "[redacted]"
        elif isinstance(value, dict):
            clean[key] = scrub(value)
        else:
            clean[key] = value
    return clean


def event_to_dict(e: AuditEvent) -> dict[str, Any]:
    return {
        "seq": e.seq,
        "id": e.id,
        "time": format_time(e.time),
        "actor": e.actor,
        "actor_kind": e.actor_kind,
        "source": e.source,
        "request_id": e.request_id,
        "action": e.action,
        "resource": e.resource,
        "project": e.project,
        "outcome": e.outcome,
        "details": e.details,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    }


def record(
    session: Session,
    actor: Actor,
    action: str,
    *,
    outcome: str = "success",
    resource: str = "",
    project: str = "",
    details: dict[str, Any] | None = None,
    time: dt.datetime | None = None,
) -> AuditEvent:
    """Append one event in the session's transaction; it commits or rolls back with it.

    Three Core statements on the session's connection: move the head forward (an
    UPDATE … RETURNING, so the head is read under a write lock: the row lock on
    PostgreSQL, the database's write lock on SQLite, where a plain SELECT would run
    before the transaction's first write and could read a head another writer is
    about to move), insert the event, then store its hash in the head. Every change
    the API makes is audited, so this is on the hot path of every write. The returned
    event is not attached to the session.
    """
    conn = session.connection()
    seq, prev_hash = conn.execute(_ADVANCE_HEAD).one()
    # microseconds survive every backend, so the hashed text is what is stored
    when = time or utcnow()
    fields = {
        "seq": seq,
        "id": new_uuid(),
        "time": format_time(when),
        "actor": actor.name,
        "actor_kind": actor.kind,
        "source": actor.source[:64],
        "request_id": actor.request_id[:64],
        "action": action,
        "resource": resource[:512],
        "project": project,
        "outcome": outcome,
        "details": scrub(details or {}),
        "prev_hash": prev_hash,
    }
    digest = event_hash(fields)
    row = {**fields, "time": when, "hash": digest}
    conn.execute(_INSERT_EVENT, row)
    conn.execute(_SET_HEAD_HASH, {"new_hash": digest})
    return AuditEvent(**row)


_HEAD = AuditChainHead.__table__
_ADVANCE_HEAD = update(_HEAD).where(_HEAD.c.id == 1).values(seq=_HEAD.c.seq + 1).returning(_HEAD.c.seq, _HEAD.c.hash)
_INSERT_EVENT = insert(AuditEvent.__table__)
_SET_HEAD_HASH = update(_HEAD).where(_HEAD.c.id == 1).values(hash=bindparam("new_hash"))


def chain_head(session: Session) -> dict[str, Any]:
    head = session.execute(select(AuditChainHead).where(AuditChainHead.id == 1)).scalar_one()
    return {"seq": head.seq, "hash": head.hash}


def iter_events(session: Session, batch: int = 2000) -> Iterator[dict[str, Any]]:
    after = 0
    while True:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.seq > after).order_by(AuditEvent.seq).limit(batch)
        ).all()
        if not rows:
            return
        for e in rows:
            yield event_to_dict(e)
        after = rows[-1].seq


def verify_database(session: Session) -> VerifyResult:
    """Verify the whole chain as stored, against the recorded head."""
    return verify(iter_events(session), start_prev_hash=GENESIS_HASH, head=chain_head(session))
