"""Animus-issued bearer tokens (service accounts, runs): issued once, stored hashed.

A token reads ``anm_<prefix>_<secret>``. ``prefix`` (12 hex) finds the row; the
sha256 of ``secret`` (32 random bytes) is what is stored and compared. A high-entropy
random secret needs no slow password hash.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..orm import Project, Role, ServiceAccount, Token, utcnow
from .principal import Principal

TOKEN_PREFIX = "anm_"  # noqa: S105 (a prefix, not a secret)
_TOKEN_RE = re.compile(r"^anm_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")
# last_used_at is written at most this often per token, not on every request
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(
    session: Session,
    *,
    kind: str,
    project: Project,
    created_by: str,
    service_account: ServiceAccount | None = None,
    scopes: list[str] | None = None,
    expires_in: dt.timedelta | None = None,
    note: str = "",
) -> tuple[Token, str]:
    """Create a token row and return it with the one-time value to hand out."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    token = Token(
        prefix=prefix,
        secret_hash=_digest(secret),
        kind=kind,
        project_id=project.id,
        service_account=service_account,
        scopes=scopes or [],
        note=note,
        created_by=created_by,
        expires_at=(utcnow() + expires_in) if expires_in else None,
    )
    session.add(token)
    return token, f"{TOKEN_PREFIX}{prefix}_{secret}"


def is_animus_token(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX)


def principal_for_token(session: Session, value: str) -> Principal | None:
    """The principal an Animus token stands for, or None if it is not valid now."""
    m = _TOKEN_RE.match(value)
    if not m:
        return None
    prefix, secret = m.groups()
    token = session.scalar(select(Token).where(Token.prefix == prefix))
    if token is None or not hmac.compare_digest(token.secret_hash, _digest(secret)):
        return None
    now = utcnow()
    if token.revoked_at is not None or (token.expires_at is not None and token.expires_at <= now):
        return None
    if token.kind == "run" and token.run_id is None:
        return None  # a run token names its run; one that does not is good for nothing
    if token.kind == "service_account":
        sa = token.service_account
        if sa is None or sa.disabled_at is not None:
            return None
        name, role = sa.name, Role[sa.role]
    else:
        name, role = token.note or f"token-{prefix}", Role.contributor
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        token.last_used_at = now
        session.commit()
    return Principal(
        kind=token.kind,
        name=name,
        project_id=token.project_id,
        role=role,
        token_id=prefix,
        scopes=frozenset(token.scopes or []),
        run_id=token.run_id if token.kind == "run" else None,
    )
