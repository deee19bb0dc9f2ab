"""The base of every animus-api handler: identity, authorisation, errors, audit, idempotency.

A handler declares ``actions`` (HTTP method → RBAC action). ``prepare()`` identifies
the caller, loads the project named in the path and asks the Authorizer; a method
without a declared action is refused (fail closed). Handlers then do their work
through domain services and finish with ``commit_and_write()``, which appends the
audit event and the idempotency record to the same transaction as the change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from http import HTTPStatus
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session
from tornado import web

from .. import audit
from ..auth.identity import token_from_header
from ..auth.principal import ANONYMOUS, Principal
from ..auth.rbac import ACCESS_CHANGING_ACTIONS, PLATFORM_ACTIONS, PROJECT_ACTIONS, Authorizer
from ..errors import AnimusError
from ..orm import IdempotencyRecord, Project, Role, utcnow
from ..schemas import Strict, parse_body
from ..services.pagination import parse_limit

log = logging.getLogger("animus.api")

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# the only changes an archived project accepts
ARCHIVE_ACTIONS = frozenset({"project:archive"})
IDEMPOTENCY_KEY_MAX = 255


class APIHandler(web.RequestHandler):
    """JSON API handler; subclasses set ``actions`` and implement verbs."""

    #: HTTP method → RBAC action (see auth.rbac); a method not listed is refused
    actions: dict[str, str] = {}

    principal: Principal = ANONYMOUS
    project: Project | None = None
    role: Role | None = None
    action: str = ""
    _db: Session | None = None
    _idempotency: tuple[str, str] | None = None

    # --- shared objects --------------------------------------------------------

    @property
    def db(self) -> Session:
        if self._db is None:
            # reads run without a transaction (no BEGIN/ROLLBACK round trips)
            readonly = self.request.method in ("GET", "HEAD") and "readonly_session_factory" in self.settings
            self._db = self.settings["readonly_session_factory" if readonly else "session_factory"]()
        return self._db

    @property
    def authorizer(self) -> Authorizer:
        return self.settings["authorizer"]

    @property
    def actor(self) -> audit.Actor:
        return audit.Actor(
            name=self.principal.name,
            kind=self.principal.kind,
            source=self.request.remote_ip or "",
            request_id=self.request_id,
        )

    # --- request lifecycle -----------------------------------------------------

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    async def prepare(self) -> None:
        self._started = time.perf_counter()
        incoming = self.request.headers.get("X-Request-Id", "")
        self.request_id = incoming[:64] if incoming.isprintable() and incoming else uuid.uuid4().hex
        self.set_header("X-Request-Id", self.request_id)
        method = self.request.method or ""
        implemented = getattr(type(self), method.lower(), None) is not getattr(web.RequestHandler, method.lower(), None)
        self.action = self.actions.get(method, "")
        if PLATFORM_ACTIONS.get(self.action) != "public":
            # identify first, so that even a refused request is audited with its caller
            token = token_from_header(self.request.headers.get("Authorization"))
            self.principal = await self.settings["identifier"].identify(lambda: self.db, token)
        if not implemented:
            allowed = ", ".join(sorted(self.actions))
            raise AnimusError(
                405,
                "method_not_allowed",
                f"{method} is not supported here (allowed: {allowed})",
                headers={"Allow": allowed},
            )
        if not self.action:
            # an implemented method without a declared action is our bug: fail closed
            raise AnimusError(500, "no_authorization_rule", "This route has no authorisation rule for this method")
        length = len(self.request.body or b"")
        if length > self.settings["max_request_body"]:
            raise AnimusError(
                413,
                "request_too_large",
                f"Request body of {length} bytes exceeds the limit of {self.settings['max_request_body']}",
                {"limit": self.settings["max_request_body"]},
            )
        if PLATFORM_ACTIONS.get(self.action) == "public":
            return  # health probes: no identity needed, none looked up
        if self.action in PROJECT_ACTIONS:
            slug = self.project_slug()
            self.project, grants = self.authorizer.resolve(
                self.db, self.principal, slug, for_update=self.request.method not in ("GET", "HEAD")
            )
            self.role = self.authorizer.authorize(self.db, self.principal, self.action, self.project, slug, grants)
            self.authorizer.check_run_scope(self.principal, self.action, self.run_scope_id())
            if self.mutating and self.project.archived_at is not None and self.action not in ARCHIVE_ACTIONS:
                raise AnimusError(
                    409, "project_archived", f"Project {slug!r} is archived and read-only; unarchive it to change it"
                )
        else:
            self.authorizer.authorize(self.db, self.principal, self.action)
        if self.request.method == "POST":
            self._check_idempotency()

    def run_scope_id(self) -> str | None:
        """The run this request is about, for the run-token check (a subclass may find it elsewhere)."""
        return self.path_kwargs.get("run_id")

    @property
    def mutating(self) -> bool:
        """Whether the request may change something: the action decides, not the verb (MLflow searches are POSTs)."""
        return self.request.method in MUTATING and not self.action.endswith(":read")

    def project_slug(self) -> str:
        """The project this request is about: the one the path names (a subclass may say otherwise)."""
        return self.path_kwargs.get("project", "")

    def on_finish(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        observe = self.settings.get("observe_request")
        if observe is not None:
            observe(self)

    # --- idempotency -----------------------------------------------------------

    def _check_idempotency(self) -> None:
        key = self.request.headers.get("Idempotency-Key")
        if key is None:
            return
        if not key or len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable():
            raise AnimusError(
                400, "invalid_idempotency_key", f"Idempotency-Key must be 1–{IDEMPOTENCY_KEY_MAX} printable characters"
            )
        digest = hashlib.sha256(
            self.request.method.encode() + b" " + self.request.path.encode() + b"\n" + self.request.body
        ).hexdigest()
        previous = self.db.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.principal == self.principal.key, IdempotencyRecord.key == key
            )
        )
        if previous is None:
            self._idempotency = (key, digest)
            return
        if previous.request_digest != digest:
            raise AnimusError(
                422,
                "idempotency_key_reused",
                "This Idempotency-Key was already used for a different request",
            )
        self._replay(previous)

    def _replay(self, record: IdempotencyRecord) -> None:
        self.set_status(record.status)
        self.set_header("Idempotent-Replayed", "true")
        self.finish(record.response_body or None)

    # --- input ----------------------------------------------------------------

    def json_body(self, model: type[Strict]) -> Any:
        if not self.request.body:
            raise AnimusError(400, "invalid_json", "A JSON object body is required")
        try:
            data = json.loads(self.request.body.decode("utf-8"))
        except UnicodeDecodeError:
            raise AnimusError(400, "invalid_json", "The body is not UTF-8") from None
        except json.JSONDecodeError as e:
            raise AnimusError(
                400,
                "invalid_json",
                f"Malformed JSON at line {e.lineno} column {e.colno}: {e.msg}",
                {"line": e.lineno, "column": e.colno},
            ) from None
        if not isinstance(data, dict):
            raise AnimusError(400, "invalid_json", "The body must be a JSON object")
        return parse_body(model, data)

    def limit_arg(self, maximum: int = 500) -> int:
        return parse_limit(self.get_query_argument("limit", None), maximum)

    def bool_arg(self, name: str, default: bool = False) -> bool:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        if raw.lower() in ("1", "true", "yes"):
            return True
        if raw.lower() in ("0", "false", "no"):
            return False
        raise AnimusError(400, "invalid_argument", f"{name} must be true or false")

    # --- output ---------------------------------------------------------------

    def write_json(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(body))

    def commit_and_write(
        self,
        body: Any,
        status: int = 200,
        *,
        audit_action: str,
        resource: str,
        details: dict[str, Any] | None = None,
        replay_body: Any = None,
    ) -> None:
        """Audit, store the idempotency record and commit with the change, then answer.

        `replay_body`, when given, is what the idempotency record stores and a retry
        gets instead of `body` (a body carrying a one-time secret is never stored).
        """
        audit.record(
            self.db,
            self.actor,
            audit_action,
            resource=resource,
            project=self.project.slug if self.project is not None else "",
            details=details,
        )
        text = "" if status == 204 else json.dumps(body)
        if self._idempotency is not None:
            key, digest = self._idempotency
            self.db.add(
                IdempotencyRecord(
                    principal=self.principal.key,
                    key=key,
                    method=self.request.method,
                    path=self.request.path[:1024],
                    request_digest=digest,
                    status=status,
                    response_body=text if replay_body is None else json.dumps(replay_body),
                    created_at=utcnow(),
                )
            )
        try:
            self.db.commit()
        except IntegrityError:
            self.db.rollback()
            if self._idempotency is None:
                raise
            # a concurrent request with the same key won the race: answer as it did
            record = self.db.scalar(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.principal == self.principal.key,
                    IdempotencyRecord.key == self._idempotency[0],
                )
            )
            if record is None:
                raise
            self._replay(record)
            return
        if self.action in ACCESS_CHANGING_ACTIONS:
            self.authorizer.invalidate_reads()
        log.debug("%s %s by %s:%s", audit_action, resource, self.principal.kind, self.principal.name)
        self.set_status(status)
        self.finish(text or None)

    # --- errors ---------------------------------------------------------------

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, AnimusError) and value.status < 500:
            return
        if isinstance(value, web.HTTPError) and value.status_code < 500:
            return
        log.error(
            "Unhandled error in %s %s [%s]",
            self.request.method,
            self.request.path,
            getattr(self, "request_id", ""),
            exc_info=(typ, value, tb),
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if self._db is not None:
            self._db.rollback()
        if isinstance(exc, AnimusError):
            error = exc
        elif isinstance(exc, web.HTTPError):
            phrase = HTTPStatus(exc.status_code).phrase if exc.status_code in HTTPStatus._value2member_map_ else "Error"
            error = AnimusError(exc.status_code, phrase.lower().replace(" ", "_"), exc.log_message or phrase)
        elif isinstance(exc, OperationalError):
            error = AnimusError(503, "database_unavailable", "The database is unavailable; try again shortly")
        elif isinstance(exc, SQLAlchemyError):
            error = AnimusError(500, "database_error", "A database error occurred")
        else:
            phrase = HTTPStatus(status_code).phrase if status_code in HTTPStatus._value2member_map_ else "Error"
            reason = "internal_error" if status_code >= 500 else phrase.lower().replace(" ", "_")
            message = "An internal error occurred" if status_code >= 500 else phrase
            error = AnimusError(status_code, reason, message)
        status, body = self.error_response(error)
        self.set_status(status)
        for name, value in error.headers.items():
            self.set_header(name, value)
        if not hasattr(self, "request_id"):
            self.request_id = uuid.uuid4().hex
        # send_error() cleared the headers set in prepare(): the id goes back on the error too
        self.set_header("X-Request-Id", self.request_id)
        self._audit_refusal(error)
        self.finish(json.dumps(body))

    def error_response(self, error: AnimusError) -> tuple[int, dict[str, Any]]:
        """The status and JSON body that answer `error` (the MLflow routes answer in MLflow's shape)."""
        return error.status, error.to_json()

    def _audit_refusal(self, error: AnimusError) -> None:
        """Denied requests, and failed attempts to change something, are audited too."""
        if getattr(error, "audited", False):
            return  # recorded, with its details, in the transaction that recorded the refusal
        denied = error.status in (401, 403) or getattr(error, "denied", False)
        failed_mutation = self.mutating and 400 <= error.status < 500
        if not (denied or failed_mutation) or self.settings.get("session_factory") is None:
            return
        try:
            with self.settings["session_factory"]() as s:
                audit.record(
                    s,
                    self.actor,
                    self.action or f"{(self.request.method or '').lower()}:unknown",
                    outcome="denied" if denied else "failure",
                    resource=self.request.path,
                    project=self.project.slug
                    if self.project is not None
                    else (self.path_kwargs.get("project", "") if self.path_kwargs else ""),
                    details={
                        "status": error.status,
                        "reason": error.reason,
                        "method": self.request.method,
                        # what only the audit trail may know (e.g. the project a workspace token is for)
                        **(getattr(error, "audit_details", None) or {}),
                    },
                )
                s.commit()
        except Exception:
            log.exception("Could not audit a refused request [%s]", self.request_id)


class NotFoundHandler(APIHandler):
    """Unknown API paths answer a JSON 404 (after authentication)."""

    actions = {m: "api:describe" for m in ("GET", "POST", "PUT", "PATCH", "DELETE")}

    def _not_found(self, *args: Any, **kwargs: Any) -> None:
        raise AnimusError(404, "route_not_found", f"No API route {self.request.path}")

    get = post = put = patch = delete = _not_found
