"""The event outbox: domain events recorded in the same transaction as their change.

Each event's ``id`` is a UUID that receivers use as an idempotency key; the
scheduler delivers undispatched events (webhooks) and marks them dispatched.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .orm import OutboxEvent, Project, utcnow

# Event types other issues emit; listed so payload schemas can be published.
EVENT_TYPES = frozenset(
    {
        "ProjectCreated",
        "ProjectArchived",
        "ProjectUnarchived",
        "RunFinished",
        "ModelApproved",
        "ModelVersionStatusChanged",
        "DatasetVersionCreated",
    }
)


def record_event(session: Session, type: str, payload: dict[str, Any], project: Project | None = None) -> OutboxEvent:
    """Add a domain event to the session; it exists if and only if the change commits."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    event = OutboxEvent(
        type=type,
        project_id=project.id if project is not None else None,
        payload={**payload, "project": project.slug if project is not None else None},
        created_at=utcnow(),
    )
    session.add(event)
    session.flush()
    return event


def pending(session: Session, limit: int = 100) -> list[OutboxEvent]:
    """The oldest events not yet dispatched, in the order they were recorded."""
    return list(
        session.scalars(
            select(OutboxEvent).where(OutboxEvent.dispatched_at.is_(None)).order_by(OutboxEvent.seq).limit(limit)
        )
    )


def mark_dispatched(session: Session, event: OutboxEvent) -> None:
    event.dispatched_at = utcnow()
