"""Experiment tracking: experiments, runs, params, tags, metrics and their histories.

Interactive runs (notebooks, scripts using the SDK or MLflow) and batch runs are
the same entity. Params are immutable once logged; tags are mutable; metrics keep
every point, and ``LatestMetric`` keeps the latest point per key for search.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, text
from sqlalchemy.orm import Session

from animus.keys import key_problem

from ..errors import AnimusError
from ..events import record_event
from ..orm import (
    TERMINAL_STATUSES,
    Artifact,
    Experiment,
    LatestMetric,
    LoggedModel,
    Metric,
    Project,
    Run,
    RunInput,
    RunParam,
    RunTag,
    utcnow,
)
from .datasets import version_for_input
from .pagination import page
from .projects import ensure_active, iso
from .sqlutil import chunks

DEFAULT_EXPERIMENT = "Default"
PARAM_VALUE_MAX = 6000
TAG_VALUE_MAX = 8000
# per log-batch request, as MLflow limits them
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
MAX_ENTITIES_PER_BATCH = 1000
MAX_COMPARE_RUNS = 50
DEFAULT_MAX_POINTS = 1000


# --- value helpers ------------------------------------------------------------


def epoch_ms(value: dt.datetime | None) -> int | None:
    return int(value.timestamp() * 1000) if value is not None else None


def from_epoch_ms(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def json_float(value: float, is_nan: bool = False) -> float | str:
    """JSON has no NaN or infinities: they travel as the strings MLflow uses."""
    if is_nan or math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def parse_float(value: Any, field: str) -> float:
    if isinstance(value, bool):
        raise AnimusError(422, "invalid_metric", f"{field} must be a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value in ("NaN", "nan", "Infinity", "inf", "-Infinity", "-inf"):
        return float(value.replace("Infinity", "inf"))
    raise AnimusError(422, "invalid_metric", f"{field} must be a number or one of 'NaN', 'Infinity', '-Infinity'")


@lru_cache(maxsize=4096)
def _valid_key(key: str) -> bool:
    return key_problem(key) is None


def validate_key(key: Any, what: str) -> str:
    """Metric, param, tag and artifact keys (rules in animus.keys, shared with the SDK).

    A training loop logs the same few keys again and again: valid keys are remembered.
    """
    if isinstance(key, str) and _valid_key(key):
        return key
    problem = key_problem(key) or "invalid"
    shown = key if isinstance(key, str) else type(key).__name__
    raise AnimusError(422, f"invalid_{what}_key", f"Invalid {what} key {shown!r}: {problem}")


# --- experiments --------------------------------------------------------------


def experiment_json(e: Experiment) -> dict[str, Any]:
    return {
        "id": str(e.id),
        "name": e.name,
        "description": e.description,
        "tags": e.tags or {},
        "lifecycle_stage": e.lifecycle_stage,
        "created_at": iso(e.created_at),
        "created_by": e.created_by,
        "updated_at": iso(e.updated_at),
    }


def find_experiment(session: Session, project: Project, experiment_id: str | int) -> Experiment:
    eid = str(experiment_id)
    e = session.get(Experiment, int(eid)) if eid.isdigit() and len(eid) < 12 else None
    if e is None or e.project_id != project.id:
        raise AnimusError(404, "experiment_not_found", f"Experiment {eid!r} not found in project {project.slug!r}")
    return e


def find_experiment_by_name(session: Session, project: Project, name: str) -> Experiment | None:
    return session.scalar(select(Experiment).where(Experiment.project_id == project.id, Experiment.name == name))


def validate_experiment_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 256 or any(ord(c) < 32 for c in name):
        raise AnimusError(422, "invalid_experiment_name", "An experiment name is 1–256 printable characters")
    return name


def create_experiment(
    session: Session, project: Project, name: str, by: str, description: str = "", tags: dict[str, str] | None = None
) -> Experiment:
    ensure_active(project)
    validate_experiment_name(name)
    for key, value in (tags or {}).items():
        validate_key(key, "tag")
        if len(str(value)) > TAG_VALUE_MAX:
            raise AnimusError(422, "invalid_tag_value", f"Tag {key!r} value longer than {TAG_VALUE_MAX} characters")
    if find_experiment_by_name(session, project, name) is not None:
        raise AnimusError(409, "experiment_exists", f"An experiment named {name!r} already exists in {project.slug!r}")
    now = utcnow()
    e = Experiment(
        project_id=project.id,
        name=name,
        description=description,
        tags=dict(tags or {}),
        created_by=by,
        created_at=now,
        updated_at=now,
    )
    session.add(e)
    session.flush()
    return e


def default_experiment(session: Session, project: Project, by: str) -> Experiment:
    e = find_experiment_by_name(session, project, DEFAULT_EXPERIMENT)
    return e if e is not None else create_experiment(session, project, DEFAULT_EXPERIMENT, by)


def list_experiments(
    session: Session, project: Project, *, lifecycle: str, name: str | None, limit: int, cursor: str | None
) -> tuple[list[Experiment], str | None]:
    stmt = select(Experiment).where(Experiment.project_id == project.id)
    if lifecycle != "all":
        stmt = stmt.where(Experiment.lifecycle_stage == lifecycle)
    if name:
        stmt = stmt.where(Experiment.name == name)
    return page(session, stmt, Experiment.id, limit, cursor)


def update_experiment(
    session: Session,
    project: Project,
    e: Experiment,
    *,
    name: str | None = None,
    description: str | None = None,
    tags: dict[str, str] | None = None,
    lifecycle_stage: str | None = None,
) -> dict[str, Any]:
    ensure_active(project)
    changes: dict[str, Any] = {}
    if name is not None and name != e.name:
        validate_experiment_name(name)
        if find_experiment_by_name(session, project, name) is not None:
            raise AnimusError(409, "experiment_exists", f"An experiment named {name!r} already exists")
        changes["name"] = {"from": e.name, "to": name}
        e.name = name
    if description is not None and description != e.description:
        changes["description"] = True
        e.description = description
    if tags:
        for k in tags:
            validate_key(k, "tag")
        e.tags = {**(e.tags or {}), **tags}
        changes["tags"] = sorted(tags)
    if lifecycle_stage is not None and lifecycle_stage != e.lifecycle_stage:
        changes["lifecycle_stage"] = {"from": e.lifecycle_stage, "to": lifecycle_stage}
        e.lifecycle_stage = lifecycle_stage
    if changes:
        e.updated_at = utcnow()
    return changes


# --- runs ---------------------------------------------------------------------


@dataclass
class CodeRef:
    repo_url: str | None = None
    commit_sha: str | None = None
    diff_digest: str | None = None


def find_run(session: Session, project: Project, run_id: str) -> Run:
    run = session.get(Run, run_id) if isinstance(run_id, str) and 0 < len(run_id) <= 36 else None
    if run is None or run.project_id != project.id:
        raise AnimusError(404, "run_not_found", f"Run {run_id!r} not found in project {project.slug!r}")
    return run


def create_run(
    session: Session,
    project: Project,
    experiment: Experiment,
    by: str,
    *,
    name: str = "",
    tags: dict[str, str] | None = None,
    start_time: dt.datetime | None = None,
    code: CodeRef | None = None,
    kind: str = "interactive",
) -> Run:
    ensure_active(project)
    if experiment.lifecycle_stage != "active":
        raise AnimusError(409, "experiment_deleted", f"Experiment {experiment.name!r} is deleted; restore it first")
    if len(name) > 250:
        raise AnimusError(422, "invalid_run_name", "A run name is at most 250 characters")
    code = code or CodeRef()
    if code.commit_sha is not None and (len(code.commit_sha) != 40 or not all(c in "0123456789abcdef" for c in code.commit_sha)):
        raise AnimusError(422, "invalid_commit_sha", "commit_sha must be 40 lowercase hex characters")
    run = Run(
        project_id=project.id,
        experiment_id=experiment.id,
        name=name,
        kind=kind,
        status="running",
        start_time=start_time or utcnow(),
        repo_url=code.repo_url,
        commit_sha=code.commit_sha,
        diff_digest=code.diff_digest,
        created_by=by,
        created_at=utcnow(),
    )
    session.add(run)
    session.flush()
    if tags:
        set_tags(session, run, tags.items())
    return run


def set_tags(session: Session, run: Run, items: Iterable[tuple[str, str]]) -> int:
    """Set tags (the last value of a key given twice wins); one query for the existing ones."""
    wanted: dict[str, str] = {}
    n = 0
    for key, value in items:
        validate_key(key, "tag")
        value = "" if value is None else str(value)
        if len(value) > TAG_VALUE_MAX:
            raise AnimusError(422, "invalid_tag_value", f"Tag {key!r} value longer than {TAG_VALUE_MAX} characters")
        wanted[key] = value
        n += 1
    if not wanted:
        return 0
    existing = {
        t.key: t
        for key_chunk in chunks(list(wanted))
        for t in session.scalars(select(RunTag).where(RunTag.run_id == run.id, RunTag.key.in_(key_chunk)))
    }
    for key, value in wanted.items():
        tag = existing.get(key)
        if tag is None:
            session.add(RunTag(run_id=run.id, key=key, value=value))
        else:
            tag.value = value
    return n


def delete_tag(session: Session, run: Run, key: str) -> None:
    tag = session.get(RunTag, (run.id, key))
    if tag is None:
        raise AnimusError(404, "tag_not_found", f"Run {run.id} has no tag {key!r}")
    session.delete(tag)


def ensure_writable(run: Run) -> None:
    if run.lifecycle_stage != "active":
        raise AnimusError(409, "run_deleted", f"Run {run.id} is deleted; restore it first")
    if run.status in TERMINAL_STATUSES:
        raise AnimusError(
            409, "run_finished", f"Run {run.id} has finished ({run.status}); params and metrics can no longer be logged"
        )


def log_params(session: Session, run: Run, items: Sequence[tuple[str, str]]) -> int:
    seen: dict[str, str] = {}
    for key, value in items:
        validate_key(key, "param")
        value = "" if value is None else str(value)
        if len(value) > PARAM_VALUE_MAX:
            raise AnimusError(422, "invalid_param_value", f"Param {key!r} value longer than {PARAM_VALUE_MAX} characters")
        if key in seen and seen[key] != value:
            raise AnimusError(409, "param_conflict", f"Param {key!r} given twice with different values")
        seen[key] = value
    if not seen:
        return 0
    existing = {
        p.key: p.value
        for p in session.scalars(select(RunParam).where(RunParam.run_id == run.id, RunParam.key.in_(list(seen))))
    }
    new = []
    for key, value in seen.items():
        if key in existing:
            if existing[key] != value:
                raise AnimusError(
                    409,
                    "param_conflict",
                    f"Param {key!r} was already logged as {existing[key]!r}; params are immutable",
                    {"key": key, "logged_value": existing[key], "new_value": value},
                )
            continue
        new.append({"run_id": run.id, "key": key, "value": value})
    if new:
        session.execute(insert(RunParam), new)
    return len(new)


@dataclass
class MetricPoint:
    key: str
    value: float
    step: int
    timestamp: int


def parse_metric(raw: Any, now_ms: int) -> MetricPoint:
    if not isinstance(raw, dict):
        raise AnimusError(422, "invalid_metric", "Each metric is an object {key, value, step, timestamp}")
    unknown = set(raw) - {"key", "value", "step", "timestamp", "run_id", "run_uuid", "model_id", "dataset_name", "dataset_digest"}
    if unknown:
        raise AnimusError(422, "invalid_metric", f"Unknown metric fields: {', '.join(sorted(unknown))}")
    key = validate_key(raw.get("key"), "metric")
    value = parse_float(raw.get("value"), f"metric {key!r} value")
    step, ts = raw.get("step", 0), raw.get("timestamp", now_ms)
    for name, v in (("step", step), ("timestamp", ts)):
        if isinstance(v, str) and v.lstrip("-").isdigit():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or not -(2**63) <= v < 2**63:
            raise AnimusError(422, "invalid_metric", f"metric {key!r} {name} must be a 64-bit integer")
        if name == "step":
            step = v
        else:
            ts = v
    return MetricPoint(key, value, step, ts)


def log_metrics(session: Session, run: Run, points: Sequence[MetricPoint]) -> int:
    """Append metric points and move each key's latest point forward.

    The hot path of tracking: the points go to the driver as one executemany of a
    precompiled INSERT, and the latest values as one INSERT ... ON CONFLICT DO UPDATE
    per key that only moves forward (highest step, then timestamp), so concurrent
    writers cannot move a latest value back.
    """
    if not points:
        return 0
    rows = []
    best: dict[str, MetricPoint] = {}
    for p in points:
        is_nan = p.value != p.value
        rows.append((run.id, p.key, 0.0 if is_nan else p.value, is_nan, p.step, p.timestamp))
        cur = best.get(p.key)
        if cur is None or (p.step, p.timestamp) >= (cur.step, cur.timestamp):
            best[p.key] = p
    conn = session.connection()
    conn.exec_driver_sql(_metric_insert_sql(conn.dialect.paramstyle), rows)
    latest = [
        {
            "run_id": run.id,
            "key": key,
            "value": 0.0 if p.value != p.value else p.value,
            "is_nan": p.value != p.value,
            "step": p.step,
            "timestamp": p.timestamp,
        }
        for key, p in best.items()
    ]
    conn.execute(_latest_metric_upsert(conn.dialect.name), latest)
    return len(rows)


_METRIC_COLUMNS = ("run_id", "key", "value", "is_nan", "step", "timestamp")


@lru_cache(maxsize=4)
def _metric_insert_sql(paramstyle: str) -> str:
    marks = ", ".join(["?" if paramstyle == "qmark" else "%s"] * len(_METRIC_COLUMNS))
    return f"INSERT INTO metric ({', '.join(_METRIC_COLUMNS)}) VALUES ({marks})"


@lru_cache(maxsize=4)
def _latest_metric_upsert(dialect: str) -> Any:
    """INSERT ... ON CONFLICT (run_id, key) DO UPDATE when the new point is not older."""
    from sqlalchemy.dialects import postgresql, sqlite

    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(LatestMetric)
    new, table = stmt.excluded, LatestMetric.__table__.c
    newer = or_(new.step > table.step, and_(new.step == table.step, new.timestamp >= table.timestamp))
    return stmt.on_conflict_do_update(
        index_elements=[table.run_id, table.key],
        set_={c: new[c] for c in ("value", "is_nan", "step", "timestamp")},
        where=newer,
    )


def check_batch_limits(n_metrics: int, n_params: int, n_tags: int) -> None:
    over = []
    if n_metrics > MAX_METRICS_PER_BATCH:
        over.append(f"{n_metrics} metrics (max {MAX_METRICS_PER_BATCH})")
    if n_params > MAX_PARAMS_PER_BATCH:
        over.append(f"{n_params} params (max {MAX_PARAMS_PER_BATCH})")
    if n_tags > MAX_TAGS_PER_BATCH:
        over.append(f"{n_tags} tags (max {MAX_TAGS_PER_BATCH})")
    if n_metrics + n_params + n_tags > MAX_ENTITIES_PER_BATCH:
        over.append(f"{n_metrics + n_params + n_tags} entries in all (max {MAX_ENTITIES_PER_BATCH})")
    if over:
        raise AnimusError(
            413,
            "batch_too_large",
            "Batch too large: " + "; ".join(over) + ". Split it into several requests.",
            {
                "max_metrics": MAX_METRICS_PER_BATCH,
                "max_params": MAX_PARAMS_PER_BATCH,
                "max_tags": MAX_TAGS_PER_BATCH,
                "max_entries": MAX_ENTITIES_PER_BATCH,
            },
        )


def log_batch(
    session: Session,
    run: Run,
    points: Sequence[MetricPoint],
    params: Sequence[tuple[str, str]],
    tags: Sequence[tuple[str, str]],
) -> tuple[int, int, int]:
    """Log parsed metrics, params and tags in one go: (metrics, params, tags) written.

    Metrics and params need a run that is still running; tags are annotations and
    may change on a finished run too.
    """
    if points or params:
        ensure_writable(run)
    n_params = log_params(session, run, params)
    n_metrics = log_metrics(session, run, points)
    n_tags = set_tags(session, run, tags)
    return n_metrics, n_params, n_tags


def set_status(session: Session, project: Project, run: Run, status: str, end_time: dt.datetime | None = None) -> bool:
    """Move a run to `status`; a terminal status ends it and records RunFinished. Returns whether it changed."""
    if status == run.status:
        return False
    if run.status in TERMINAL_STATUSES:
        raise AnimusError(409, "run_finished", f"Run {run.id} already finished as {run.status}")
    run.status = status
    if status in TERMINAL_STATUSES:
        run.end_time = end_time or utcnow()
        record_event(
            session,
            "RunFinished",
            {
                "run_id": run.id,
                "experiment_id": str(run.experiment_id),
                "status": run.status,
                "start_time": iso(run.start_time),
                "end_time": iso(run.end_time),
                "user": run.created_by,
            },
            project,
        )
    return True


def log_inputs(session: Session, run: Run, datasets: Sequence[dict[str, Any]]) -> int:
    n = 0
    for d in datasets:
        key = (d.get("name", ""), d.get("digest", ""), d.get("context", ""))
        exists = session.scalar(
            select(RunInput.id).where(
                RunInput.run_id == run.id, RunInput.name == key[0], RunInput.digest == key[1], RunInput.context == key[2]
            )
        )
        if exists:
            continue
        session.add(
            RunInput(
                run_id=run.id,
                name=key[0][:500],
                digest=key[1][:71],
                source_type=d.get("source_type", "")[:64],
                source=d.get("source", ""),
                schema=d.get("schema", ""),
                profile=d.get("profile", ""),
                context=key[2][:64],
                # an Animus dataset version named by its manifest digest is linked (lineage)
                dataset_version_id=d.get("dataset_version_id") or version_for_input(session, run.project_id, key[0], key[1]),
            )
        )
        n += 1
    return n


# --- reading ------------------------------------------------------------------


def run_data(session: Session, runs: Sequence[Run]) -> dict[str, dict[str, Any]]:
    """Params, tags, latest metrics and inputs of many runs in four queries (per 500 runs)."""
    ids = [r.id for r in runs]
    data: dict[str, dict[str, Any]] = {i: {"params": {}, "tags": {}, "metrics": {}, "inputs": []} for i in ids}
    if not ids:
        return data
    # plain rows, not ORM objects: a search page loads hundreds of them (Core does not
    # autoflush: changes of this transaction are flushed first)
    session.flush()
    conn = session.connection()
    for chunk in chunks(ids):
        for run_id, key, value in conn.execute(
            select(RunParam.run_id, RunParam.key, RunParam.value).where(RunParam.run_id.in_(chunk))
        ):
            data[run_id]["params"][key] = value
        for run_id, key, value in conn.execute(
            select(RunTag.run_id, RunTag.key, RunTag.value).where(RunTag.run_id.in_(chunk))
        ):
            data[run_id]["tags"][key] = value
        lm = LatestMetric
        for run_id, key, value, is_nan, step, ts in conn.execute(
            select(lm.run_id, lm.key, lm.value, lm.is_nan, lm.step, lm.timestamp).where(lm.run_id.in_(chunk))
        ):
            data[run_id]["metrics"][key] = {"value": json_float(value, is_nan), "step": step, "timestamp": ts}
        ri = RunInput
        for run_id, name, digest, source_type, source, context in conn.execute(
            select(ri.run_id, ri.name, ri.digest, ri.source_type, ri.source, ri.context).where(ri.run_id.in_(chunk))
        ):
            data[run_id]["inputs"].append(
                {"name": name, "digest": digest, "source_type": source_type, "source": source, "context": context}
            )
    return data


def run_json(run: Run, data: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": run.id,
        "experiment_id": str(run.experiment_id),
        "name": run.name,
        "kind": run.kind,
        "status": run.status,
        "lifecycle_stage": run.lifecycle_stage,
        "start_time": iso(run.start_time),
        "end_time": iso(run.end_time),
        "user": run.created_by,
        "code": {"repo_url": run.repo_url, "commit_sha": run.commit_sha, "diff_digest": run.diff_digest},
    }
    if data is not None:
        body.update(data)
    return body


def metric_history(
    session: Session, run: Run, key: str, *, max_points: int | None = None, start_step: int | None = None, end_step: int | None = None
) -> tuple[list[dict[str, Any]], int, bool]:
    """Points of one metric in step order: (points, total, downsampled).

    With `max_points`, a longer history is reduced to at most that many points by
    keeping, in each of max_points/2 step buckets, the lowest and the highest value
    (extremes are never lost); NaN points are left out of a reduced history.
    """
    cond = [Metric.run_id == run.id, Metric.key == key]
    if start_step is not None:
        cond.append(Metric.step >= start_step)
    if end_step is not None:
        cond.append(Metric.step <= end_step)
    where = and_(*cond)
    total, lo, hi = session.execute(select(func.count(), func.min(Metric.step), func.max(Metric.step)).where(where)).one()
    cols = (Metric.step, Metric.value, Metric.is_nan, Metric.timestamp)
    if not max_points or total <= max_points:
        rows = session.execute(select(*cols).where(where).order_by(Metric.step, Metric.timestamp, Metric.id)).all()
        return [_point(*r) for r in rows], total, False
    buckets = max(1, max_points // 2)
    span = max(1, (hi - lo) + 1)
    sql = text(
        """
        SELECT step, value, timestamp FROM (
            SELECT step, value, timestamp,
                   ROW_NUMBER() OVER (PARTITION BY b ORDER BY value ASC, step ASC) AS rn_min,
                   ROW_NUMBER() OVER (PARTITION BY b ORDER BY value DESC, step ASC) AS rn_max
            FROM (
                SELECT step, value, timestamp, ((step - :lo) * :buckets) / :span AS b
                FROM metric
                WHERE run_id = :run_id AND key = :key AND is_nan = :false
                  AND step >= :lo AND step <= :hi
            ) AS bucketed
        ) AS ranked
        WHERE rn_min = 1 OR rn_max = 1
        ORDER BY step, timestamp
        """
    )
    rows = session.execute(
        sql, {"lo": lo, "hi": hi, "buckets": buckets, "span": span, "run_id": run.id, "key": key, "false": False}
    ).all()
    return [_point(step, value, False, ts) for step, value, ts in rows], total, True


def _point(step: int, value: float, is_nan: bool, timestamp: int) -> dict[str, Any]:
    return {"step": step, "value": json_float(value, is_nan), "timestamp": timestamp}


def compare_runs(
    session: Session, project: Project, run_ids: Sequence[str], metric_keys: Sequence[str] | None, max_points: int
) -> dict[str, Any]:
    if not run_ids:
        raise AnimusError(400, "invalid_request", "Give at least one run id to compare")
    if len(run_ids) > MAX_COMPARE_RUNS:
        raise AnimusError(400, "too_many_runs", f"Compare at most {MAX_COMPARE_RUNS} runs at once")
    runs = [find_run(session, project, rid) for rid in dict.fromkeys(run_ids)]
    data = run_data(session, runs)
    param_keys = sorted({k for d in data.values() for k in d["params"]})
    metric_names = sorted({k for d in data.values() for k in d["metrics"]})
    wanted = list(metric_keys) if metric_keys else metric_names
    histories: dict[str, dict[str, Any]] = {}
    for key in wanted:
        histories[key] = {}
        for r in runs:
            points, total, reduced = metric_history(session, r, key, max_points=max_points)
            histories[key][r.id] = {"points": points, "total_points": total, "downsampled": reduced}
    return {
        "runs": [run_json(r) for r in runs],
        "params": {k: {r.id: data[r.id]["params"].get(k) for r in runs} for k in param_keys},
        "params_differ": [k for k in param_keys if len({data[r.id]["params"].get(k) for r in runs}) > 1],
        "metrics": {k: {r.id: data[r.id]["metrics"].get(k) for r in runs} for k in metric_names},
        "histories": histories,
    }


# --- artifacts (content-addressed) ----------------------------------------------------

MAX_ARTIFACT_FILES = 1000
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")



def run_files_prefix(project_id: int, run_id: str) -> str:
    """Where files written by MLflow clients for a run live (path-addressed, as MLflow lays them out)."""
    return f"projects/{project_id}/runs/{run_id}/artifacts"


def logged_model_files_prefix(project_id: int, model_id: str) -> str:
    """Where an MLflow logged model's files live."""
    return f"projects/{project_id}/logged-models/{model_id}/artifacts"


LOGGED_MODELS_DIR = "logged-models"


def mlflow_file_keys(session: Session, run: Run) -> list[tuple[str, str]]:
    """(prefix, shown path prefix) of every place MLflow clients stored files for `run`:
    the run's own artifact directory, and each logged model's under logged-models/<name>/."""
    places = [(run_files_prefix(run.project_id, run.id), "")]
    for m in session.scalars(select(LoggedModel).where(LoggedModel.run_id == run.id).order_by(LoggedModel.created_at)):
        places.append((logged_model_files_prefix(run.project_id, m.id), f"{LOGGED_MODELS_DIR}/{m.id}/"))
    return places


@dataclass
class ArtifactFile:
    path: str
    sha256: str
    size: int


def parse_artifact_files(raw: Any) -> list[ArtifactFile]:
    if not isinstance(raw, list) or not raw:
        raise AnimusError(422, "validation_failed", "files must be a non-empty list of {path, sha256, size}")
    if len(raw) > MAX_ARTIFACT_FILES:
        raise AnimusError(413, "too_many_files", f"At most {MAX_ARTIFACT_FILES} files per request; split the upload")
    files, seen = [], set()
    for item in raw:
        if not isinstance(item, dict) or set(item) - {"path", "sha256", "size"}:
            raise AnimusError(422, "validation_failed", "Each file is an object {path, sha256, size}")
        path = validate_key(item.get("path"), "artifact")
        if path in seen:
            raise AnimusError(422, "duplicate_path", f"Artifact path {path!r} given twice")
        seen.add(path)
        sha = item.get("sha256")
        if not isinstance(sha, str) or not SHA256_RE.match(sha):
            raise AnimusError(422, "invalid_digest", f"{path!r}: sha256 must be 64 lowercase hex characters")
        size = item.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise AnimusError(422, "validation_failed", f"{path!r}: size must be a non-negative integer")
        files.append(ArtifactFile(path, sha, size))
    return files


def existing_artifacts(session: Session, run: Run, paths: Sequence[str]) -> dict[str, Artifact]:
    return {a.path: a for a in session.scalars(select(Artifact).where(Artifact.run_id == run.id, Artifact.path.in_(list(paths))))}


def refuse_changed_paths(session: Session, run: Run, files: Sequence[ArtifactFile]) -> None:
    """An artifact path, once committed, keeps its content."""
    existing = existing_artifacts(session, run, [f.path for f in files])
    for f in files:
        a = existing.get(f.path)
        if a is not None and a.digest != f"sha256:{f.sha256}":
            raise AnimusError(
                409, "artifact_exists", f"Artifact {f.path!r} of run {run.id} already exists with other content"
            )


def commit_artifacts(session: Session, run: Run, files: Sequence[ArtifactFile]) -> int:
    refuse_changed_paths(session, run, files)
    existing = existing_artifacts(session, run, [f.path for f in files])
    new = [
        {"run_id": run.id, "path": f.path, "digest": f"sha256:{f.sha256}", "size": f.size, "created_at": utcnow()}
        for f in files
        if f.path not in existing
    ]
    if new:
        session.execute(insert(Artifact), new)
    return len(new)


def artifact_json(a: Artifact) -> dict[str, Any]:
    return {"path": a.path, "sha256": a.digest.removeprefix("sha256:"), "size": a.size, "created_at": iso(a.created_at)}


def list_artifacts(session: Session, run: Run, limit: int, cursor: str | None):
    return page(session, select(Artifact).where(Artifact.run_id == run.id), Artifact.id, limit, cursor)


def find_artifact(session: Session, run: Run, path: str) -> Artifact:
    a = session.scalar(select(Artifact).where(Artifact.run_id == run.id, Artifact.path == path))
    if a is None:
        raise AnimusError(404, "artifact_not_found", f"Run {run.id} has no artifact {path!r}")
    return a
