"""Batch runs: submission, the queue, attempts, retries, cancellation and logs.

A batch run is a ``Run`` of kind "batch" plus its ``RunJob``. Status moves
queued → starting (the scheduler handed it to an executor, a run token exists) →
running (the runner said so) → succeeded | failed | cancelled. A failed attempt
goes back to queued, after a backoff with jitter, while its retry budget lasts:
``retries`` for the user's code (non-zero exit, timeout), ``infra_retries`` for
everything else (the runner died, its heartbeat stopped, setup failed, launch
failed). Every transition re-reads the row under a lock and checks ``attempt``,
so a late report of an older attempt, or a scheduler decision racing a report,
changes nothing. All state is in the database: a restarted control plane
continues where it stopped, and a run that succeeded never runs again.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from .. import audit
from ..auth.tokens import issue_token
from ..errors import AnimusError
from ..orm import (
    TERMINAL_STATUSES,
    Environment,
    EnvironmentVersion,
    Experiment,
    Project,
    Run,
    RunInput,
    RunJob,
    RunLogChunk,
    Token,
    utcnow,
)
from . import datasets as datasets_svc
from . import environments as env_svc
from . import tracking
from .gitrefs import SHA_RE, ResolvedRef
from .projects import iso

SCHEDULER = audit.Actor(name="animus-scheduler", kind="system")
ACTIVE_STATES = ("starting", "running")
DATASET_REF_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,127})(?::(?P<version>[0-9]{1,9}|latest))?$")
TRUNCATION_MARKER = "\n[animus: log truncated at {limit} bytes; further output of this run was dropped]\n"


@dataclass
class RetryPolicy:
    base_seconds: float = 5.0
    max_seconds: float = 600.0

    def delay(self, failures: int) -> float:
        """Exponential backoff with jitter: base·2^(n-1), capped, times a random 0.5–1."""
        raw = min(self.max_seconds, self.base_seconds * (2 ** max(0, failures - 1)))
        return raw * (0.5 + random.random() / 2)  # noqa: S311 (jitter, not crypto)


@dataclass
class Resolved:
    """What a submission names, looked up: the environment version and the dataset versions."""

    env_version: EnvironmentVersion | None = None
    env_ref: str = ""
    env_version_given: bool = False
    inputs: list[dict[str, Any]] = field(default_factory=list)
    unpinned_datasets: list[str] = field(default_factory=list)


def resolve_names(
    session: Session, project: Project, principal: Any, role: Any, env_ref: str | None, dataset_refs: list[str]
) -> Resolved:
    out = Resolved()
    if env_ref:
        name, version = env_svc.parse_env_ref(env_ref)
        e = env_svc.find_environment(session, project, name)
        out.env_version = env_svc.find_version(session, e, version or "latest")
        out.env_version_given = version not in (None, "latest")
        out.env_ref = f"{e.name}:{out.env_version.version}"
    seen: set[str] = set()
    for ref in dataset_refs:
        m = DATASET_REF_RE.match(ref)
        if not m:
            raise AnimusError(422, "invalid_dataset_ref", f"{ref[:140]!r} is not NAME:VERSION (e.g. churn:3)")
        name, version = m.group("name"), m.group("version")
        if name in seen:
            raise AnimusError(422, "invalid_dataset_ref", f"Dataset {name!r} given twice")
        seen.add(name)
        d = datasets_svc.find_dataset(session, project, name, principal, role)
        v = datasets_svc.find_version(session, d, version or "latest")
        if version in (None, "latest"):
            out.unpinned_datasets.append(name)
        out.inputs.append({"name": d.name, "version": v.version, "version_id": v.id, "digest": v.digest})
    return out


def production_missing(commit: str, resolved: Resolved) -> list[str]:
    """What a production run lacks (DESIGN.md §5 "Reproducibility"); empty when it may run."""
    missing = []
    if not SHA_RE.match(commit):
        missing.append("commit_sha")
    v = resolved.env_version
    if v is None:
        missing.append("environment")
    else:
        if not resolved.env_version_given:
            missing.append("environment_version")
        if not env_svc.image_is_pinned(v.image):
            missing.append("image_digest")
        if not v.lock_digest:
            missing.append("lock_file")
    missing += [f"dataset_version:{name}" for name in resolved.unpinned_datasets]
    return missing


def refuse_unreproducible(commit: str, resolved: Resolved) -> None:
    missing = production_missing(commit, resolved)
    if missing:
        raise AnimusError(
            422,
            "production_requirements_missing",
            "A production run needs a commit SHA, a pinned environment version (image digest and lock file) "
            "and pinned dataset versions; missing: " + ", ".join(missing),
            {"missing": missing},
        )


def submit(
    session: Session,
    project: Project,
    experiment: Experiment,
    by: str,
    *,
    repo_url: str,
    code: ResolvedRef,
    command: list[str],
    resolved: Resolved,
    params: dict[str, str],
    tags: dict[str, str],
    name: str,
    priority: int,
    retries: int,
    infra_retries: int,
    timeout_seconds: int | None,
    production: bool,
) -> tuple[Run, RunJob]:
    run = tracking.create_run(
        session,
        project,
        experiment,
        by,
        name=name,
        tags=tags,
        code=tracking.CodeRef(repo_url=repo_url, commit_sha=code.sha),
        kind="batch",
    )
    run.status = "queued"
    if params:
        tracking.log_params(session, run, list(params.items()))
    now = utcnow()
    job = RunJob(
        run_id=run.id,
        project_id=project.id,
        state="queued",
        command=list(command),
        git_ref=code.ref,
        environment_version_id=resolved.env_version.id if resolved.env_version else None,
        inputs=resolved.inputs,
        production=production,
        priority=priority,
        retries=retries,
        infra_retries=infra_retries,
        timeout_seconds=timeout_seconds,
        attempt=0,
        user_failures=0,
        infra_failures=0,
        next_attempt_at=now,
        released=True,
        message="",
        log_bytes=0,
        log_truncated=False,
        updated_at=now,
    )
    session.add(job)
    # lineage: the run consumes exactly these versions
    for i in resolved.inputs:
        session.add(
            RunInput(
                run_id=run.id,
                name=i["name"],
                digest=i["digest"],
                source_type="animus",
                source=f"{i['name']}:{i['version']}",
                context="input",
                dataset_version_id=i["version_id"],
            )
        )
    session.flush()
    return run, job


def find_job(session: Session, run: Run, lock: bool = False) -> RunJob:
    stmt = select(RunJob).where(RunJob.run_id == run.id)
    if lock:
        stmt = stmt.with_for_update()
    job = session.scalar(stmt)
    if job is None:
        raise AnimusError(
            409, "not_a_batch_run", f"Run {run.id} is not a batch run (it was not submitted to the queue)"
        )
    return job


def job_json(session: Session, run: Run, job: RunJob, with_lock: bool = False) -> dict[str, Any]:
    env: dict[str, Any] | None = None
    if job.environment_version_id is not None:
        v = session.get(EnvironmentVersion, job.environment_version_id)
        if v is not None:
            e = session.get(Environment, v.environment_id)
            env = env_svc.version_json(v, e, with_lock=with_lock)
    return {
        "run_id": run.id,
        "status": run.status,
        "kind": run.kind,
        "code": {"repo_url": run.repo_url, "commit_sha": run.commit_sha, "ref": job.git_ref or None},
        "command": job.command,
        "environment": env,
        "inputs": [{"name": i["name"], "version": i["version"], "digest": i["digest"]} for i in job.inputs or []],
        "production": job.production,
        "priority": job.priority,
        "retries": job.retries,
        "infra_retries": job.infra_retries,
        "timeout_seconds": job.timeout_seconds,
        "attempt": job.attempt,
        "user_failures": job.user_failures,
        "infra_failures": job.infra_failures,
        "next_attempt_at": iso(job.next_attempt_at) if run.status == "queued" else None,
        "dispatched_at": iso(job.dispatched_at),
        "started_at": iso(job.started_at),
        "heartbeat_at": iso(job.heartbeat_at),
        "exit_code": job.exit_code,
        "failure_kind": job.failure_kind,
        "message": job.message,
        "cancelled_by": job.cancel_requested_by,
        "log_bytes": job.log_bytes,
        "log_truncated": job.log_truncated,
    }


# --- transitions --------------------------------------------------------------------


def _set(session: Session, project: Project, run: Run, job: RunJob, status: str) -> None:
    tracking.set_status(session, project, run, status)
    job.state = status
    job.updated_at = utcnow()


def _revoke_tokens(session: Session, run_id: str) -> None:
    session.execute(update(Token).where(Token.run_id == run_id, Token.revoked_at.is_(None)).values(revoked_at=utcnow()))


def finish(session: Session, project: Project, run: Run, job: RunJob, status: str, message: str = "") -> None:
    """End the run for good; its runner (if any) is stopped by the scheduler (``released`` False)."""
    _set(session, project, run, job, status)
    if message:
        job.message = message[:2000]
    _revoke_tokens(session, run.id)


def fail_attempt(
    session: Session,
    project: Project,
    run: Run,
    job: RunJob,
    kind: str,
    message: str,
    policy: RetryPolicy,
    exit_code: int | None = None,
) -> str:
    """The current attempt failed: queue it again (backoff) while the budget lasts, else fail the run.

    Returns the run's new status.
    """
    job.failure_kind = kind
    job.exit_code = exit_code
    job.message = message[:2000]
    if kind in ("user", "timeout"):
        job.user_failures += 1
        retry = job.user_failures <= job.retries
        failures = job.user_failures
    else:
        job.infra_failures += 1
        retry = job.infra_failures <= job.infra_retries
        failures = job.infra_failures
    # the attempt's runner is stopped (if still there) and its token dies with it
    job.released = job.handle is None
    _revoke_tokens(session, run.id)
    if retry:
        job.next_attempt_at = utcnow() + dt.timedelta(seconds=policy.delay(failures))
        job.heartbeat_at = None
        _set(session, project, run, job, "queued")
    else:
        _set(session, project, run, job, "failed")
    audit.record(
        session,
        SCHEDULER,
        "run.attempt_failed",
        resource=f"project/{project.slug}/runs/{run.id}",
        project=project.slug,
        details={
            "attempt": job.attempt,
            "kind": kind,
            "exit_code": exit_code,
            "retry": retry,
            "message": message[:300],
        },
    )
    return run.status


def cancel(session: Session, project: Project, run: Run, job: RunJob, by: str) -> bool:
    """Cancel a queued or active run; False if it had already finished."""
    if run.status in TERMINAL_STATUSES:
        return False
    job.cancel_requested_by = by
    job.released = job.handle is None or run.status == "queued"
    finish(session, project, run, job, "cancelled", f"cancelled by {by}")
    return True


def report(
    session: Session,
    project: Project,
    run: Run,
    job: RunJob,
    *,
    attempt: int,
    state: str,
    exit_code: int | None,
    message: str,
    policy: RetryPolicy,
) -> str:
    """A runner's report about its attempt: started, alive, exited, or could not set up."""
    if run.status in TERMINAL_STATUSES:
        raise AnimusError(
            409, "run_finished", f"Run {run.id} has finished ({run.status}); stop", {"status": run.status}
        )
    if attempt != job.attempt or run.status not in ACTIVE_STATES:
        raise AnimusError(
            409,
            "attempt_superseded",
            f"Attempt {attempt} of run {run.id} is no longer current (current: {job.attempt}, {run.status}); stop",
            {"current_attempt": job.attempt, "status": run.status},
        )
    now = utcnow()
    job.heartbeat_at = now
    job.updated_at = now
    if state == "running":
        if run.status == "starting":
            job.started_at = now
            _set(session, project, run, job, "running")
    elif state == "exited":
        if exit_code == 0:
            job.exit_code = 0
            job.failure_kind = None
            job.message = message[:2000]
            finish(session, project, run, job, "succeeded")
            job.released = job.handle is None
        else:
            fail_attempt(session, project, run, job, "user", message or f"exit code {exit_code}", policy, exit_code)
    elif state == "setup_failed":
        fail_attempt(session, project, run, job, "setup", message or "the runner could not set up", policy)
    return run.status


# --- logs ---------------------------------------------------------------------------


def append_log(session: Session, run: Run, job: RunJob, attempt: int, text: str, max_bytes: int) -> dict[str, Any]:
    """Store a chunk of output; past `max_bytes` per run one marker is stored and the rest dropped."""
    if attempt != job.attempt:
        raise AnimusError(409, "attempt_superseded", f"Attempt {attempt} of run {run.id} is no longer current")
    if job.log_truncated:
        return {"stored": 0, "truncated": True}
    data = text.encode("utf-8")
    room = max_bytes - job.log_bytes
    stored = text
    if len(data) > room:
        stored = data[: max(0, room)].decode("utf-8", "ignore") + TRUNCATION_MARKER.format(limit=max_bytes)
        job.log_truncated = True
    if stored:
        session.add(RunLogChunk(run_id=run.id, attempt=attempt, text=stored, created_at=utcnow()))
    job.log_bytes += min(len(data), max(0, room))
    return {"stored": len(stored.encode("utf-8")), "truncated": job.log_truncated}


def read_logs(session: Session, run: Run, after: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    rows = session.scalars(
        select(RunLogChunk)
        .where(RunLogChunk.run_id == run.id, RunLogChunk.id > after)
        .order_by(RunLogChunk.id)
        .limit(limit)
    ).all()
    items = [{"id": c.id, "attempt": c.attempt, "text": c.text, "time": iso(c.created_at)} for c in rows]
    return items, (rows[-1].id if rows else after)


# --- the queue (called by the scheduler step) -----------------------------------------


@dataclass
class Dispatch:
    run_id: str
    project_id: int
    project_slug: str
    attempt: int
    token: str
    timeout_seconds: int | None
    resources: dict[str, Any]
    image: str = ""
    priority: int = 0


def pick(
    session: Session,
    capacity: int,
    project_quota: int,
    now: dt.datetime,
    scan: int = 500,
    recent: dict[int, int] | None = None,
) -> list[str]:
    """Which queued runs start now, in order.

    Fair share first: each slot goes to the project with the fewest active runs
    (under its quota), and among those to the one with the fewest recent dispatches
    (`recent`: project id → count, the caller's memory); inside a project, higher
    priority first, then oldest. With short runs many projects tie on active runs,
    and without the second key the project with more high-priority runs would win
    every tie.
    """
    if capacity <= 0:
        return []
    active = dict(
        session.execute(
            select(RunJob.project_id, func.count()).where(RunJob.state.in_(ACTIVE_STATES)).group_by(RunJob.project_id)
        ).all()
    )
    # only the first few of each project's queue can start in this round; ranking per project
    # (not the first `scan` rows overall) keeps a project whose runs all have low priority
    # from being pushed out of the candidates by the other projects' backlog
    per_project = max(1, min(capacity, project_quota))
    rank = (
        func.row_number()
        .over(partition_by=RunJob.project_id, order_by=(RunJob.priority.desc(), Run.created_at, RunJob.run_id))
        .label("rank")
    )
    ranked = (
        select(RunJob.run_id, RunJob.project_id, RunJob.priority, Run.created_at, rank)
        .join(Run, Run.id == RunJob.run_id)
        .where(RunJob.state == "queued", RunJob.next_attempt_at <= now, RunJob.released.is_(True))
        .subquery()
    )
    due = session.execute(
        select(ranked.c.run_id, ranked.c.project_id, ranked.c.priority, ranked.c.created_at)
        .where(ranked.c.rank <= per_project)
        .order_by(ranked.c.project_id, ranked.c.rank)
        .limit(scan)
    ).all()
    queues: dict[int, list[Any]] = {}
    for row in due:
        queues.setdefault(row.project_id, []).append(row)
    used = dict(recent or {})
    chosen: list[str] = []
    while len(chosen) < capacity:
        heads = [
            (active.get(pid, 0), used.get(pid, 0), -q[0].priority, q[0].created_at, pid)
            for pid, q in queues.items()
            if q and active.get(pid, 0) < project_quota
        ]
        if not heads:
            break
        pid = min(heads)[-1]
        row = queues[pid].pop(0)
        chosen.append(row.run_id)
        active[pid] = active.get(pid, 0) + 1
        used[pid] = used.get(pid, 0) + 1
    return chosen


def active_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(RunJob).where(RunJob.state.in_(ACTIVE_STATES))) or 0


def claim(session: Session, run_id: str, executor: str, token_ttl: dt.timedelta) -> Dispatch | None:
    """Move one queued run to starting with a fresh attempt and run token; None if someone else did."""
    # one statement for the three rows (this runs once per dispatched attempt); only the job is locked
    found = session.execute(
        select(RunJob, Run, Project)
        .join(Run, Run.id == RunJob.run_id)
        .join(Project, Project.id == RunJob.project_id)
        .where(RunJob.run_id == run_id)
        .with_for_update(of=RunJob)
    ).first()
    if found is None:
        return None
    job, run, project = found
    if job.state != "queued" or run.status != "queued":
        return None
    resources: dict[str, Any] = {}
    image = ""
    if job.environment_version_id is not None:
        v = session.get(EnvironmentVersion, job.environment_version_id)
        if v is not None:
            resources, image = dict(v.resources or {}), v.image
    now = utcnow()
    job.attempt += 1
    job.dispatched_at = now
    job.started_at = None
    job.heartbeat_at = None
    job.handle = None
    job.released = False
    job.executor = executor
    job.exit_code = None
    _set(session, project, run, job, "starting")
    ttl = token_ttl + dt.timedelta(seconds=job.timeout_seconds or 0)
    token, value = issue_token(
        session,
        kind="run",
        project=project,
        created_by=SCHEDULER.name,
        scopes=["write"],
        expires_in=ttl,
        note=f"run-{run.id}",
    )
    token.run_id = run.id
    # write before the audit chain's head is read: on SQLite the first write of a transaction
    # takes the database's write lock, and only then is the head read safe from other writers
    session.flush()
    audit.record(
        session,
        SCHEDULER,
        "run.dispatch",
        resource=f"project/{project.slug}/runs/{run.id}",
        project=project.slug,
        details={"attempt": job.attempt, "executor": executor},
    )
    return Dispatch(
        run.id, project.id, project.slug, job.attempt, value, job.timeout_seconds, resources, image, job.priority
    )


def locked(session: Session, run_id: str, attempt: int | None = None) -> tuple[Project, Run, RunJob] | None:
    job = session.scalar(select(RunJob).where(RunJob.run_id == run_id).with_for_update())
    if job is None or (attempt is not None and job.attempt != attempt):
        return None
    run = session.get(Run, run_id)
    project = session.get(Project, job.project_id)
    if run is None or project is None:
        return None
    return project, run, job


def overdue(
    session: Session, now: dt.datetime, heartbeat_timeout: dt.timedelta, start_timeout: dt.timedelta
) -> list[tuple[str, int, str, str]]:
    """(run_id, attempt, kind, message) of active attempts past their timeout or silent for too long."""
    found = []
    rows = session.scalars(select(RunJob).where(RunJob.state.in_(ACTIVE_STATES))).all()
    for job in rows:
        if (
            job.timeout_seconds
            and job.dispatched_at
            and now - job.dispatched_at > dt.timedelta(seconds=job.timeout_seconds)
        ):
            found.append((job.run_id, job.attempt, "timeout", f"timed out after {job.timeout_seconds}s"))
        elif job.heartbeat_at is not None and now - job.heartbeat_at > heartbeat_timeout:
            secs = int((now - job.heartbeat_at).total_seconds())
            found.append((job.run_id, job.attempt, "infrastructure", f"runner lost: no heartbeat for {secs}s"))
        elif job.heartbeat_at is None and job.dispatched_at is not None and now - job.dispatched_at > start_timeout:
            found.append((job.run_id, job.attempt, "infrastructure", "runner never reported after dispatch"))
    return found


def mark_released(session: Session, run_id: str, attempt: int) -> None:
    """The executor freed the attempt's resources (one UPDATE: this runs once per attempt)."""
    session.execute(update(RunJob).where(RunJob.run_id == run_id, RunJob.attempt == attempt).values(released=True))


def store_handle(session: Session, run_id: str, attempt: int, handle: str) -> bool:
    """Record the executor's handle of a launched attempt; True if the attempt already ended (stop it now).

    ``state`` mirrors ``Run.status`` under the same lock, so the row alone decides.
    """
    state = session.scalar(
        select(RunJob.state).where(RunJob.run_id == run_id, RunJob.attempt == attempt).with_for_update()
    )
    if state is None:
        return True
    ended = state not in ACTIVE_STATES
    values: dict[str, Any] = {"handle": handle}
    if ended:
        values["released"] = True  # stopped right here, not in a later round
    session.execute(update(RunJob).where(RunJob.run_id == run_id, RunJob.attempt == attempt).values(**values))
    return ended


def unreleased(session: Session) -> list[tuple[str, int, str | None, str]]:
    """(run_id, attempt, handle, executor) of attempts that ended but whose process may still be there."""
    return [
        (j.run_id, j.attempt, j.handle, j.executor)
        for j in session.scalars(
            select(RunJob).where(RunJob.released.is_(False), RunJob.state.notin_(ACTIVE_STATES))
        ).all()
    ]


def active_handles(session: Session) -> list[tuple[str, int, str, str]]:
    return [
        (j.run_id, j.attempt, j.handle, j.executor)
        for j in session.scalars(
            select(RunJob).where(RunJob.state.in_(ACTIVE_STATES), RunJob.handle.is_not(None))
        ).all()
    ]
