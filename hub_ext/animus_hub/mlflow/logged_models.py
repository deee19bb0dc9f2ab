"""MLflow 3 logged models (what ``mlflow.<flavor>.log_model`` creates), stored as orm.LoggedModel.

Domain logic, no Tornado. A logged model belongs to an experiment of the project
and usually to the run that produced it (``run_id``); its files live under
``projects/<project id>/logged-models/<model id>/artifacts/`` in the object store.
It is PENDING while the client uploads, then READY (or FAILED); a READY model's
files are immutable.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import AnimusError
from ..orm import Experiment, LoggedModel, Project, Run, utcnow
from ..services import tracking as svc
from ..services.pagination import decode_cursor, encode_cursor
from ..services.projects import ensure_active

MODEL_NAME_MAX = 250
MODEL_STATUSES = ("PENDING", "READY", "FAILED")
SEARCH_MAX_RESULTS = 1000
FILTER_MAX = 1000

# the attributes a search filter may test, as MLflow names them → column
_FILTER_COLUMNS = {
    "name": LoggedModel.name,
    "model_id": LoggedModel.id,
    "source_run_id": LoggedModel.run_id,
    "status": LoggedModel.status,
    "model_type": LoggedModel.model_type,
}
_PREDICATE = re.compile(
    r"""\s*(?:attributes?\.)?(?P<field>\w+)\s*(?P<op>=|!=)\s*(?P<value>'(?:[^']|'')*'|"(?:[^"]|"")*")\s*""",
    re.IGNORECASE,
)
_AND = re.compile(r"and\b", re.IGNORECASE)


def not_found(model_id: str, project: Project) -> AnimusError:
    return AnimusError(
        404, "logged_model_not_found", f"Logged model {model_id!r} not found in project {project.slug!r}"
    )


def find_logged_model(session: Session, project: Project, model_id: str, allow_deleted: bool = False) -> LoggedModel:
    m = session.get(LoggedModel, model_id) if isinstance(model_id, str) and 0 < len(model_id) <= 64 else None
    if m is None or m.project_id != project.id or (m.lifecycle_stage != "active" and not allow_deleted):
        raise not_found(model_id, project)
    return m


def _check_tags(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    tags = {}
    for key, value in items:
        svc.validate_key(key, "tag")
        if len(value) > svc.TAG_VALUE_MAX:
            raise AnimusError(422, "invalid_tag_value", f"Tag {key!r} value longer than {svc.TAG_VALUE_MAX} characters")
        tags[key] = value
    return tags


def _check_params(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    params = {}
    for key, value in items:
        svc.validate_key(key, "param")
        if len(value) > svc.PARAM_VALUE_MAX:
            raise AnimusError(
                422, "invalid_param_value", f"Param {key!r} value longer than {svc.PARAM_VALUE_MAX} characters"
            )
        params[key] = value
    return params


def create_logged_model(
    session: Session,
    project: Project,
    experiment: Experiment,
    by: str,
    *,
    name: str | None,
    model_type: str | None,
    run: Run | None,
    params: Sequence[tuple[str, str]] = (),
    tags: Sequence[tuple[str, str]] = (),
) -> LoggedModel:
    ensure_active(project)
    if experiment.lifecycle_stage != "active":
        raise AnimusError(409, "experiment_deleted", f"Experiment {experiment.name!r} is deleted; restore it first")
    if run is not None and run.experiment_id != experiment.id:
        raise AnimusError(422, "invalid_logged_model", f"Run {run.id} belongs to another experiment")
    name = name or "model"
    if len(name) > MODEL_NAME_MAX or any(ord(c) < 32 for c in name):
        raise AnimusError(422, "invalid_logged_model", f"A model name is 1–{MODEL_NAME_MAX} printable characters")
    now = utcnow()
    m = LoggedModel(
        id=f"m-{uuid.uuid4().hex}",
        project_id=project.id,
        experiment_id=experiment.id,
        run_id=run.id if run is not None else None,
        name=name,
        status="PENDING",
        model_type=(model_type or "")[:250],
        params=_check_params(params),
        tags=_check_tags(tags),
        created_by=by,
        created_at=now,
        updated_at=now,
    )
    session.add(m)
    session.flush()
    return m


def set_tags(m: LoggedModel, items: Iterable[tuple[str, str]]) -> list[str]:
    tags = _check_tags(items)
    m.tags = {**(m.tags or {}), **tags}
    m.updated_at = utcnow()
    return sorted(tags)


def delete_tag(m: LoggedModel, key: str) -> None:
    if key not in (m.tags or {}):
        raise AnimusError(404, "tag_not_found", f"Logged model {m.id} has no tag {key!r}")
    m.tags = {k: v for k, v in m.tags.items() if k != key}
    m.updated_at = utcnow()


def log_params(m: LoggedModel, items: Iterable[tuple[str, str]]) -> list[str]:
    params = _check_params(items)
    m.params = {**(m.params or {}), **params}
    m.updated_at = utcnow()
    return sorted(params)


def finalize(m: LoggedModel, status: str) -> bool:
    """Set the model's status; returns whether it changed. A READY model stays READY."""
    if status not in MODEL_STATUSES:
        raise AnimusError(422, "invalid_logged_model", f"Status must be one of {', '.join(MODEL_STATUSES)}")
    if status == m.status:
        return False
    if m.status == "READY":
        raise AnimusError(409, "logged_model_finalized", f"Logged model {m.id} is already READY")
    m.status = status
    m.updated_at = utcnow()
    return True


def ensure_files_writable(m: LoggedModel) -> None:
    if m.status == "READY":
        raise AnimusError(
            409, "logged_model_finalized", f"Logged model {m.id} is READY: its files can no longer change"
        )


def delete_logged_model(m: LoggedModel) -> None:
    m.lifecycle_stage = "deleted"
    m.updated_at = utcnow()


def link_output(run: Run, m: LoggedModel) -> bool:
    """Record `m` as an output of `run` (MLflow's log-outputs); a model has one source run."""
    if m.experiment_id != run.experiment_id:
        raise AnimusError(
            422, "invalid_logged_model", f"Logged model {m.id} belongs to another experiment than run {run.id}"
        )
    if m.run_id is None:
        m.run_id = run.id
        m.updated_at = utcnow()
        return True
    if m.run_id != run.id:
        raise AnimusError(409, "logged_model_conflict", f"Logged model {m.id} is an output of run {m.run_id} already")
    return False


def model_ids_by_run(session: Session, run_ids: Sequence[str]) -> dict[str, list[str]]:
    """The (active) logged models each run produced, oldest first."""
    found: dict[str, list[str]] = {r: [] for r in run_ids}
    if not run_ids:
        return found
    rows = session.execute(
        select(LoggedModel.run_id, LoggedModel.id)
        .where(LoggedModel.run_id.in_(list(run_ids)), LoggedModel.lifecycle_stage == "active")
        .order_by(LoggedModel.created_at, LoggedModel.id)
    )
    for run_id, model_id in rows:
        found[run_id].append(model_id)
    return found


def _filter_conditions(text: str) -> list:
    """`name = 'x' and source_run_id = 'y'`: equality tests of attributes, joined by AND.

    Values are bound parameters, never SQL text; anything else is refused with 400.
    """
    if len(text) > FILTER_MAX:
        raise AnimusError(400, "invalid_filter", f"A filter is at most {FILTER_MAX} characters")
    conditions = []
    pos = 0
    while True:
        m = _PREDICATE.match(text, pos)
        if m is None or m.group("field").lower() not in _FILTER_COLUMNS:
            raise AnimusError(
                400,
                "invalid_filter",
                f"Unsupported logged-model filter {text!r}: use `<attribute> = '<value>'` joined by AND, "
                f"with attributes {', '.join(sorted(_FILTER_COLUMNS))}",
            )
        raw = m.group("value")
        value = raw[1:-1].replace(raw[0] * 2, raw[0])
        column = _FILTER_COLUMNS[m.group("field").lower()]
        if column is LoggedModel.status:
            value = {
                "LOGGED_MODEL_PENDING": "PENDING",
                "LOGGED_MODEL_READY": "READY",
                "LOGGED_MODEL_UPLOAD_FAILED": "FAILED",
            }.get(value, value)
        conditions.append(column == value if m.group("op") == "=" else column != value)
        pos = m.end()
        if pos == len(text):
            return conditions
        a = _AND.match(text, pos)
        if a is None:
            raise AnimusError(400, "invalid_filter", f"Expected AND at position {pos} of the filter")
        pos = a.end()


def search_logged_models(
    session: Session,
    project: Project,
    experiment_ids: Sequence[int] | None,
    filter_text: str,
    limit: int,
    cursor: str | None,
) -> tuple[list[LoggedModel], str | None]:
    """Newest first; the cursor is an offset into this ordering."""
    stmt = select(LoggedModel).where(LoggedModel.project_id == project.id, LoggedModel.lifecycle_stage == "active")
    if experiment_ids is not None:
        stmt = stmt.where(LoggedModel.experiment_id.in_(list(experiment_ids)))
    if filter_text.strip():
        stmt = stmt.where(*_filter_conditions(filter_text))
    offset = decode_cursor(cursor)
    rows = list(
        session.scalars(stmt.order_by(LoggedModel.created_at.desc(), LoggedModel.id).offset(offset).limit(limit + 1))
    )
    more = len(rows) > limit
    return rows[:limit], encode_cursor(offset + limit) if more else None
