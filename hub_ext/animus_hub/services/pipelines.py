"""Pipeline runs: a DAG of batch runs from a declarative spec (DESIGN.md §4 "PipelineRun").

Submission checks the spec (``pipeline_spec``), resolves every environment and
dataset version it names once, and stores the pipeline run with one pending
``PipelineStep`` per step. The scheduler step (``PipelineStep``'s ``advance``,
called each round for every unfinished pipeline run) then, in one transaction per
pipeline run:

- mirrors each started step's run status onto the step (and, on success, records
  the digests of its declared outputs, from the artifacts its runner uploaded);
- starts each pending step whose upstream steps all succeeded: from cache when the
  step asks for it and an earlier succeeded step had the same cache key, else as a
  batch run whose inputs include the upstream outputs (the runner downloads them);
- ends the pipeline: succeeded when every step did; failed when a step failed for
  good (its still-active siblings are cancelled, the pending ones skipped).

All state is in the database, so a restarted control plane continues where it
stopped; a step's run is created in the same transaction that records it on the
step, so no step starts twice, and a succeeded run never runs again.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import audit
from ..errors import AnimusError
from ..orm import (
    TERMINAL_STATUSES,
    Artifact,
    EnvironmentVersion,
    Experiment,
    PipelineRun,
    PipelineStep,
    Project,
    Run,
    RunInput,
    RunJob,
    utcnow,
)
from . import batch
from .gitrefs import ResolvedRef
from .pagination import decode_cursor, encode_cursor
from .projects import iso

PIPELINE_ACTIVE = ("queued", "running")
STEP_WAITING = "pending"
OUTPUT_PREFIX = "outputs/"


def new_seed() -> int:
    return random.randrange(1, 2**31)  # noqa: S311 (a seed for user code, not a secret)


# --- submission ---------------------------------------------------------------------------


def resolve(session: Session, project: Project, principal: Any, role: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """Each step's environment version and dataset versions, looked up once (404 for unknown names)."""
    for step in spec["steps"].values():
        datasets = [f"{i['name']}:{i['version']}" for i in step["inputs"].values() if i["kind"] == "dataset"]
        resolved = batch.resolve_names(session, project, principal, role, step["environment"], datasets)
        step["environment_version_id"] = resolved.env_version.id if resolved.env_version else None
        by_name = {r["name"]: r for r in resolved.inputs}
        for i in step["inputs"].values():
            if i["kind"] == "dataset":
                r = by_name[i["name"]]
                i.update(version_id=r["version_id"], digest=r["digest"])
    return spec


def submit(
    session: Session,
    project: Project,
    experiment: Experiment,
    by: str,
    *,
    source: str,
    spec: dict[str, Any],
    spec_digest: str,
    repo_url: str,
    code: ResolvedRef,
) -> PipelineRun:
    now = utcnow()
    p = PipelineRun(
        project_id=project.id,
        spec_digest=spec_digest,
        status="queued",
        created_at=now,
        created_by=by,
        name=spec["name"],
        spec_source=source,
        spec=spec,
        repo_url=repo_url,
        commit_sha=code.sha,
        git_ref=code.ref or "",
        experiment_id=experiment.id,
        message="",
        updated_at=now,
    )
    session.add(p)
    session.flush()
    for position, name in enumerate(spec["order"]):
        session.add(
            PipelineStep(
                pipeline_run_id=p.id,
                project_id=project.id,
                name=name,
                position=position,
                status=STEP_WAITING,
                outputs={},
                message="",
                updated_at=now,
            )
        )
    session.flush()
    return p


# --- reading --------------------------------------------------------------------------------


def find(session: Session, project: Project, pipeline_id: str, lock: bool = False) -> PipelineRun:
    stmt = select(PipelineRun).where(PipelineRun.id == pipeline_id, PipelineRun.project_id == project.id)
    if lock:
        stmt = stmt.with_for_update()
    p = session.scalar(stmt)
    if p is None:
        raise AnimusError(404, "pipeline_run_not_found", f"Pipeline run {pipeline_id!r} not found")
    return p


def steps_of(session: Session, p: PipelineRun) -> list[PipelineStep]:
    return list(
        session.scalars(
            select(PipelineStep).where(PipelineStep.pipeline_run_id == p.id).order_by(PipelineStep.position)
        ).all()
    )


def list_pipeline_runs(
    session: Session, project: Project, limit: int, cursor: str | None, status: str | None = None
) -> tuple[list[PipelineRun], str | None]:
    """Newest first; the cursor is an offset (pipeline run ids are UUIDs, not a sortable key)."""
    offset = decode_cursor(cursor)
    stmt = select(PipelineRun).where(PipelineRun.project_id == project.id)
    if status:
        stmt = stmt.where(PipelineRun.status == status)
    rows = list(
        session.scalars(
            stmt.order_by(PipelineRun.created_at.desc(), PipelineRun.id).offset(offset).limit(limit + 1)
        ).all()
    )
    more = len(rows) > limit
    return rows[:limit], (encode_cursor(offset + limit) if more else None)


def step_json(session: Session, step: PipelineStep) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": step.name,
        "status": step.status,
        "run_id": step.run_id,
        "cached": step.cached_from_run_id is not None,
        "cached_from_run_id": step.cached_from_run_id,
        "cache_key": step.cache_key,
        "outputs": step.outputs or {},
        "message": step.message,
        "attempt": None,
    }
    if step.run_id:
        job = session.get(RunJob, step.run_id)
        if job is not None:
            body["attempt"] = job.attempt
    return body


def pipeline_json(session: Session, p: PipelineRun, with_steps: bool = True, with_spec: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": p.id,
        "name": p.name,
        "status": p.status,
        "spec_digest": p.spec_digest,
        "code": {"repo_url": p.repo_url, "commit_sha": p.commit_sha, "ref": p.git_ref or None},
        "created_at": iso(p.created_at),
        "created_by": p.created_by,
        "updated_at": iso(p.updated_at),
        "finished_at": iso(p.finished_at),
        "message": p.message,
        "cancelled_by": p.cancel_requested_by,
    }
    if with_steps:
        body["steps"] = []
        for s in steps_of(session, p):
            item = step_json(session, s)
            item["needs"] = (p.spec.get("steps", {}).get(s.name) or {}).get("needs", [])
            body["steps"].append(item)
    if with_spec:
        body["spec"] = p.spec_source
    return body


# --- outputs and the cache --------------------------------------------------------------------


def output_files(session: Session, run_id: str, output: str) -> list[Artifact]:
    prefix = f"{OUTPUT_PREFIX}{output}/"
    return list(
        session.scalars(
            select(Artifact)
            .where(Artifact.run_id == run_id, Artifact.path.startswith(prefix, autoescape=True))
            .order_by(Artifact.path)
        ).all()
    )


def files_digest(files: list[tuple[str, str]]) -> str:
    """One digest for a set of files: sha256 over sorted "relative path NUL digest" lines."""
    h = hashlib.sha256()
    for path, digest in sorted(files):
        h.update(f"{path}\0{digest}\n".encode())
    return "sha256:" + h.hexdigest()


def output_digests(session: Session, run_id: str, declared: dict[str, str]) -> dict[str, str]:
    out = {}
    for name in declared:
        prefix = f"{OUTPUT_PREFIX}{name}/"
        out[name] = files_digest([(a.path[len(prefix) :], a.digest) for a in output_files(session, run_id, name)])
    return out


def cache_key(p: PipelineRun, step: dict[str, Any], env: EnvironmentVersion | None, inputs: list[dict]) -> str:
    material = {
        "commit_sha": p.commit_sha,
        "image": env.image if env else None,
        "lock_digest": env.lock_digest if env else None,
        "command": step["command"],
        "params": step["params"],
        "inputs": sorted((i.get("as") or i["name"], i["digest"]) for i in inputs),
        "outputs": step["outputs"],
    }
    return "sha256:" + hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _cached_source(session: Session, project: Project, key: str, exclude: int) -> PipelineStep | None:
    return session.scalar(
        select(PipelineStep)
        .where(
            PipelineStep.project_id == project.id,
            PipelineStep.cache_key == key,
            PipelineStep.status == "succeeded",
            PipelineStep.id != exclude,
        )
        .order_by(PipelineStep.id)
        .limit(1)
    )


def _source_run(step: PipelineStep) -> str | None:
    return step.cached_from_run_id or step.run_id


# --- the scheduler's work ------------------------------------------------------------------------


def active_ids(session: Session) -> list[str]:
    return list(session.scalars(select(PipelineRun.id).where(PipelineRun.status.in_(PIPELINE_ACTIVE))).all())


def _step_inputs(session: Session, p: PipelineRun, spec_step: dict[str, Any], by_name: dict[str, PipelineStep]):
    inputs = []
    for name, i in spec_step["inputs"].items():
        if i["kind"] == "dataset":
            inputs.append(
                {
                    "name": i["name"],
                    "as": name,
                    "version": i["version"],
                    "version_id": i["version_id"],
                    "digest": i["digest"],
                }
            )
            continue
        upstream = by_name[i["step"]]
        src = _source_run(upstream)
        prefix = f"{OUTPUT_PREFIX}{i['output']}/"
        files = [
            {"path": a.path[len(prefix) :], "artifact": a.path, "digest": a.digest, "size": a.size}
            for a in output_files(session, src, i["output"])
        ]
        inputs.append(
            {
                "kind": "artifact",
                "name": name,
                "as": name,
                "run_id": src,
                "step": i["step"],
                "output": i["output"],
                "digest": upstream.outputs.get(i["output"]) or files_digest([(f["path"], f["digest"]) for f in files]),
                "files": files,
            }
        )
    return inputs


def _start_step(
    session: Session, project: Project, p: PipelineRun, step: PipelineStep, by_name: dict[str, PipelineStep], infra: int
) -> None:
    spec_step = p.spec["steps"][step.name]
    env = (
        session.get(EnvironmentVersion, spec_step["environment_version_id"])
        if spec_step.get("environment_version_id")
        else None
    )
    inputs = _step_inputs(session, p, spec_step, by_name)
    key = cache_key(p, spec_step, env, inputs)
    step.cache_key = key
    step.updated_at = utcnow()
    if spec_step.get("cache"):
        hit = _cached_source(session, project, key, step.id)
        if hit is not None and _source_run(hit):
            step.cached_from_run_id = _source_run(hit)
            step.outputs = dict(hit.outputs or {})
            step.status = "succeeded"
            step.message = f"served from cache (run {step.cached_from_run_id})"
            audit.record(
                session,
                batch.SCHEDULER,
                "pipeline.step_cached",
                resource=f"project/{project.slug}/pipelines/{p.id}/steps/{step.name}",
                project=project.slug,
                details={"cached_from_run_id": step.cached_from_run_id, "cache_key": key},
            )
            return
    experiment = session.get(Experiment, p.experiment_id) if p.experiment_id else None
    if experiment is None:
        from . import tracking

        experiment = tracking.default_experiment(session, project, p.created_by)
    resolved = batch.Resolved(env_version=env, inputs=[i for i in inputs if i.get("kind") != "artifact"])
    run, job = batch.submit(
        session,
        project,
        experiment,
        p.created_by,
        repo_url=p.repo_url,
        code=ResolvedRef(sha=p.commit_sha, ref=p.git_ref),
        command=spec_step["command"],
        resolved=resolved,
        params=spec_step["params"],
        tags={"animus.pipeline_run": p.id, "animus.pipeline_step": step.name},
        name=f"{p.name or 'pipeline'}/{step.name}"[:250],
        priority=spec_step["priority"],
        retries=spec_step["retries"],
        infra_retries=spec_step["infra_retries"] if spec_step.get("infra_retries") is not None else infra,
        timeout_seconds=spec_step.get("timeout"),
        production=False,
    )
    job.inputs = inputs
    for i in inputs:
        if i.get("kind") == "artifact":  # lineage: the run consumed another run's output
            session.add(
                RunInput(
                    run_id=run.id,
                    name=f"{i['step']}.{i['output']}",
                    digest=i["digest"],
                    source_type="animus_run_output",
                    source=f"runs/{i['run_id']}/{OUTPUT_PREFIX}{i['output']}",
                    context="input",
                )
            )
    run.pipeline_run_id = p.id
    job.outputs = dict(spec_step["outputs"])
    job.resources = dict(spec_step["resources"]) if spec_step["resources"] else None
    job.seed = new_seed()
    step.run_id = run.id
    step.status = run.status
    audit.record(
        session,
        batch.SCHEDULER,
        "pipeline.step_start",
        resource=f"project/{project.slug}/pipelines/{p.id}/steps/{step.name}",
        project=project.slug,
        details={"run_id": run.id, "cache_key": key},
    )


def _finish(session: Session, project: Project, p: PipelineRun, status: str, message: str) -> None:
    p.status = status
    p.message = message[:2000]
    p.finished_at = p.updated_at = utcnow()
    audit.record(
        session,
        batch.SCHEDULER,
        f"pipeline.{status}",
        resource=f"project/{project.slug}/pipelines/{p.id}",
        project=project.slug,
        details={"message": message[:300]},
    )


def _stop_steps(session: Session, project: Project, p: PipelineRun, steps: list[PipelineStep], by: str) -> None:
    """Cancel the active runs of `steps`; skip the pending ones."""
    for s in steps:
        if s.status == STEP_WAITING:
            s.status = "skipped"
            s.updated_at = utcnow()
        elif s.run_id and s.status not in TERMINAL_STATUSES:
            run = session.get(Run, s.run_id)
            job = session.scalar(select(RunJob).where(RunJob.run_id == s.run_id).with_for_update())
            if run is not None and job is not None:
                batch.cancel(session, project, run, job, by)
                s.status = run.status
                s.updated_at = utcnow()


def advance(session: Session, pipeline_id: str, infra_retries: int) -> bool:
    """One look at one pipeline run (under its lock); True if anything changed."""
    p = session.scalar(select(PipelineRun).where(PipelineRun.id == pipeline_id).with_for_update())
    if p is None or p.status not in PIPELINE_ACTIVE:
        return False
    project = session.get(Project, p.project_id)
    steps = steps_of(session, p)
    by_name = {s.name: s for s in steps}
    changed = False
    # 1. mirror run statuses
    for s in steps:
        if s.run_id and s.status not in TERMINAL_STATUSES and s.status != "skipped":
            run = session.get(Run, s.run_id)
            if run is not None and run.status != s.status:
                s.status = run.status
                s.updated_at = utcnow()
                changed = True
                if run.status == "succeeded":
                    s.outputs = output_digests(session, run.id, p.spec["steps"][s.name]["outputs"])
                elif run.status in ("failed", "cancelled"):
                    job = session.get(RunJob, run.id)
                    s.message = (job.message if job else "")[:2000]
    # 2. a step that failed for good fails the pipeline
    failed = [s for s in steps if s.status in ("failed", "cancelled")]
    if failed:
        _stop_steps(session, project, p, steps, batch.SCHEDULER.name)
        names = ", ".join(f"{s.name} ({s.status})" for s in failed)
        _finish(session, project, p, "failed", f"step {names}")
        return True
    # 3. start what is ready
    for s in steps:
        if s.status != STEP_WAITING:
            continue
        needs = p.spec["steps"][s.name]["needs"]
        if all(by_name[n].status == "succeeded" for n in needs):
            _start_step(session, project, p, s, by_name, infra_retries)
            changed = True
    if all(s.status == "succeeded" for s in steps):
        _finish(session, project, p, "succeeded", "")
        return True
    if changed and p.status == "queued":
        p.status = "running"
    if changed:
        p.updated_at = utcnow()
    return changed


def cancel(session: Session, project: Project, p: PipelineRun, by: str) -> bool:
    """Cancel an unfinished pipeline run: its active step runs are cancelled, pending steps skipped."""
    if p.status not in PIPELINE_ACTIVE:
        return False
    p.cancel_requested_by = by
    _stop_steps(session, project, p, steps_of(session, p), by)
    p.status = "cancelled"
    p.message = f"cancelled by {by}"
    p.finished_at = p.updated_at = utcnow()
    return True
