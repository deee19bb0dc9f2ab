"""Session control inside the JupyterHub process: TTL, concurrent-session limit, logout, forced logout.

JupyterHub keeps no record of a person's sessions; Animus keeps them in its own
database (``user_session``), so nothing of it lives in the hub (DESIGN.md §2). This
module hooks the hub where it offers hooks:

- ``Authenticator.get_authenticated_user``: each login starts a session under a fresh
  ``jupyterhub-session-id`` (the id JupyterHub stamps on the OAuth tokens it issues
  during the session), applies the concurrent-session limit (evict the oldest, or
  refuse) and audits the login;
- ``Authenticator.refresh_user``: on cookie-authenticated requests (every
  ``auth_refresh_age`` seconds per user) the browser's session must still be
  active, or JupyterHub sends the person to the login page; a session past its TTL is
  ended there or by a periodic sweep;
- ``Authenticator.get_handlers``: a logout handler that ends the session, and
  ``POST /hub/api/animus/users/{name}/logout``, which animus-api calls for a forced
  logout (rotates the user's cookie id, deletes every hub token of the user, stops or
  keeps the servers). It needs the custom scope ``custom:animus:sessions:revoke``.

When a session ends, the hub tokens issued during it (OAuth tokens of workspaces and
services) are deleted from the hub database. Mix ``SessionControlMixin`` into any
authenticator class, before the authenticator: ``class A(SessionControlMixin, Base)``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from typing import Any

from jupyterhub import orm as hub_orm
from jupyterhub.apihandlers.base import APIHandler as HubAPIHandler
from jupyterhub.auth import Authenticator
from jupyterhub.handlers.login import LogoutHandler
from sqlalchemy.exc import OperationalError, ProgrammingError
from tornado import web
from tornado.ioloop import PeriodicCallback
from traitlets import CaselessStrEnum, Instance, Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from .. import audit
from .. import db as dbmod
from ..hubconfig import SESSIONS_REVOKE_SCOPE
from ..services import sessions as svc

REVOKE_SCOPE = SESSIONS_REVOKE_SCOPE
FORCED_LOGOUT_PATH = r"/api/animus/users/([^/]+)/logout"


class SessionControl(LoggingConfigurable):
    """Session TTL and the concurrent-session limit, kept in the Animus database."""

    db_url = Unicode(
        help="SQLAlchemy URL of the Animus database, where sessions are kept (default: $ANIMUS_DB_URL)."
    ).tag(config=True)

    @default("db_url")
    def _db_url_default(self) -> str:
        import os

        return os.environ.get("ANIMUS_DB_URL", "")

    ttl = Integer(
        12 * 3600,
        help="Seconds a login session lasts; afterwards the person logs in again. 0: until logout.",
    ).tag(config=True)

    max_sessions = Integer(
        5,
        help="Most sessions (browsers) one person may be logged in with at once. 0: no limit.",
    ).tag(config=True)

    on_limit = CaselessStrEnum(
        list(svc.LIMIT_POLICIES),
        default_value="evict_oldest",
        help="At a login beyond max_sessions: 'evict_oldest' ends the person's oldest session, "
        "'refuse' refuses the new login (403).",
    ).tag(config=True)

    sweep_interval = Integer(
        60,
        help="Seconds between sweeps that end sessions past their TTL and revoke their tokens "
        "(a browser coming back after its TTL is sent to the login page at once anyway).",
    ).tag(config=True)

    _session_factory: Any = None
    _sweeper: PeriodicCallback | None = None

    @property
    def policy(self) -> svc.SessionPolicy:
        ttl = dt.timedelta(seconds=self.ttl) if self.ttl > 0 else None
        return svc.SessionPolicy(ttl=ttl, max_sessions=max(self.max_sessions, 0), on_limit=self.on_limit)

    def session(self):
        if self._session_factory is None:
            if not self.db_url:
                raise RuntimeError("SessionControl.db_url (or $ANIMUS_DB_URL) must name the Animus database")
            self._session_factory = dbmod.make_session_factory(dbmod.make_engine(self.db_url))
        return self._session_factory()

    # --- the hub's side of a session's end ---------------------------------------------

    @staticmethod
    def revoke_hub_tokens(hub_db: Any, session_ids: Iterable[str]) -> int:
        """Delete the hub tokens (and pending OAuth codes) issued during these sessions."""
        ids = [i for i in session_ids if i]
        if not ids:
            return 0
        count = (
            hub_db.query(hub_orm.APIToken)
            .filter(hub_orm.APIToken.session_id.in_(ids))
            .delete(synchronize_session=False)
        )
        hub_db.query(hub_orm.OAuthCode).filter(hub_orm.OAuthCode.session_id.in_(ids)).delete(synchronize_session=False)
        hub_db.commit()
        return count

    def audit_ended(self, db: Any, ended: list, actor: audit.Actor) -> None:
        for s in ended:
            svc.record(db, actor, f"session.{s.end_reason}", s, reason=s.end_reason)

    # --- the periodic sweep -------------------------------------------------------------

    def start_sweeper(self, hub_db_getter: Any) -> None:
        if self._sweeper is not None or self.sweep_interval <= 0 or self.ttl <= 0:
            return
        self._hub_db_getter = hub_db_getter
        self._sweeper = PeriodicCallback(self.sweep, self.sweep_interval * 1000, jitter=0.1)
        self._sweeper.start()

    def sweep(self) -> int:
        """End sessions past their TTL, audit them and revoke their hub tokens."""
        try:
            with self.session() as db:
                ended = svc.expire_overdue(db)
                if not ended:
                    return 0
                self.audit_ended(db, ended, svc.SYSTEM_ACTOR)
                ids = [s.hub_session_id for s in ended]
                db.commit()
            revoked = self.revoke_hub_tokens(self._hub_db_getter(), ids)
            self.log.info("Session sweep: %d session(s) expired, %d hub token(s) revoked", len(ids), revoked)
            return len(ids)
        except (OperationalError, ProgrammingError) as e:
            # at start the hub runs before animus-api has created or migrated the schema
            self.log.debug("Session sweep skipped, the Animus database is not ready: %s", e)
            return 0
        except Exception:
            self.log.exception("Session sweep failed")
            return 0


def _actor(handler: Any, name: str, kind: str = "user") -> audit.Actor:
    request = getattr(handler, "request", None)
    return audit.Actor(name=name, kind=kind, source=(request.remote_ip or "") if request is not None else "")


def _unavailable(e: Exception) -> web.HTTPError:
    return web.HTTPError(503, "The Animus database is not available yet; try again in a moment (%s)", type(e).__name__)


class SessionControlMixin(Authenticator):
    """Session control for any authenticator: ``class A(SessionControlMixin, SomeAuthenticator)``."""

    session_control = Instance(SessionControl)

    @default("session_control")
    def _session_control_default(self) -> SessionControl:
        return SessionControl(parent=self)

    @default("auth_refresh_age")
    def _auth_refresh_age_default(self) -> int:
        # how often a cookie-authenticated browser's session is checked (per user)
        return 5

    identity_refresh_age = Integer(
        300,
        help="Seconds between refreshes of a logged-in person's identity (groups, admin flag) from the "
        "identity provider or users file; sessions are still checked every auth_refresh_age seconds.",
    ).tag(config=True)

    _identity_refreshed: dict[str, float]

    # --- login ----------------------------------------------------------------------------

    async def get_authenticated_user(self, handler: Any, data: Any) -> dict | None:  # type: ignore[override]
        try:
            authenticated = await super().get_authenticated_user(handler, data)
        except web.HTTPError as e:
            self.audit_failed_login(
                handler, (data or {}).get("username", "") if isinstance(data, dict) else "", e.log_message or str(e)
            )
            raise
        if not authenticated:
            self.audit_failed_login(
                handler, (data or {}).get("username", "") if isinstance(data, dict) else "", "rejected"
            )
            return authenticated
        await self.start_session(handler, authenticated["name"])
        return authenticated

    async def start_session(self, handler: Any, name: str) -> None:
        """A new session for this login, under a fresh session id (the old one of this browser is ended)."""
        control = self.session_control
        previous = handler.get_session_cookie() if handler is not None else None
        new_id = uuid.uuid4().hex
        if handler is not None:
            # a fresh id, so that no token of a previous session in this browser carries over
            handler._session_id = new_id
            handler.set_session_cookie()
        actor = _actor(handler, name)
        try:
            with control.session() as db:
                try:
                    result = svc.start_session(
                        db,
                        user=name,
                        hub_session_id=new_id,
                        policy=control.policy,
                        previous_hub_session_id=previous,
                        authenticator=type(self).__name__,
                        source=actor.source,
                        user_agent=handler.request.headers.get("User-Agent", "") if handler is not None else "",
                    )
                except svc.SessionLimitReached as e:
                    db.rollback()
                    audit.record(
                        db,
                        actor,
                        "session.login",
                        outcome="denied",
                        resource=f"user/{name}/sessions",
                        details={"user": name, "reason": e.reason, **e.details},
                    )
                    db.commit()
                    self.log.warning("Login of %s refused: %s", name, e.message)
                    raise web.HTTPError(403, e.message) from None
                control.audit_ended(db, result.ended, actor)
                db.flush()
                svc.record(
                    db,
                    actor,
                    "session.login",
                    result.session,
                    authenticator=result.session.authenticator,
                    expires_at=svc.iso(result.session.expires_at),
                    ended_sessions=dict(Counter(s.end_reason for s in result.ended)),
                )
                ended_ids = [s.hub_session_id for s in result.ended]
                db.commit()
        except (OperationalError, ProgrammingError) as e:
            self.log.error("Cannot record the session of %s: %s", name, e)
            raise _unavailable(e) from None
        if ended_ids and handler is not None:
            revoked = control.revoke_hub_tokens(handler.db, ended_ids)
            self.log.info(
                "Login of %s ended %d earlier session(s), revoking %d token(s)", name, len(ended_ids), revoked
            )

    def audit_failed_login(self, handler: Any, username: str, reason: str) -> None:
        username = username if isinstance(username, str) else ""
        try:
            with self.session_control.session() as db:
                audit.record(
                    db,
                    _actor(handler, "", kind="anonymous"),
                    "session.login",
                    outcome="denied",
                    resource="sessions",
                    details={"username": username[:64], "reason": str(reason)[:200]},
                )
                db.commit()
        except Exception:
            self.log.exception("Could not audit a failed login")

    # --- each request ---------------------------------------------------------------------

    async def refresh_user(self, user: Any, handler: Any = None) -> Any:  # type: ignore[override]
        if handler is not None and self._own_cookie_request(handler, user):
            if not self.check_session(handler, user):
                # JupyterHub 6.1 reads this attribute, unset on cookie requests, when a refresh fails
                if not hasattr(handler, "_token_authenticated"):
                    handler._token_authenticated = False
                return False
        refreshed = getattr(self, "_identity_refreshed", None)
        if refreshed is None:
            refreshed = self._identity_refreshed = {}
        now = time.monotonic()
        last = refreshed.get(user.name)
        if last is not None and now - last < self.identity_refresh_age:
            return True
        result = await super().refresh_user(user, handler)
        if result:
            refreshed[user.name] = now
        return result

    @staticmethod
    def _own_cookie_request(handler: Any, user: Any) -> bool:
        """A request authenticated by this user's own login cookie (not a token, not another user's)."""
        return getattr(handler, "_jupyterhub_user", None) is user and not getattr(
            handler, "_token_authenticated", False
        )

    def check_session(self, handler: Any, user: Any) -> bool:
        control = self.session_control
        session_id = handler.get_session_cookie()
        try:
            with control.session() as db:
                check = svc.check_session(db, user.name, session_id)
                if check.expired_now:
                    control.audit_ended(db, [check.session], _actor(handler, user.name))
                db.commit()
        except (OperationalError, ProgrammingError) as e:
            self.log.error("Cannot check the session of %s: %s", user.name, e)
            raise _unavailable(e) from None
        if not check.valid:
            s = check.session
            self.log.info(
                "Session of %s is %s: login required", user.name, s.end_reason if s is not None else "unknown"
            )
            if s is not None:
                control.revoke_hub_tokens(handler.db, [s.hub_session_id])
        return check.valid

    # --- handlers -------------------------------------------------------------------------

    def get_handlers(self, app: Any) -> list:
        handlers = [h for h in super().get_handlers(app) if h[0] != "/logout"]
        base_logout = getattr(self, "logout_handler", LogoutHandler)
        logout = type("SessionEnding" + base_logout.__name__, (SessionEndingLogoutMixin, base_logout), {})
        handlers += [("/logout", logout), (FORCED_LOGOUT_PATH, ForcedLogoutAPIHandler)]
        self.session_control.start_sweeper(lambda: app.db)
        return handlers


class SessionEndingLogoutMixin:
    """Logout ends the Animus session of this browser (the hub deletes its tokens)."""

    async def default_handle_logout(self) -> None:
        user = self.current_user  # type: ignore[attr-defined]
        session_id = self.get_session_cookie()  # type: ignore[attr-defined]
        await super().default_handle_logout()  # type: ignore[misc]
        if user is None or not session_id:
            return
        control: SessionControl = self.authenticator.session_control  # type: ignore[attr-defined]
        try:
            with control.session() as db:
                s = svc.end_session(db, session_id, "logout")
                if s is not None:
                    svc.record(db, _actor(self, user.name), "session.logout", s)
                db.commit()
        except Exception:
            self.log.exception("Could not record the logout of %s", user.name)  # type: ignore[attr-defined]


class ForcedLogoutAPIHandler(HubAPIHandler):
    """POST /hub/api/animus/users/{name}/logout {"stop_servers": bool} — animus-api's forced logout.

    Rotates the user's cookie id (every login cookie of the user stops working),
    deletes every hub token of the user (API, OAuth), and stops the user's servers or
    keeps them running with their own server tokens. Answers what it did.
    """

    async def post(self, user_name: str) -> None:
        if not self.has_scope(REVOKE_SCOPE):
            raise web.HTTPError(403, f"Forced logout needs the scope {REVOKE_SCOPE}")
        body = self.get_json_body() or {}
        if not isinstance(body, dict) or not isinstance(body.get("stop_servers", True), bool):
            raise web.HTTPError(400, "The body must be a JSON object with a boolean stop_servers")
        stop = body.get("stop_servers", True)
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, f"No such user: {user_name}")
        active = [name for name, sp in user.spawners.items() if sp.active]
        stopped: list[str] = []
        if stop and active:
            futures = {name: asyncio.ensure_future(self.stop_single_user(user, name)) for name in active}
            await asyncio.wait(futures.values(), timeout=self.slow_stop_timeout)
            stopped = sorted(active)
        kept_tokens = set()
        if not stop:
            for name in active:
                api_token = user.spawners[name].api_token
                found = hub_orm.APIToken.find(self.db, api_token) if api_token else None
                if found is not None:
                    kept_tokens.add(found.id)
        user.orm_user.cookie_id = hub_orm.new_token()
        query = self.db.query(hub_orm.APIToken).filter(hub_orm.APIToken.user_id == user.orm_user.id)
        revoked = 0
        for token in query:
            if token.id in kept_tokens:
                continue
            self.db.delete(token)
            revoked += 1
        self.db.query(hub_orm.OAuthCode).filter(hub_orm.OAuthCode.user_id == user.orm_user.id).delete(
            synchronize_session=False
        )
        self.db.commit()
        user._auth_refreshed = None
        self.log.warning(
            "Forced logout of %s by %s: %d token(s) revoked, servers %s",
            user.name,
            self.current_user.name,
            revoked,
            ("stopped: " + ", ".join(n or "(default)" for n in stopped)) if stopped else "kept" if active else "none",
        )
        self.set_header("Content-Type", "application/json")
        self.finish(
            json.dumps(
                {
                    "user": user.name,
                    "hub_tokens_revoked": revoked,
                    "servers_stopped": stopped,
                    "servers_kept": [] if stop else sorted(active),
                }
            )
        )
