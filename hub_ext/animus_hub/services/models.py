"""The model registry: models, versions made from run artifacts, aliases, and promotion.

Statuses move draft → validated → approved → deprecated (and validated → draft), one
step at a time, only through ``request_transition`` and ``approve``, which apply the
project's promotion policy (services.promotion_policy). Every step, refusal of a
check, approval, break-glass override and export is appended to the promotion
history (``PromotionEvent``, append-only in the database). Each status change
records ``ModelVersionStatusChanged`` (and ``ModelApproved``) in the outbox in the
same transaction.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..auth.principal import Principal
from ..errors import AnimusError
from ..events import record_event
from ..orm import (
    MODEL_STATUSES,
    Artifact,
    LatestMetric,
    Model,
    ModelAlias,
    ModelApproval,
    ModelVersion,
    Project,
    PromotionEvent,
    PromotionRequest,
    Role,
    Run,
    utcnow,
)
from ..storage.base import ObjectInfo, ObjectStore
from . import promotion_policy as policy_svc
from . import tracking as tracking_svc
from .blobs import blob_key
from .pagination import page
from .projects import iso
from .tracking import epoch_ms, json_float

MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
MAX_VERSION_FILES = 10_000
MAX_MLMODEL_BYTES = 1024 * 1024
# the only moves: one step forward, or a validated version back to draft
TRANSITIONS = {("draft", "validated"), ("validated", "approved"), ("approved", "deprecated"), ("validated", "draft")}
NEXT = {"draft": "validated", "validated": "approved", "approved": "deprecated"}


def _canonical_digest(files: list[dict[str, Any]]) -> str:
    text = json.dumps(sorted(files, key=lambda f: f["path"]), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# --- models --------------------------------------------------------------------------------


def validate_model_name(name: str) -> str:
    if not isinstance(name, str) or not MODEL_NAME_RE.match(name):
        raise AnimusError(
            422,
            "invalid_model_name",
            "A model name is 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit",
            {"name": str(name)[:200]},
        )
    return name


def model_json(session: Session, m: Model, latest: ModelVersion | None = None) -> dict[str, Any]:
    counts = dict(
        session.execute(
            select(ModelVersion.status, func.count()).where(ModelVersion.model_id == m.id).group_by(ModelVersion.status)
        ).all()
    )
    aliases = {
        a: v
        for a, v in session.execute(
            select(ModelAlias.alias, ModelVersion.version)
            .join(ModelVersion, ModelAlias.version_id == ModelVersion.id)
            .where(ModelAlias.model_id == m.id)
        ).all()
    }
    return {
        "name": m.name,
        "description": m.description,
        "tags": m.tags or {},
        "aliases": aliases,
        "versions": sum(counts.values()),
        "versions_by_status": {s: counts.get(s, 0) for s in MODEL_STATUSES},
        "created_at": iso(m.created_at),
        "created_by": m.created_by,
        "updated_at": iso(m.updated_at),
    }


def find_model(session: Session, project: Project, name: str) -> Model:
    m = session.scalar(select(Model).where(Model.project_id == project.id, Model.name == name))
    if m is None:
        raise AnimusError(404, "model_not_found", f"Model {name!r} not found in project {project.slug!r}")
    return m


def create_model(
    session: Session, project: Project, name: str, description: str, tags: dict[str, str], by: str
) -> Model:
    validate_model_name(name)
    if session.scalar(select(Model.id).where(Model.project_id == project.id, Model.name == name)) is not None:
        raise AnimusError(409, "model_exists", f"Model {name!r} already exists in project {project.slug!r}")
    now = utcnow()
    m = Model(
        project_id=project.id,
        name=name,
        description=description,
        tags=tags,
        created_at=now,
        created_by=by,
        updated_at=now,
    )
    session.add(m)
    session.flush()
    return m


def update_model(m: Model, description: str | None, tags: dict[str, str] | None) -> dict[str, Any]:
    """Change the description and/or replace the tags; returns what changed ({} if nothing)."""
    changes: dict[str, Any] = {}
    if description is not None and description != m.description:
        changes["description"] = "changed"
        m.description = description
    if tags is not None and tags != (m.tags or {}):
        changes["tags"] = {"from": m.tags or {}, "to": tags}
        m.tags = dict(tags)
    if changes:
        m.updated_at = utcnow()
    return changes


def list_models(session: Session, project: Project, limit: int, cursor: str | None):
    return page(session, select(Model).where(Model.project_id == project.id), Model.id, limit, cursor)


# --- versions ------------------------------------------------------------------------------


@dataclass
class VersionSource:
    run: Run
    path: str
    kind: str  # file, directory, mlflow_model
    files: list[dict[str, Any]]
    mlmodel_sha256: str | None


def find_source_run(session: Session, project: Project, run_id: str) -> Run:
    run = session.scalar(select(Run).where(Run.project_id == project.id, Run.id == run_id))
    if run is None:
        raise AnimusError(404, "run_not_found", f"Run {run_id!r} not found in project {project.slug!r}")
    if run.lifecycle_stage != "active":
        raise AnimusError(409, "run_deleted", f"Run {run.id} is deleted; restore it first")
    return run


def artifact_not_found(run: Run, path: str) -> AnimusError:
    return AnimusError(
        404,
        "artifact_not_found",
        f"Run {run.id} has no artifact file or directory {path!r} (log it with run.log_artifact(s), "
        "or with MLflow, first)",
        {"run_id": run.id, "path": path},
    )


def resolve_source(session: Session, project: Project, run_id: str, path: str) -> VersionSource:
    """The run's artifact(s) at `path`: one file, or every file under a directory.

    A directory holding an ``MLmodel`` file is an MLflow model directory. Only files
    logged through Animus (content-addressed) are found here; see `resolve_mlflow_source`.
    """
    source = find_animus_source(session, find_source_run(session, project, run_id), path)
    if source is None:
        raise artifact_not_found(session.get(Run, run_id), path.strip("/"))
    return source


def find_animus_source(session: Session, run: Run, path: str) -> VersionSource | None:
    """The run's content-addressed artifact(s) at `path`, or None if it logged none there."""
    path = path.strip("/")
    exact = session.scalar(select(Artifact).where(Artifact.run_id == run.id, Artifact.path == path)) if path else None
    if exact is not None:
        files = [
            {"path": exact.path.rsplit("/", 1)[-1], "sha256": exact.digest.removeprefix("sha256:"), "size": exact.size}
        ]
        return VersionSource(run, path, "file", files, None)
    stmt = select(Artifact).where(Artifact.run_id == run.id)
    if path:
        like = path.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"
        stmt = stmt.where(Artifact.path.like(like, escape="\\"))
    rows = list(session.scalars(stmt.order_by(Artifact.path).limit(MAX_VERSION_FILES + 1)))
    if not rows:
        return None
    if len(rows) > MAX_VERSION_FILES:
        raise AnimusError(422, "too_many_files", f"A model version holds at most {MAX_VERSION_FILES} files")
    cut = len(path) + 1 if path else 0
    files = [{"path": a.path[cut:], "sha256": a.digest.removeprefix("sha256:"), "size": a.size} for a in rows]
    mlmodel = next((f["sha256"] for f in files if f["path"] == "MLmodel"), None)
    return VersionSource(run, path, "mlflow_model" if mlmodel else "directory", files, mlmodel)


async def resolve_mlflow_source(session: Session, store: ObjectStore, run: Run, path: str) -> VersionSource | None:
    """Files MLflow clients wrote for `run` at `path` (``mlflow.log_model``, autolog), made content-addressed.

    MLflow stores files by path: under the run's artifact directory, and for MLflow 3
    logged models under ``logged-models/<model id>/`` (as the run's artifact listing shows
    them). Each file is hashed once (the store's checksum when it has one) and copied
    inside the store to the project's blob space under its sha256, so the version
    references its files by digest like any other; the MLflow files stay as they are.
    Returns None when MLflow wrote nothing at `path`.
    """
    path = path.strip("/")
    places = sorted(tracking_svc.mlflow_file_keys(session, run), key=lambda p: p[1] == "")
    found: list[tuple[str, ObjectInfo]] = []
    for prefix, shown in places:
        if shown:
            if path != shown.rstrip("/") and not path.startswith(shown):
                continue
            rel = path[len(shown) :] if path.startswith(shown) else ""
        else:
            rel = path
        base = f"{prefix}/{rel}" if rel else prefix
        info = await store.head(base) if rel else None
        if info is not None:
            found = [(rel.rsplit("/", 1)[-1], info)]
            break
        after = ""
        while len(found) <= MAX_VERSION_FILES:
            batch = await store.list(base + "/", limit=1000, start_after=after)
            found += [(o.key[len(base) + 1 :], o) for o in batch]
            if len(batch) < 1000:
                break
            after = batch[-1].key
        if found:
            break
    if not found:
        return None
    if len(found) > MAX_VERSION_FILES:
        raise AnimusError(422, "too_many_files", f"A model version holds at most {MAX_VERSION_FILES} files")
    files: list[dict[str, Any]] = []
    for name, info in sorted(found, key=lambda f: f[0]):
        sha = await store.sha256(info.key)
        if sha is None:
            raise AnimusError(409, "artifact_changed", f"{name!r} disappeared while it was registered; try again")
        blob = blob_key(run.project_id, sha)
        if not await store.exists(blob):
            await store.copy(info.key, blob)
        files.append({"path": name, "sha256": sha, "size": info.size})
    single = len(found) == 1 and found[0][1].key == f"{prefix}/{rel}"
    mlmodel = next((f["sha256"] for f in files if f["path"] == "MLmodel"), None)
    kind = "file" if single else ("mlflow_model" if mlmodel else "directory")
    return VersionSource(run, path, kind, files, mlmodel if kind == "mlflow_model" else None)


def parse_mlmodel(text: bytes) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    """(framework, flavors, signature) from an MLflow ``MLmodel`` file; 422 when it is not one."""
    try:
        doc = yaml.safe_load(text.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as e:
        raise AnimusError(422, "invalid_mlmodel", f"The MLmodel file is not valid YAML: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("flavors"), dict):
        raise AnimusError(422, "invalid_mlmodel", "The MLmodel file has no 'flavors' mapping")
    flavors = {str(k): v for k, v in doc["flavors"].items()}
    framework = next((k for k in flavors if k != "python_function"), "python_function" if flavors else "")
    signature = None
    raw = doc.get("signature")
    if isinstance(raw, dict):
        signature = {}
        for part in ("inputs", "outputs", "params"):
            value = raw.get(part)
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    pass
            if value is not None:
                signature[part] = value
    return framework, json.loads(json.dumps(flavors, default=str)), signature


def metrics_snapshot(session: Session, run: Run) -> dict[str, Any]:
    return {
        m.key: {"value": json_float(m.value, m.is_nan), "step": m.step, "timestamp": m.timestamp}
        for m in session.scalars(select(LatestMetric).where(LatestMetric.run_id == run.id))
    }


def create_version(
    session: Session,
    project: Project,
    model: Model,
    source: VersionSource,
    *,
    framework: str,
    flavors: dict[str, Any],
    signature: dict[str, Any] | None,
    description: str,
    tags: dict[str, str],
    aliases: list[str],
    by: str,
) -> ModelVersion:
    latest = session.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id)) or 0
    now = utcnow()
    v = ModelVersion(
        model_id=model.id,
        version=latest + 1,
        run_id=source.run.id,
        status="draft",
        source_kind=source.kind,
        source_path=source.path,
        framework=framework,
        flavors=flavors,
        signature=signature,
        metrics=metrics_snapshot(session, source.run),
        tags=tags,
        files=source.files,
        digest=_canonical_digest(source.files),
        total_size=sum(f["size"] for f in source.files),
        description=description,
        status_changed_at=now,
        status_changed_by=by,
        created_at=now,
        created_by=by,
    )
    session.add(v)
    model.updated_at = now
    session.flush()
    for alias in aliases:
        set_alias(session, model, alias, v, by)
    return v


def find_version(session: Session, model: Model, version: str) -> ModelVersion:
    """A version by number, or by alias (``@champion`` or ``champion``)."""
    if version.isdigit():
        v = session.scalar(
            select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.version == int(version))
        )
    else:
        v = session.scalar(
            select(ModelVersion)
            .join(ModelAlias, ModelAlias.version_id == ModelVersion.id)
            .where(ModelAlias.model_id == model.id, ModelAlias.alias == version.removeprefix("@"))
        )
    if v is None:
        raise AnimusError(404, "model_version_not_found", f"Model {model.name!r} has no version {version!r}")
    return v


def list_versions(session: Session, model: Model, limit: int, cursor: str | None, status: str | None):
    stmt = select(ModelVersion).where(ModelVersion.model_id == model.id)
    if status is not None:
        if status not in MODEL_STATUSES:
            raise AnimusError(400, "invalid_argument", f"status must be one of {', '.join(MODEL_STATUSES)}")
        stmt = stmt.where(ModelVersion.status == status)
    return page(session, stmt, ModelVersion.id, limit, cursor)


def open_request(session: Session, v: ModelVersion) -> PromotionRequest | None:
    return session.scalar(
        select(PromotionRequest).where(PromotionRequest.model_version_id == v.id, PromotionRequest.state == "open")
    )


def request_json(session: Session, r: PromotionRequest) -> dict[str, Any]:
    approvals = list(
        session.scalars(select(ModelApproval).where(ModelApproval.request_id == r.id).order_by(ModelApproval.id))
    )
    return {
        "id": r.id,
        "from_status": r.from_status,
        "to_status": r.to_status,
        "requested_by": r.requested_by,
        "requested_at": iso(r.requested_at),
        "reason": r.reason,
        "policy_version": r.policy_version,
        "required_approvals": r.required_approvals,
        "approvals": [
            {"by": a.approver, "role": a.approver_role, "reason": a.reason, "at": iso(a.created_at)} for a in approvals
        ],
        "state": r.state,
        "closed_at": iso(r.closed_at),
    }


def version_json(session: Session, model: Model, v: ModelVersion) -> dict[str, Any]:
    aliases = list(
        session.scalars(select(ModelAlias.alias).where(ModelAlias.version_id == v.id).order_by(ModelAlias.alias))
    )
    req = open_request(session, v)
    return {
        "model": model.name,
        "version": v.version,
        "status": v.status,
        "status_reason": v.status_reason,
        "status_changed_at": iso(v.status_changed_at),
        "status_changed_by": v.status_changed_by,
        "run_id": v.run_id,
        "source": {"kind": v.source_kind, "path": v.source_path},
        "framework": v.framework,
        "flavors": v.flavors or {},
        "signature": v.signature,
        "metrics": v.metrics or {},
        "tags": v.tags or {},
        "aliases": aliases,
        "files": v.files or [],
        "digest": v.digest,
        "total_size": v.total_size,
        "description": v.description,
        "pending_request": request_json(session, req) if req is not None else None,
        "created_at": iso(v.created_at),
        "created_by": v.created_by,
    }


def set_alias(session: Session, model: Model, alias: str, v: ModelVersion, by: str) -> int | None:
    """Point `alias` at `v`; returns the version it pointed at before (None if new)."""
    if not isinstance(alias, str) or not ALIAS_RE.match(alias) or alias.isdigit():
        raise AnimusError(
            422,
            "invalid_alias",
            "An alias is 1-64 of a-z, 0-9, '_' or '-', starting with a letter",
            {"alias": str(alias)[:100]},
        )
    row = session.get(ModelAlias, (model.id, alias))
    before = None
    if row is None:
        session.add(ModelAlias(model_id=model.id, alias=alias, version_id=v.id, updated_at=utcnow(), updated_by=by))
    else:
        before = session.scalar(select(ModelVersion.version).where(ModelVersion.id == row.version_id))
        row.version_id, row.updated_at, row.updated_by = v.id, utcnow(), by
    session.flush()
    return before


def delete_alias(session: Session, model: Model, alias: str) -> int:
    row = session.get(ModelAlias, (model.id, alias))
    if row is None:
        raise AnimusError(404, "alias_not_found", f"Model {model.name!r} has no alias {alias!r}")
    version = session.scalar(select(ModelVersion.version).where(ModelVersion.id == row.version_id))
    session.delete(row)
    return version


# --- promotion -----------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a transition request or an approval did."""

    status: str  # "transitioned", "pending", "refused"
    version: ModelVersion
    request: PromotionRequest | None = None
    checks: list[dict[str, Any]] | None = None
    policy_version: int | None = None
    event: PromotionEvent | None = None


def _history(
    session: Session,
    project: Project,
    model: Model,
    v: ModelVersion,
    kind: str,
    principal: Principal,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    reason: str = "",
    evidence: dict[str, Any] | None = None,
    policy_version: int | None = None,
    break_glass: bool = False,
    request: PromotionRequest | None = None,
) -> PromotionEvent:
    e = PromotionEvent(
        project_id=project.id,
        model_id=model.id,
        model_version_id=v.id,
        kind=kind,
        from_status=from_status,
        to_status=to_status,
        actor=principal.name,
        actor_kind=principal.kind,
        reason=reason,
        evidence=evidence or {},
        policy_version=policy_version,
        break_glass=break_glass,
        request_id=request.id if request is not None else None,
        created_at=utcnow(),
    )
    session.add(e)
    session.flush()
    return e


def _move(
    session: Session,
    project: Project,
    model: Model,
    v: ModelVersion,
    to: str,
    principal: Principal,
    reason: str,
    evidence: dict[str, Any],
    policy_version: int | None,
    break_glass: bool = False,
    request: PromotionRequest | None = None,
) -> PromotionEvent:
    before = v.status
    now = utcnow()
    v.status, v.status_reason, v.status_changed_at, v.status_changed_by = to, reason, now, principal.name
    event = _history(
        session,
        project,
        model,
        v,
        "override" if break_glass else "transition",
        principal,
        from_status=before,
        to_status=to,
        reason=reason,
        evidence=evidence,
        policy_version=policy_version,
        break_glass=break_glass,
        request=request,
    )
    common = {"model": model.name, "version": v.version, "by": principal.name, "reason": reason}
    extra = {"policy_version": policy_version, "break_glass": break_glass, "digest": v.digest}
    record_event(
        session,
        "ModelVersionStatusChanged",
        {**common, "from_status": before, "to_status": to, "run_id": v.run_id, **extra},
        project,
    )
    if to == "approved":
        approvers = []
        if request is not None:
            approvers = list(
                session.scalars(select(ModelApproval.approver).where(ModelApproval.request_id == request.id))
            )
        record_event(
            session,
            "ModelApproved",
            {
                **common,
                "run_id": v.run_id,
                "requested_by": request.requested_by if request else principal.name,
                "approvers": approvers,
                **extra,
            },
            project,
        )
    if request is not None:
        request.state, request.closed_at = "completed", now
    return event


def _check_transition(v: ModelVersion, to: str) -> None:
    if to not in MODEL_STATUSES:
        raise AnimusError(422, "invalid_status", f"Unknown status {to!r}; statuses: {', '.join(MODEL_STATUSES)}")
    if (v.status, to) not in TRANSITIONS:
        allowed = sorted(t for f, t in TRANSITIONS if f == v.status)
        hint = f"; from {v.status} it can go to {', '.join(allowed)}" if allowed else f"; {v.status} is final"
        raise AnimusError(
            409,
            "invalid_transition",
            f"Version {v.version} is {v.status}: it cannot move to {to} (statuses change one step at a time{hint})",
            {"from_status": v.status, "to_status": to, "allowed": allowed},
        )


def _role_allowed(role: Role | None, allowed: list[str]) -> bool:
    return role is not None and role.name in allowed


def transition_refusal(
    session: Session, v: ModelVersion, to: str, spec: dict[str, Any], policy_version: int | None, role: Role | None
) -> AnimusError | None:
    """Why the policy refuses a request to move `v` to `to` by someone with `role`, or None.

    The one rule for both requesting a transition and explaining it (``actions``);
    the policy's metric and lineage checks are measured separately.
    """
    if not _role_allowed(role, spec["roles"]):
        return AnimusError(
            403,
            "policy_forbids",
            f"The promotion policy (version {policy_version or 'built-in'}) lets {', '.join(spec['roles'])} move versions "
            f"to {to}; your role is {role.name if role else 'none'}",
            {"policy_version": policy_version, "roles": spec["roles"], "role": role.name if role else None},
        )
    if open_request(session, v) is not None:
        return AnimusError(
            409,
            "request_pending",
            f"Version {v.version} already has an open request; approve it or wait for it to close",
        )
    return None


def approval_refusal(
    session: Session,
    req: PromotionRequest,
    spec: dict[str, Any],
    policy_version: int | None,
    principal: Principal,
    role: Role | None,
) -> AnimusError | None:
    """Why the policy refuses `principal`'s approval of the open request `req`, or None."""
    if spec["four_eyes"] and principal.name == req.requested_by:
        return AnimusError(
            403,
            "four_eyes",
            "You requested this promotion; the policy (four eyes) needs someone else to approve it",
            {"requested_by": req.requested_by},
        )
    allowed = spec.get("approver_roles") or ["maintainer", "owner"]
    if not _role_allowed(role, allowed) or principal.kind != "user":
        return AnimusError(
            403,
            "policy_forbids",
            f"The promotion policy (version {policy_version or 'built-in'}) counts approvals of people with role "
            f"{', '.join(allowed)}; yours is {role.name if role else 'none'}"
            + ("" if principal.kind == "user" else " (and tokens cannot approve)"),
            {"policy_version": policy_version, "approver_roles": allowed},
        )
    if session.scalar(
        select(ModelApproval.id).where(ModelApproval.request_id == req.id, ModelApproval.approver == principal.name)
    ):
        return AnimusError(409, "already_approved", "You already approved this request; another person must approve")
    return None


def _verdict(action: str, refusal: AnimusError | None, **extra: Any) -> dict[str, Any]:
    return {
        "action": action,
        "allowed": refusal is None,
        "code": refusal.reason if refusal is not None else None,
        "reason": refusal.message if refusal is not None else None,
        **extra,
    }


def actions(
    session: Session, project: Project, model: Model, v: ModelVersion, principal: Principal, role: Role | None
) -> dict[str, Any]:
    """What the caller may do with `v` now under the policy in force, each refusal explained.

    One entry per transition the version's status allows (the role rule, an open
    request, then the policy's checks measured on the version's run) and, when a
    request is open, one for approving it. Read-only: nothing is recorded.
    """
    policy = policy_svc.current_policy(session, project)
    policy_version = policy.version if policy is not None else None
    specs = policy_svc.effective_spec(policy.spec if policy is not None else None)["transitions"]
    run = session.get(Run, v.run_id) if v.run_id else None
    out: list[dict[str, Any]] = []
    for to in sorted(t for f, t in TRANSITIONS if f == v.status):
        spec = specs[to]
        refusal = transition_refusal(session, v, to, spec, policy_version, role)
        checks: list[dict[str, Any]] = []
        if refusal is None:
            checks = policy_svc.evaluate_checks(session, run, spec)
            failed = [c["message"] for c in checks if not c["ok"]]
            if failed:
                refusal = AnimusError(422, "policy_check_failed", "; ".join(failed))
        out.append(
            _verdict(
                "transition",
                refusal,
                to=to,
                approvals_required=spec["approvers"],
                reason_required=to in ("draft", "deprecated"),
                checks=checks,
            )
        )
    req = open_request(session, v)
    if req is not None:
        refusal = approval_refusal(session, req, specs[req.to_status], policy_version, principal, role)
        out.append(_verdict("approve", refusal, to=req.to_status, requested_by=req.requested_by))
    return {
        "model": model.name,
        "version": v.version,
        "status": v.status,
        "policy_version": policy_version,
        "pending_request": request_json(session, req) if req is not None else None,
        "actions": out,
    }


def request_transition(
    session: Session,
    project: Project,
    model: Model,
    v: ModelVersion,
    to: str,
    reason: str,
    principal: Principal,
    role: Role | None,
    override: bool = False,
) -> Outcome:
    """Move `v` to `to` as the policy in force allows, or open a request for approvals.

    A failed check answers `refused` with the checks (the caller commits the record of
    it and answers 422); a failed validation leaves the version in draft with the reason.
    """
    _check_transition(v, to)
    if not reason.strip() and (override or to in ("draft", "deprecated")):
        raise AnimusError(
            422,
            "reason_required",
            f"Give a reason to move a version to {to}" + (" with break-glass" if override else ""),
        )
    policy = policy_svc.current_policy(session, project)
    policy_version = policy.version if policy is not None else None
    if override:
        if not principal.is_admin:
            raise AnimusError(403, "break_glass_forbidden", "Only platform admins may use the break-glass override")
        req = open_request(session, v)
        if req is not None:
            req.state, req.closed_at = "cancelled", utcnow()
        event = _move(session, project, model, v, to, principal, reason, {"override": True}, policy_version, True, None)
        return Outcome("transitioned", v, None, [], policy_version, event)
    spec = policy_svc.effective_spec(policy.spec if policy is not None else None)["transitions"][to]
    refusal = transition_refusal(session, v, to, spec, policy_version, role)
    if refusal is not None:
        raise refusal
    run = session.get(Run, v.run_id) if v.run_id else None
    checks = policy_svc.evaluate_checks(session, run, spec)
    evidence = {"checks": checks, "required_approvals": spec["approvers"]}
    if not all(c["ok"] for c in checks):
        failed = "; ".join(c["message"] for c in checks if not c["ok"])
        if to == "validated":
            v.status_reason = f"validation failed: {failed}"
            event = _history(
                session,
                project,
                model,
                v,
                "validation_failed",
                principal,
                from_status=v.status,
                to_status="draft",
                reason=failed,
                evidence=evidence,
                policy_version=policy_version,
            )
        else:
            event = _history(
                session,
                project,
                model,
                v,
                "check_failed",
                principal,
                from_status=v.status,
                to_status=to,
                reason=failed,
                evidence=evidence,
                policy_version=policy_version,
            )
        return Outcome("refused", v, None, checks, policy_version, event)
    if spec["approvers"] <= 0:
        event = _move(session, project, model, v, to, principal, reason, evidence, policy_version)
        return Outcome("transitioned", v, None, checks, policy_version, event)
    req = PromotionRequest(
        model_version_id=v.id,
        from_status=v.status,
        to_status=to,
        requested_by=principal.name,
        requested_at=utcnow(),
        reason=reason,
        policy_version=policy_version,
        required_approvals=spec["approvers"],
        state="open",
    )
    session.add(req)
    session.flush()
    event = _history(
        session,
        project,
        model,
        v,
        "requested",
        principal,
        from_status=v.status,
        to_status=to,
        reason=reason,
        evidence=evidence,
        policy_version=policy_version,
        request=req,
    )
    return Outcome("pending", v, req, checks, policy_version, event)


def approve(
    session: Session,
    project: Project,
    model: Model,
    v: ModelVersion,
    reason: str,
    principal: Principal,
    role: Role | None,
) -> Outcome:
    """Record `principal`'s approval of the open request; the Nth distinct eligible one moves the version."""
    req = open_request(session, v)
    if req is None:
        raise AnimusError(
            409, "no_open_request", f"Version {v.version} has no open promotion request to approve (request one first)"
        )
    policy = policy_svc.current_policy(session, project)
    policy_version = policy.version if policy is not None else None
    spec = policy_svc.effective_spec(policy.spec if policy is not None else None)["transitions"][req.to_status]
    refusal = approval_refusal(session, req, spec, policy_version, principal, role)
    if refusal is not None:
        raise refusal
    session.add(
        ModelApproval(
            request_id=req.id, approver=principal.name, approver_role=role.name, reason=reason, created_at=utcnow()
        )
    )
    session.flush()
    count = session.scalar(select(func.count()).select_from(ModelApproval).where(ModelApproval.request_id == req.id))
    needed = max(spec["approvers"], 1)
    _history(
        session,
        project,
        model,
        v,
        "approval",
        principal,
        from_status=req.from_status,
        to_status=req.to_status,
        reason=reason,
        evidence={"approvals": count, "required_approvals": needed, "role": role.name},
        policy_version=policy_version,
        request=req,
    )
    if count < needed:
        req.required_approvals = needed
        return Outcome("pending", v, req, None, policy_version)
    # the checks are measured again when the version actually moves
    run = session.get(Run, v.run_id) if v.run_id else None
    checks = policy_svc.evaluate_checks(session, run, spec)
    if not all(c["ok"] for c in checks):
        failed = "; ".join(c["message"] for c in checks if not c["ok"])
        event = _history(
            session,
            project,
            model,
            v,
            "check_failed",
            principal,
            from_status=v.status,
            to_status=req.to_status,
            reason=failed,
            evidence={"checks": checks},
            policy_version=policy_version,
            request=req,
        )
        return Outcome("refused", v, req, checks, policy_version, event)
    approvers = list(session.scalars(select(ModelApproval.approver).where(ModelApproval.request_id == req.id)))
    event = _move(
        session,
        project,
        model,
        v,
        req.to_status,
        principal,
        req.reason or reason,
        {"checks": checks, "approvers": approvers, "requested_by": req.requested_by},
        policy_version,
        request=req,
    )
    return Outcome("transitioned", v, req, checks, policy_version, event)


def history_json(e: PromotionEvent, version: int | None = None) -> dict[str, Any]:
    body = {
        "id": e.id,
        "kind": e.kind,
        "from_status": e.from_status,
        "to_status": e.to_status,
        "by": e.actor,
        "by_kind": e.actor_kind,
        "at": iso(e.created_at),
        "reason": e.reason,
        "evidence": e.evidence or {},
        "policy_version": e.policy_version,
        "break_glass": e.break_glass,
        "request_id": e.request_id,
    }
    if version is not None:
        body["version"] = version
    return body


def history(
    session: Session, model: Model, v: ModelVersion | None, limit: int, cursor: str | None, kind: str | None = None
):
    stmt = select(PromotionEvent).where(PromotionEvent.model_id == model.id)
    if v is not None:
        stmt = stmt.where(PromotionEvent.model_version_id == v.id)
    if kind:
        stmt = stmt.where(PromotionEvent.kind == kind)
    rows, next_cursor = page(session, stmt, PromotionEvent.id, limit, cursor)
    numbers = dict(
        session.execute(select(ModelVersion.id, ModelVersion.version).where(ModelVersion.model_id == model.id)).all()
    )
    return [history_json(e, numbers.get(e.model_version_id)) for e in rows], next_cursor


def record_export(
    session: Session,
    project: Project,
    model: Model,
    v: ModelVersion,
    principal: Principal,
    role: Role | None,
    target: dict[str, Any],
    force: bool,
    reason: str,
) -> PromotionEvent:
    """Refuse the export of a version that is not approved unless a maintainer forces it with a reason."""
    if v.status != "approved":
        if not force:
            raise AnimusError(
                409,
                "version_not_approved",
                f"Version {v.version} is {v.status}; only approved versions are exported "
                "(a maintainer may force it with a reason)",
                {"status": v.status},
            )
        if role is None or role < Role.maintainer:
            raise AnimusError(
                403, "forbidden", "Forcing the export of a version that is not approved needs maintainer or above"
            )
        if not reason.strip():
            raise AnimusError(
                422, "reason_required", "Give a reason to force the export of a version that is not approved"
            )
    return _history(
        session,
        project,
        model,
        v,
        "export",
        principal,
        from_status=v.status,
        to_status=v.status,
        reason=reason,
        evidence={"target": target, "forced": bool(force and v.status != "approved")},
    )


def decisions(session: Session, v: ModelVersion) -> list[dict[str, Any]]:
    """The policy decisions of a version (its whole history but exports), for export bundles."""
    rows = session.scalars(
        select(PromotionEvent)
        .where(PromotionEvent.model_version_id == v.id, PromotionEvent.kind != "export")
        .order_by(PromotionEvent.id)
    )
    return [history_json(e) for e in rows]


def run_summary(session: Session, run: Run | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "id": run.id,
        "name": run.name,
        "kind": run.kind,
        "status": run.status,
        "start_time": epoch_ms(run.start_time),
        "end_time": epoch_ms(run.end_time),
        "code": {"repo_url": run.repo_url, "commit_sha": run.commit_sha, "diff_digest": run.diff_digest},
        "environment": policy_svc.environment_of(session, run)[0],
        "created_by": run.created_by,
    }
