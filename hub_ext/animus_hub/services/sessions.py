"""Login sessions: TTL, the concurrent-session limit, logout and forced logout.

Both sides use these functions on the Animus database: the hub (through the
authenticator glue in ``auth.hubsessions``) starts, checks and ends sessions as
people log in, browse and log out; animus-api ends them all at a forced logout.
Nothing here talks to JupyterHub or Tornado: the callers revoke the hub's cookies
and tokens of the sessions these functions end.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from .. import audit
from ..errors import AnimusError
from ..orm import Token, UserSession, utcnow
from .pagination import page
from .projects import iso

LIMIT_POLICIES = ("evict_oldest", "refuse")
END_REASONS = ("logout", "expired", "evicted", "replaced", "forced_logout")
# last_seen_at is written at most this often per session, not on every request
LAST_SEEN_RESOLUTION = dt.timedelta(seconds=60)
# the hub's own actor in the audit trail (expiries found by its sweep)
SYSTEM_ACTOR = audit.Actor(name="animus-hub", kind="system")


@dataclass(frozen=True)
class SessionPolicy:
    """How long a session lasts and how many a person may hold at once."""

    ttl: dt.timedelta | None = None  # None: sessions end only by logout
    max_sessions: int = 0  # 0: no limit
    on_limit: str = "evict_oldest"  # or "refuse"

    def __post_init__(self) -> None:
        if self.on_limit not in LIMIT_POLICIES:
            raise ValueError(f"on_limit must be one of {', '.join(LIMIT_POLICIES)}, not {self.on_limit!r}")
        if self.max_sessions < 0:
            raise ValueError("max_sessions must be 0 (no limit) or more")


class SessionLimitReached(AnimusError):
    """A new login was refused: the person already holds the most sessions allowed."""

    def __init__(self, user: str, active: int, limit: int):
        super().__init__(
            403,
            "session_limit_reached",
            f"{user} already has {active} active session(s), the most allowed is {limit}: "
            "log out elsewhere first, or ask an admin to end your other sessions",
            {"active_sessions": active, "max_sessions": limit},
        )


def is_active(s: UserSession, now: dt.datetime) -> bool:
    return s.ended_at is None and (s.expires_at is None or s.expires_at > now)


def _end(s: UserSession, reason: str, now: dt.datetime) -> None:
    s.ended_at = now if reason != "expired" or s.expires_at is None else min(now, s.expires_at)
    s.end_reason = reason


def active_sessions(db: Session, user: str, now: dt.datetime | None = None) -> list[UserSession]:
    """The user's sessions that have not ended nor expired, oldest first."""
    now = now or utcnow()
    rows = db.scalars(
        select(UserSession)
        .where(UserSession.user_name == user, UserSession.ended_at.is_(None))
        .order_by(UserSession.created_at, UserSession.id)
    ).all()
    return [s for s in rows if is_active(s, now)]


def expire_overdue(
    db: Session, now: dt.datetime | None = None, user: str | None = None, limit: int = 500
) -> list[UserSession]:
    """Mark sessions past their TTL as ended ('expired'); return them (their tokens are the caller's to revoke)."""
    now = now or utcnow()
    query = select(UserSession).where(
        UserSession.ended_at.is_(None), UserSession.expires_at.is_not(None), UserSession.expires_at <= now
    )
    if user is not None:
        query = query.where(UserSession.user_name == user)
    rows = db.scalars(query.order_by(UserSession.expires_at).limit(limit)).all()
    for s in rows:
        _end(s, "expired", now)
    return list(rows)


@dataclass
class LoginResult:
    session: UserSession
    ended: list[UserSession]  # sessions this login ended: expired, evicted or replaced


def start_session(
    db: Session,
    *,
    user: str,
    hub_session_id: str,
    policy: SessionPolicy,
    previous_hub_session_id: str | None = None,
    authenticator: str = "",
    source: str = "",
    user_agent: str = "",
    now: dt.datetime | None = None,
) -> LoginResult:
    """Record a login, applying the concurrent-session limit; raise SessionLimitReached to refuse it.

    `previous_hub_session_id` is the session the same browser held before this login:
    it is ended ('replaced') rather than counted against the limit.
    """
    now = now or utcnow()
    ended = expire_overdue(db, now, user=user)
    if previous_hub_session_id:
        prev = db.scalar(select(UserSession).where(UserSession.hub_session_id == previous_hub_session_id))
        if prev is not None and prev.user_name == user and prev.ended_at is None:
            _end(prev, "replaced", now)
            ended.append(prev)
    active = active_sessions(db, user, now)
    if policy.max_sessions and len(active) >= policy.max_sessions:
        if policy.on_limit == "refuse":
            raise SessionLimitReached(user, len(active), policy.max_sessions)
        for s in active[: len(active) - policy.max_sessions + 1]:
            _end(s, "evicted", now)
            ended.append(s)
    session = UserSession(
        hub_session_id=hub_session_id,
        user_name=user,
        authenticator=authenticator[:64],
        source=source[:64],
        user_agent=user_agent[:255],
        created_at=now,
        last_seen_at=now,
        expires_at=(now + policy.ttl) if policy.ttl else None,
    )
    db.add(session)
    return LoginResult(session, ended)


def find_session(db: Session, hub_session_id: str) -> UserSession | None:
    return db.scalar(select(UserSession).where(UserSession.hub_session_id == hub_session_id))


@dataclass
class SessionCheck:
    valid: bool
    session: UserSession | None  # None: no such session of this user
    expired_now: bool = False  # this check found it past its TTL and ended it


def check_session(db: Session, user: str, hub_session_id: str | None, now: dt.datetime | None = None) -> SessionCheck:
    """Whether `hub_session_id` is an active session of `user`.

    A session past its TTL is ended ('expired') by this call (``expired_now``), so the
    caller can audit it and revoke its tokens.
    """
    now = now or utcnow()
    if not hub_session_id:
        return SessionCheck(False, None)
    s = find_session(db, hub_session_id)
    if s is None or s.user_name != user:
        return SessionCheck(False, None)
    if s.ended_at is not None:
        return SessionCheck(False, s)
    if s.expires_at is not None and s.expires_at <= now:
        _end(s, "expired", now)
        return SessionCheck(False, s, expired_now=True)
    if now - s.last_seen_at > LAST_SEEN_RESOLUTION:
        s.last_seen_at = now
    return SessionCheck(True, s)


def end_session(db: Session, hub_session_id: str, reason: str, now: dt.datetime | None = None) -> UserSession | None:
    """End one session (e.g. at logout); None if there is no open session with that id."""
    s = find_session(db, hub_session_id)
    if s is None or s.ended_at is not None:
        return None
    _end(s, reason, now or utcnow())
    return s


def end_user_sessions(db: Session, user: str, reason: str, now: dt.datetime | None = None) -> list[UserSession]:
    """End every open session of `user` (forced logout)."""
    now = now or utcnow()
    rows = db.scalars(select(UserSession).where(UserSession.user_name == user, UserSession.ended_at.is_(None))).all()
    for s in rows:
        _end(s, reason, now)
    return list(rows)


def revoke_user_tokens(db: Session, user: str, now: dt.datetime | None = None) -> list[str]:
    """Revoke the Animus tokens a person holds (not service-account tokens: those belong to the account).

    Returns the prefixes of the tokens revoked.
    """
    now = now or utcnow()
    owned = (Token.created_by == user) & (Token.kind != "service_account") & Token.revoked_at.is_(None)
    prefixes = list(db.scalars(select(Token.prefix).where(owned)).all())
    if prefixes:
        db.execute(update(Token).where(owned).values(revoked_at=now))
    return prefixes


def record(db: Session, actor: audit.Actor, action: str, s: UserSession, **details: Any) -> None:
    """One audit event about a session, in the caller's transaction."""
    audit.record(
        db,
        actor,
        action,
        resource=f"user/{s.user_name}/sessions/{s.id}" if s.id else f"user/{s.user_name}/sessions",
        details={"user": s.user_name, **details},
    )


def session_json(s: UserSession, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    return {
        "id": s.id,
        "user": s.user_name,
        "authenticator": s.authenticator,
        "source": s.source,
        "user_agent": s.user_agent,
        "created_at": iso(s.created_at),
        "last_seen_at": iso(s.last_seen_at),
        "expires_at": iso(s.expires_at),
        "ended_at": iso(s.ended_at),
        "end_reason": s.end_reason or None,
        "active": is_active(s, now),
    }


def list_sessions(
    db: Session, user: str, limit: int, cursor: str | None, include_ended: bool = False
) -> tuple[list[UserSession], str | None]:
    """A user's sessions, oldest first; only active ones unless `include_ended`."""
    query = select(UserSession).where(UserSession.user_name == user)
    if not include_ended:
        now = utcnow()
        query = query.where(
            UserSession.ended_at.is_(None), or_(UserSession.expires_at.is_(None), UserSession.expires_at > now)
        )
    return page(db, query, UserSession.id, limit, cursor)
