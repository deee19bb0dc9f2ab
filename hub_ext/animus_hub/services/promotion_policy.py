"""Promotion policy as code: a per-project YAML document, versioned, checked against a JSON Schema.

Each PUT stores a new immutable version (``PromotionPolicy``); the newest is in force.
A project without a policy uses ``DEFAULT_SPEC`` (reported as policy version ``None``).
``evaluate_checks`` measures a version's run against a transition's metric thresholds
and lineage requirements; who may request and approve is decided in services.models.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import math
from functools import lru_cache
from typing import Any

import jsonschema
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import AnimusError
from ..orm import (
    Dataset,
    DatasetVersion,
    Environment,
    EnvironmentVersion,
    LatestMetric,
    Project,
    PromotionPolicy,
    Run,
    RunInput,
    RunJob,
    utcnow,
)
from . import environments as env_svc
from .projects import iso

MAX_POLICY_BYTES = 64 * 1024
SCHEMA_FILE = "promotion-policy.schema.json"

# what a project without a policy gets: DESIGN.md §6 (approval needs maintainer, not the requester)
DEFAULT_SPEC: dict[str, Any] = {
    "version": 1,
    "transitions": {
        "validated": {"roles": ["contributor", "maintainer", "owner"], "approvers": 0},
        "approved": {
            "roles": ["contributor", "maintainer", "owner"],
            "approvers": 1,
            "approver_roles": ["maintainer", "owner"],
            "four_eyes": True,
        },
        "deprecated": {"roles": ["maintainer", "owner"], "approvers": 0},
        "draft": {"roles": ["maintainer", "owner"], "approvers": 0},
    },
}
TRANSITION_DEFAULTS: dict[str, Any] = {"approvers": 0, "four_eyes": True, "metrics": [], "lineage": {}}


@lru_cache(maxsize=1)
def policy_schema() -> dict[str, Any]:
    """The JSON Schema shipped in the package (``animus_hub/promotion-policy.schema.json``)."""
    return json.loads(importlib.resources.files("animus_hub").joinpath(SCHEMA_FILE).read_text())


def _mark_of(root: yaml.Node | None, path: list[Any]) -> yaml.Mark | None:
    """The position in the YAML source of the value at `path` (or of its nearest parent)."""
    node, mark = root, root.start_mark if root is not None else None
    for part in path:
        nxt = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    nxt = value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            nxt = node.value[part]
        if nxt is None:
            break
        node, mark = nxt, nxt.start_mark
    return mark


def parse_policy(source: str) -> dict[str, Any]:
    """The policy `source` as a dict, or a 422 naming the line and column of the problem."""
    if len(source.encode()) > MAX_POLICY_BYTES:
        raise AnimusError(413, "policy_too_large", f"A policy is at most {MAX_POLICY_BYTES} bytes")
    try:
        data = yaml.safe_load(source)
        root = yaml.compose(source, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        problem = " ".join(p for p in (e.context, e.problem) if p)
        raise AnimusError(
            422,
            "policy_unparsable",
            f"The policy is not valid YAML at line {line} column {column}: {problem}",
            {"line": line, "column": column, "problem": problem},
        ) from None
    except yaml.YAMLError as e:
        raise AnimusError(422, "policy_unparsable", f"The policy is not valid YAML: {e}", {}) from None
    if not isinstance(data, dict):
        raise AnimusError(
            422,
            "policy_invalid",
            "A policy is a YAML mapping with 'version' and 'transitions'",
            {"line": 1, "column": 1},
        )
    validator = jsonschema.Draft202012Validator(policy_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: (list(e.absolute_path), e.message))
    if errors:
        items = []
        for err in errors[:20]:
            path = list(err.absolute_path)
            mark = _mark_of(root, path)
            items.append(
                {
                    "path": "/".join(str(p) for p in path) or "(document)",
                    "message": err.message,
                    "line": mark.line + 1 if mark is not None else None,
                    "column": mark.column + 1 if mark is not None else None,
                }
            )
        first = items[0]
        raise AnimusError(
            422,
            "policy_invalid",
            f"The policy does not follow the schema at line {first['line']} column {first['column']} "
            f"({first['path']}): {first['message']}",
            {"errors": items, "line": first["line"], "column": first["column"]},
        )
    for name, t in data["transitions"].items():
        if t.get("approvers", 0) > 0 and "approver_roles" not in t:
            mark = _mark_of(root, ["transitions", name])
            raise AnimusError(
                422,
                "policy_invalid",
                f"transitions/{name}: 'approvers' needs 'approver_roles' (who may approve)",
                {"line": mark.line + 1 if mark else None, "column": mark.column + 1 if mark else None},
            )
    return data


def effective_spec(spec: dict[str, Any] | None) -> dict[str, Any]:
    """The transitions of `spec` with the defaults filled in (unlisted transitions: built-in)."""
    transitions = {}
    listed = (spec or DEFAULT_SPEC)["transitions"]
    for status in ("validated", "approved", "deprecated", "draft"):
        base = listed.get(status, DEFAULT_SPEC["transitions"][status])
        transitions[status] = {**TRANSITION_DEFAULTS, **base}
    return {"version": 1, "transitions": transitions}


def current_policy(session: Session, project: Project) -> PromotionPolicy | None:
    return session.scalar(
        select(PromotionPolicy)
        .where(PromotionPolicy.project_id == project.id)
        .order_by(PromotionPolicy.version.desc())
        .limit(1)
    )


def find_policy_version(session: Session, project: Project, version: str) -> PromotionPolicy:
    if not version.isdigit():
        raise AnimusError(404, "policy_version_not_found", f"Policy version {version!r} not found")
    p = session.scalar(
        select(PromotionPolicy).where(PromotionPolicy.project_id == project.id, PromotionPolicy.version == int(version))
    )
    if p is None:
        raise AnimusError(404, "policy_version_not_found", f"Policy version {version!r} not found")
    return p


def put_policy(session: Session, project: Project, source: str, comment: str, by: str) -> PromotionPolicy:
    spec = parse_policy(source)
    latest = current_policy(session, project)
    p = PromotionPolicy(
        project_id=project.id,
        version=(latest.version + 1) if latest is not None else 1,
        source=source,
        spec=spec,
        digest="sha256:" + hashlib.sha256(source.encode()).hexdigest(),
        comment=comment[:4000],
        created_at=utcnow(),
        created_by=by,
    )
    session.add(p)
    session.flush()
    return p


def policy_json(p: PromotionPolicy | None, with_source: bool = True) -> dict[str, Any]:
    if p is None:
        return {
            "version": None,
            "builtin": True,
            "source": yaml.safe_dump(DEFAULT_SPEC, sort_keys=False) if with_source else None,
            "effective": effective_spec(None),
            "digest": None,
            "comment": "built-in default (no policy stored for this project)",
            "created_at": None,
            "created_by": None,
        }
    return {
        "version": p.version,
        "builtin": False,
        "source": p.source if with_source else None,
        "effective": effective_spec(p.spec),
        "digest": p.digest,
        "comment": p.comment,
        "created_at": iso(p.created_at),
        "created_by": p.created_by,
    }


def list_policies(session: Session, project: Project) -> list[PromotionPolicy]:
    return list(
        session.scalars(
            select(PromotionPolicy).where(PromotionPolicy.project_id == project.id).order_by(PromotionPolicy.version)
        )
    )


# --- checks ------------------------------------------------------------------------------------


def environment_of(session: Session, run: Run) -> tuple[dict[str, Any] | None, str]:
    """(the run's environment version, why it is not pinned — "" when it is).

    Only batch runs record an environment version (``RunJob.environment_version_id``);
    it is pinned when its image names a digest (``@sha256:``) and it has a lock file.
    """
    row = session.execute(
        select(EnvironmentVersion, Environment.name)
        .join(RunJob, RunJob.environment_version_id == EnvironmentVersion.id)
        .join(Environment, Environment.id == EnvironmentVersion.environment_id)
        .where(RunJob.run_id == run.id)
    ).first()
    if row is None:
        if session.scalar(select(RunJob.run_id).where(RunJob.run_id == run.id)) is None:
            return None, (
                f"Run {run.id} records no environment version: it is not a batch run (kind {run.kind!r}); "
                "submit a batch run on a pinned environment"
            )
        return None, f"Run {run.id} records no environment version (it was deleted, or none was given)"
    v, name = row
    env = {
        "environment": name,
        "version": v.version,
        "ref": f"{name}:{v.version}",
        "image": v.image,
        "image_pinned": env_svc.image_is_pinned(v.image),
        "lock_digest": v.lock_digest or None,
    }
    missing = [
        what
        for what, ok in (("an image digest (@sha256:...)", env["image_pinned"]), ("a lock file", bool(v.lock_digest)))
        if not ok
    ]
    if missing:
        return env, f"Run {run.id} used environment {name}:{v.version}, which lacks {' and '.join(missing)}"
    return env, ""


def environment_pin(session: Session, run: Run) -> dict[str, Any] | None:
    """The environment version a run used, if it is pinned by image digest and lock-file digest."""
    env, why = environment_of(session, run)
    return env if env is not None and not why else None


def _consumed(session: Session, run: Run, dataset: str, version: int) -> DatasetVersion | None:
    return session.scalar(
        select(DatasetVersion)
        .join(RunInput, RunInput.dataset_version_id == DatasetVersion.id)
        .join(Dataset, DatasetVersion.dataset_id == Dataset.id)
        .where(RunInput.run_id == run.id, Dataset.name == dataset, DatasetVersion.version == version)
        .limit(1)
    )


def evaluate_checks(session: Session, run: Run | None, transition: dict[str, Any]) -> list[dict[str, Any]]:
    """Each metric threshold and lineage requirement of `transition`, measured on `run`.

    Every result is ``{check, ok, message, ...evidence}``; all are evaluated (not only
    up to the first failure) so the refusal explains everything at once.
    """
    results: list[dict[str, Any]] = []
    thresholds = transition.get("metrics") or []
    lineage = transition.get("lineage") or {}
    if (thresholds or lineage) and run is None:
        return [{"check": "run", "ok": False, "message": "The version has no run (it was deleted): nothing to measure"}]
    if run is None:
        return results
    latest = {m.key: m for m in session.scalars(select(LatestMetric).where(LatestMetric.run_id == run.id))}
    for t in thresholds:
        name, ds, dsv = t["metric"], t["dataset"], t["dataset_version"]
        bound = " and ".join(
            part for part in (f">= {t['min']}" if "min" in t else "", f"<= {t['max']}" if "max" in t else "") if part
        )
        result: dict[str, Any] = {
            "check": "metric",
            "metric": name,
            "dataset": ds,
            "dataset_version": dsv,
            "min": t.get("min"),
            "max": t.get("max"),
            "value": None,
        }
        consumed = _consumed(session, run, ds, dsv)
        m = latest.get(name)
        if consumed is None:
            result.update(
                ok=False,
                message=f"Run {run.id} did not consume dataset {ds!r} version {dsv}, so {name!r} was not measured on it",
            )
        elif m is None:
            result.update(
                ok=False,
                message=f"Run {run.id} has no metric {name!r}: the policy needs {name} {bound} on {ds} v{dsv}",
            )
        elif m.is_nan or math.isnan(m.value):
            result.update(ok=False, value="NaN", message=f"Metric {name!r} of run {run.id} is NaN")
        else:
            ok = ("min" not in t or m.value >= t["min"]) and ("max" not in t or m.value <= t["max"])
            result.update(
                ok=ok,
                value=m.value,
                message=f"{name} = {m.value} on {ds} v{dsv} ({'meets' if ok else 'fails'} {bound})",
            )
        results.append(result)
    if lineage.get("commit_sha"):
        ok = bool(run.commit_sha) and len(run.commit_sha) == 40
        results.append(
            {
                "check": "commit_sha",
                "ok": ok,
                "commit_sha": run.commit_sha,
                "repo_url": run.repo_url,
                "message": f"run {run.id} ran commit {run.commit_sha}" if ok else f"Run {run.id} records no commit SHA",
            }
        )
    if lineage.get("run_kinds"):
        kinds = lineage["run_kinds"]
        ok = run.kind in kinds
        results.append(
            {
                "check": "run_kind",
                "ok": ok,
                "run_kind": run.kind,
                "message": f"run {run.id} is a {run.kind} run"
                + ("" if ok else f"; the policy needs one of {', '.join(kinds)}"),
            }
        )
    if lineage.get("pinned_environment"):
        env, why = environment_of(session, run)
        results.append(
            {
                "check": "pinned_environment",
                "ok": not why,
                "environment": env,
                "message": why
                or f"run {run.id} used environment {env['ref']} ({env['image']}, lock file {env['lock_digest']})",
            }
        )
    return results
