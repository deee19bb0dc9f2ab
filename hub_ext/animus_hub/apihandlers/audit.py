"""Reading the audit trail: per project (owners) and platform-wide (admins)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from ..audit import chain_head, event_to_dict
from ..errors import AnimusError
from ..orm import AuditEvent
from ..services.pagination import page
from .base import APIHandler
from .projects import PROJECT

AUDIT_PAGE_MAX = 5000


class _AuditReadHandler(APIHandler):
    def _filtered(self, project_slug: str | None):
        stmt = select(AuditEvent)
        if project_slug is not None:
            stmt = stmt.where(AuditEvent.project == project_slug)
        for arg, op in (("since", AuditEvent.time.__ge__), ("until", AuditEvent.time.__lt__)):
            raw = self.get_query_argument(arg, None)
            if raw:
                stmt = stmt.where(op(_parse_time(arg, raw)))
        for arg, column in (
            ("actor", AuditEvent.actor),
            ("action", AuditEvent.action),
            ("outcome", AuditEvent.outcome),
        ):
            raw = self.get_query_argument(arg, None)
            if raw:
                stmt = stmt.where(column == raw)
        order = self.get_query_argument("order", "asc")
        if order not in ("asc", "desc"):
            raise AnimusError(400, "invalid_argument", "order is 'asc' (oldest first, the default) or 'desc'")
        rows, next_cursor = page(
            self.db,
            stmt,
            AuditEvent.seq,
            self.limit_arg(AUDIT_PAGE_MAX),
            self.get_query_argument("cursor", None),
            descending=order == "desc",
        )
        self.write_json({"items": [event_to_dict(e) for e in rows], "next_cursor": next_cursor})


def _parse_time(name: str, raw: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise AnimusError(
            400, "invalid_argument", f"{name} must be an ISO 8601 time, e.g. 2026-01-31T12:00:00Z"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class ProjectAuditAPIHandler(_AuditReadHandler):
    actions = {"GET": "audit:read"}

    def get(self, project: str) -> None:
        self._filtered(project)


class AuditAPIHandler(_AuditReadHandler):
    actions = {"GET": "audit:read_all"}

    def get(self) -> None:
        project = self.get_query_argument("project", None)
        self._filtered(project)


class AuditHeadAPIHandler(APIHandler):
    """The chain's tip, against which a verifier detects events cut from the end."""

    actions = {"GET": "audit:read_all"}

    def get(self) -> None:
        self.write_json(chain_head(self.db))


default_handlers = [
    (f"/projects/{PROJECT}/audit/events", ProjectAuditAPIHandler),
    ("/audit/events", AuditAPIHandler),
    ("/audit/head", AuditHeadAPIHandler),
]
