"""Service accounts of a project and their tokens.

A service account holds one project role; its tokens (``anm_<prefix>_<secret>``, see
``auth.tokens``) act with that role, optionally narrowed by scopes. A token's value
is returned once, when it is issued; only its sha256 is stored. Revoking a token or
disabling (deleting) its account takes effect at the next request: animus-api keeps
no cache of Animus tokens.

Role ceiling: a caller may create, change or issue tokens for a service account only
if the account's role (old and new) is at most the caller's own role in the project,
so that a maintainer cannot mint an owner-level token. Revoking and disabling, which
only take power away, are open to every maintainer.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..auth.tokens import issue_token
from ..errors import AnimusError
from ..orm import Project, Role, ServiceAccount, Token, utcnow
from ..schemas import ServiceAccountCreate, ServiceAccountTokenCreate, ServiceAccountUpdate
from .pagination import page
from .projects import ensure_active, iso

TOKEN_KIND = "service_account"  # noqa: S105 (a token kind, not a secret)


# --- JSON ------------------------------------------------------------------------------


def service_account_json(sa: ServiceAccount) -> dict[str, Any]:
    return {
        "name": sa.name,
        "description": sa.description,
        "role": sa.role,
        "created_at": iso(sa.created_at),
        "created_by": sa.created_by,
        "disabled": sa.disabled_at is not None,
        "disabled_at": iso(sa.disabled_at),
    }


def token_state(t: Token, now: dt.datetime | None = None) -> str:
    now = now or utcnow()
    if t.revoked_at is not None:
        return "revoked"
    if t.expires_at is not None and t.expires_at <= now:
        return "expired"
    return "active"


def token_json(t: Token) -> dict[str, Any]:
    """A token's metadata: never its value, never its hash."""
    return {
        "prefix": t.prefix,
        "note": t.note,
        "scopes": list(t.scopes or []),
        "created_at": iso(t.created_at),
        "created_by": t.created_by,
        "expires_at": iso(t.expires_at),
        "last_used_at": iso(t.last_used_at),
        "revoked_at": iso(t.revoked_at),
        "state": token_state(t),
    }


# --- checks ----------------------------------------------------------------------------


def ensure_role_at_most_callers(role: str, caller_role: Role | None, what: str) -> None:
    if caller_role is None or Role[role] > caller_role:
        mine = caller_role.name if caller_role is not None else "none"
        raise AnimusError(
            403,
            "role_above_yours",
            f"Your role is {mine}; you cannot {what} a service account with role {role}",
            {"role": role, "your_role": mine},
        )


def ensure_enabled(sa: ServiceAccount) -> None:
    if sa.disabled_at is not None:
        raise AnimusError(
            409,
            "service_account_disabled",
            f"Service account {sa.name!r} is disabled; create a new one",
            {"disabled_at": iso(sa.disabled_at)},
        )


# --- service accounts ------------------------------------------------------------------


def list_service_accounts(
    session: Session, project: Project, limit: int, cursor: str | None, include_disabled: bool = False
):
    stmt = select(ServiceAccount).where(ServiceAccount.project_id == project.id)
    if not include_disabled:
        stmt = stmt.where(ServiceAccount.disabled_at.is_(None))
    return page(session, stmt, ServiceAccount.id, limit, cursor)


def find_service_account(session: Session, project: Project, name: str) -> ServiceAccount:
    sa = session.scalar(
        select(ServiceAccount).where(ServiceAccount.project_id == project.id, ServiceAccount.name == name)
    )
    if sa is None:
        raise AnimusError(404, "service_account_not_found", f"No service account {name!r} in project {project.slug!r}")
    return sa


def create_service_account(
    session: Session, project: Project, data: ServiceAccountCreate, by: str, caller_role: Role | None
) -> ServiceAccount:
    ensure_active(project)
    ensure_role_at_most_callers(data.role, caller_role, "create")
    existing = session.scalar(
        select(ServiceAccount).where(ServiceAccount.project_id == project.id, ServiceAccount.name == data.name)
    )
    if existing is not None:
        hint = " (disabled; names are not reused)" if existing.disabled_at is not None else ""
        raise AnimusError(
            409, "service_account_exists", f"Service account {data.name!r} already exists{hint}", {"name": data.name}
        )
    sa = ServiceAccount(
        project_id=project.id,
        name=data.name,
        description=data.description,
        role=data.role,
        created_by=by,
        created_at=utcnow(),
    )
    session.add(sa)
    session.flush()
    return sa


def update_service_account(
    project: Project, sa: ServiceAccount, data: ServiceAccountUpdate, caller_role: Role | None
) -> dict[str, Any]:
    """Apply the change; returns {field: [old, new]} of what changed."""
    ensure_active(project)
    ensure_enabled(sa)
    ensure_role_at_most_callers(sa.role, caller_role, "change")
    changes: dict[str, Any] = {}
    if data.role is not None and data.role != sa.role:
        ensure_role_at_most_callers(data.role, caller_role, "grant")
        changes["role"] = [sa.role, data.role]
        sa.role = data.role
    if data.description is not None and data.description != sa.description:
        changes["description"] = True  # free text: the audit records that it changed, not what it says
        sa.description = data.description
    return changes


def disable_service_account(session: Session, project: Project, sa: ServiceAccount) -> int:
    """Disable the account and revoke its live tokens; returns how many were revoked."""
    ensure_active(project)
    ensure_enabled(sa)
    now = utcnow()
    sa.disabled_at = now
    revoked = 0
    for t in session.scalars(select(Token).where(Token.service_account_id == sa.id, Token.revoked_at.is_(None))):
        t.revoked_at = now
        revoked += 1
    return revoked


# --- tokens ----------------------------------------------------------------------------


def list_tokens(session: Session, sa: ServiceAccount, limit: int, cursor: str | None):
    return page(session, select(Token).where(Token.service_account_id == sa.id), Token.id, limit, cursor)


def find_token(session: Session, sa: ServiceAccount, prefix: str) -> Token:
    t = session.scalar(select(Token).where(Token.service_account_id == sa.id, Token.prefix == prefix))
    if t is None:
        raise AnimusError(404, "token_not_found", f"Service account {sa.name!r} has no token with prefix {prefix!r}")
    return t


def create_token(
    session: Session,
    project: Project,
    sa: ServiceAccount,
    data: ServiceAccountTokenCreate,
    by: str,
    caller_role: Role | None,
    max_expires_in: int,
) -> tuple[Token, str]:
    """Issue a token; returns the row and the one-time value (never stored)."""
    ensure_active(project)
    ensure_enabled(sa)
    ensure_role_at_most_callers(sa.role, caller_role, "issue tokens for")
    if data.expires_in > max_expires_in:
        raise AnimusError(
            422,
            "expires_in_too_long",
            f"expires_in is at most {max_expires_in} seconds ({max_expires_in // 86400} days) on this server",
            {"maximum": max_expires_in},
        )
    token, value = issue_token(
        session,
        kind=TOKEN_KIND,
        project=project,
        created_by=by,
        service_account=sa,
        scopes=sorted(set(data.scopes)),
        expires_in=dt.timedelta(seconds=data.expires_in),
        note=data.note,
    )
    token.created_at = utcnow()
    session.flush()
    return token, value


def revoke_token(project: Project, t: Token) -> bool:
    """Revoke now; returns False if it already was (revoking is idempotent)."""
    ensure_active(project)
    if t.revoked_at is not None:
        return False
    t.revoked_at = utcnow()
    return True
