"""Project secrets: names and metadata in the database, values in the secret store.

The API manages names: PUT sets or rotates a value (write-only: it is never sent
back), GET lists names and metadata, DELETE removes both. A batch run names the
secrets it receives (``RunSubmit.secrets``); they are checked at submission and
resolved for the runner at start (``issue_for_attempt`` with Vault, ``values_for_run``
with a store animus-api reads itself). Every resolution for a run is audited by
name, never by value.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit
from ..errors import AnimusError
from ..orm import Project, RunJob, SecretEntry, SecretLease, utcnow
from ..secrets import (
    SecretNotFound,
    SecretStore,
    SecretStoreUnavailable,
    default_env_name,
    validate_env_name,
    validate_secret_name,
)
from .pagination import page
from .projects import ensure_active, iso

VALUE_MAX_BYTES = 64 * 1024
MAX_RUN_SECRETS = 50


def store_unavailable(e: Exception) -> AnimusError:
    return AnimusError(
        503,
        "secret_store_unavailable",
        f"The secret store cannot be reached or refused the request; try again shortly ({e})"[:600],
        headers={"Retry-After": "5"},
    )


async def in_thread(fn, *args):
    """Run a blocking store call off the event loop; store outages become 503, missing values 404."""
    try:
        return await asyncio.to_thread(fn, *args)
    except SecretStoreUnavailable as e:
        raise store_unavailable(e) from None


def entry_json(e: SecretEntry) -> dict[str, Any]:
    return {
        "name": e.name,
        "description": e.description,
        "version": e.version,
        "created_at": iso(e.created_at),
        "created_by": e.created_by,
        "updated_at": iso(e.updated_at),
        "updated_by": e.updated_by,
    }


def find(session: Session, project: Project, name: str, lock: bool = False) -> SecretEntry:
    validate_secret_name(name)
    stmt = select(SecretEntry).where(SecretEntry.project_id == project.id, SecretEntry.name == name)
    if lock:
        stmt = stmt.with_for_update()
    entry = session.scalar(stmt)
    if entry is None:
        raise AnimusError(404, "secret_not_found", f"Secret {name!r} not found in project {project.slug!r}")
    return entry


def list_entries(
    session: Session, project: Project, limit: int, cursor: str | None
) -> tuple[list[SecretEntry], str | None]:
    stmt = select(SecretEntry).where(SecretEntry.project_id == project.id)
    return page(session, stmt, SecretEntry.id, limit, cursor)


def check_value(value: str) -> None:
    size = len(value.encode("utf-8"))
    if not value or size > VALUE_MAX_BYTES:
        raise AnimusError(
            422,
            "invalid_secret_value",
            f"A secret value is 1 to {VALUE_MAX_BYTES} bytes of text",
            {"max": VALUE_MAX_BYTES},
        )
    if "\x00" in value:
        raise AnimusError(422, "invalid_secret_value", "A secret value may not contain NUL characters")


def record_put(
    session: Session, project: Project, name: str, by: str, description: str | None
) -> tuple[SecretEntry, bool]:
    """Create or bump the metadata row after the store took the value; (entry, created)."""
    ensure_active(project)
    now = utcnow()
    entry = session.scalar(
        select(SecretEntry).where(SecretEntry.project_id == project.id, SecretEntry.name == name).with_for_update()
    )
    if entry is None:
        entry = SecretEntry(
            project_id=project.id,
            name=name,
            description=description or "",
            version=1,
            created_at=now,
            created_by=by,
            updated_at=now,
            updated_by=by,
        )
        session.add(entry)
        session.flush()
        return entry, True
    entry.version += 1
    entry.updated_at = now
    entry.updated_by = by
    if description is not None:
        entry.description = description
    return entry, False


# --- runs ------------------------------------------------------------------------------


def parse_run_secrets(
    session: Session, project: Project, raw: list[str] | dict[str, str] | None, git_credentials: str | None
) -> tuple[list[dict[str, str]], str | None]:
    """A submission's secrets as [{"name", "env"}], each checked to exist in the project (422 otherwise)."""
    pairs: list[tuple[str, str]] = []
    if isinstance(raw, dict):
        pairs = list(raw.items())
    elif raw:
        pairs = [(n, default_env_name(n) if isinstance(n, str) and n else "") for n in raw]
    if len(pairs) > MAX_RUN_SECRETS:
        raise AnimusError(422, "too_many_secrets", f"A run may receive at most {MAX_RUN_SECRETS} secrets")
    out: list[dict[str, str]] = []
    seen_env: dict[str, str] = {}
    for name, env in pairs:
        validate_secret_name(name)
        validate_env_name(env, name)
        if env in seen_env:
            raise AnimusError(
                422, "invalid_secret_env", f"Secrets {seen_env[env]!r} and {name!r} both go into {env}", {"env": env}
            )
        seen_env[env] = name
        out.append({"name": name, "env": env})
    names = [p["name"] for p in out]
    if git_credentials is not None:
        validate_secret_name(git_credentials)
        names.append(git_credentials)
    if names:
        known = set(
            session.scalars(
                select(SecretEntry.name).where(SecretEntry.project_id == project.id, SecretEntry.name.in_(set(names)))
            )
        )
        missing = sorted(set(names) - known)
        if missing:
            raise AnimusError(
                422,
                "secret_not_found",
                f"Project {project.slug!r} has no secret named {', '.join(missing)}",
                {"missing": missing},
            )
    return out, git_credentials


def run_secret_names(job: RunJob) -> list[str]:
    names = [s["name"] for s in job.secrets or []]
    if job.git_credentials and job.git_credentials not in names:
        names.append(job.git_credentials)
    return names


def record_lease(session: Session, run_id: str, attempt: int, store: str, lease_id: str, ttl: int) -> None:
    now = utcnow()
    session.add(
        SecretLease(
            run_id=run_id,
            attempt=attempt,
            store=store,
            lease_id=lease_id,
            created_at=now,
            expires_at=now + dt.timedelta(seconds=ttl),
        )
    )


def leases_to_revoke(session: Session) -> list[tuple[int, str]]:
    """(id, lease_id) of unrevoked leases whose attempt is over (finished, failed, retried, superseded)."""
    rows = session.execute(
        select(SecretLease.id, SecretLease.lease_id, SecretLease.attempt, RunJob.attempt, RunJob.state)
        .join(RunJob, RunJob.run_id == SecretLease.run_id)
        .where(SecretLease.revoked_at.is_(None))
    ).all()
    return [(i, lease) for i, lease, a, current, state in rows if a != current or state not in ("starting", "running")]


def mark_revoked(session: Session, lease_ids: list[int]) -> None:
    now = utcnow()
    for lease in session.scalars(select(SecretLease).where(SecretLease.id.in_(lease_ids))):
        lease.revoked_at = now


def audit_resolution(session: Session, project: Project, run_id: str, attempt: int, names: list[str], via: str) -> None:
    """Every secret read for a run, by name (DESIGN.md §5: secret access is audited, never the value)."""
    for name in names:
        audit.record(
            session,
            audit.Actor(name=f"run-{run_id}", kind="run"),
            "secret.read",
            resource=f"project/{project.slug}/secrets/{name}",
            project=project.slug,
            details={"run_id": run_id, "attempt": attempt, "via": via},
        )


def read_values(store: SecretStore, project: str, names: list[str]) -> dict[str, str]:
    """Values straight from the store (blocking); a missing one is a 409 the runner reports."""
    out = {}
    for name in names:
        try:
            out[name] = store.read(project, name)
        except SecretNotFound:
            raise AnimusError(
                409, "secret_not_found", f"Secret {name!r} was deleted from the store after the run was submitted"
            ) from None
    return out
