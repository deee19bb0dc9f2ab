"""The one error type of the control plane, mapped to the JSON error shape of DESIGN.md §5."""

from __future__ import annotations

from typing import Any


class AnimusError(Exception):
    """An error a client can act on: an HTTP status, a stable machine reason and a message.

    Raised by domain services and handlers alike; `write_error` turns it into
    ``{"status": ..., "reason": ..., "message": ..., "details": {...}}``.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        audited: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.details = details or {}
        self.headers = headers or {}
        #: the handler already committed the audit row of this refusal (write_error adds none)
        self.audited = audited

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "details": self.details,
        }


def not_found(kind: str, name: str) -> AnimusError:
    return AnimusError(404, f"{kind}_not_found", f"{kind.replace('_', ' ').capitalize()} {name!r} not found")


def invalid(message: str, **details: Any) -> AnimusError:
    return AnimusError(400, "invalid_request", message, details)


def conflict(reason: str, message: str, **details: Any) -> AnimusError:
    return AnimusError(409, reason, message, details)
