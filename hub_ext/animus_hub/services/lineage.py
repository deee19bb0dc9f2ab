"""The lineage graph of a project: model versions, runs, code, environments, dataset versions.

Edges point the way data flows (upstream → downstream):

- ``code → run`` (the commit a run ran) and ``environment → run`` (seam: runs do not
  record an environment version yet, see promotion_policy.environment_pin);
- ``dataset_version → run`` (the run consumed it: run inputs linked to a version);
- ``run → dataset_version`` (the run produced it) and ``run → model_version``.

``graph()`` walks from one node upstream, downstream or both, up to `depth` hops;
"what depends on this dataset version" is ``graph(dataset_version, "downstream")``.
Restricted datasets the caller may not read appear as nodes without their name.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import AnimusError
from ..orm import Dataset, DatasetVersion, Model, ModelVersion, Project, Role, Run, RunInput
from .datasets import can_read
from .projects import iso

MAX_DEPTH = 10
MAX_NODES = 2000
DIRECTIONS = ("upstream", "downstream", "both")


class _Walker:
    def __init__(self, session: Session, project: Project, principal: Any, role: Role | None) -> None:
        self.session, self.project, self.principal, self.role = session, project, principal, role
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: set[tuple[str, str, str]] = set()
        self._readable: dict[int, bool] = {}

    # --- node descriptions -------------------------------------------------------------

    def _dataset_readable(self, ds: Dataset) -> bool:
        if ds.id not in self._readable:
            self._readable[ds.id] = can_read(self.session, ds, self.principal, self.role)
        return self._readable[ds.id]

    def run_node(self, run: Run) -> str:
        key = f"run:{run.id}"
        self.nodes.setdefault(
            key,
            {
                "id": key,
                "type": "run",
                "run_id": run.id,
                "name": run.name,
                "kind": run.kind,
                "status": run.status,
                "created_by": run.created_by,
            },
        )
        return key

    def dataset_version_node(self, dv: DatasetVersion, ds: Dataset) -> str:
        if not self._dataset_readable(ds):
            key = f"dataset_version:restricted-{dv.id}"
            self.nodes.setdefault(key, {"id": key, "type": "dataset_version", "restricted": True})
            return key
        key = f"dataset_version:{ds.name}/{dv.version}"
        self.nodes.setdefault(
            key,
            {
                "id": key,
                "type": "dataset_version",
                "dataset": ds.name,
                "version": dv.version,
                "digest": dv.digest,
                "state": dv.state,
                "restricted": False,
            },
        )
        return key

    def model_version_node(self, mv: ModelVersion, m: Model) -> str:
        key = f"model_version:{m.name}/{mv.version}"
        self.nodes.setdefault(
            key,
            {
                "id": key,
                "type": "model_version",
                "model": m.name,
                "version": mv.version,
                "status": mv.status,
                "digest": mv.digest,
                "created_at": iso(mv.created_at),
            },
        )
        return key

    def code_node(self, run: Run) -> str | None:
        if not run.commit_sha:
            return None
        key = f"code:{run.repo_url or ''}@{run.commit_sha}"
        self.nodes.setdefault(
            key,
            {
                "id": key,
                "type": "code",
                "repo_url": run.repo_url,
                "commit_sha": run.commit_sha,
                "diff_digest": run.diff_digest,
            },
        )
        return key

    # --- neighbours ----------------------------------------------------------------------

    def upstream(self, key: str, obj: Any) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        if isinstance(obj, ModelVersion):
            run = self.session.get(Run, obj.run_id) if obj.run_id else None
            if run is not None:
                k = self.run_node(run)
                self.edges.add((k, key, "produced"))
                out.append((k, run))
        elif isinstance(obj, Run):
            code = self.code_node(obj)
            if code is not None:
                self.edges.add((code, key, "ran"))
                out.append((code, None))
            rows = self.session.execute(
                select(DatasetVersion, Dataset)
                .join(RunInput, RunInput.dataset_version_id == DatasetVersion.id)
                .join(Dataset, DatasetVersion.dataset_id == Dataset.id)
                .where(RunInput.run_id == obj.id)
            ).all()
            for dv, ds in rows:
                k = self.dataset_version_node(dv, ds)
                self.edges.add((k, key, "consumed_by"))
                out.append((k, dv))
        elif isinstance(obj, DatasetVersion):
            if obj.produced_by_run_id:
                run = self.session.get(Run, obj.produced_by_run_id)
                if run is not None:
                    k = self.run_node(run)
                    self.edges.add((k, key, "produced"))
                    out.append((k, run))
        return out

    def downstream(self, key: str, obj: Any) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        if isinstance(obj, DatasetVersion):
            runs = self.session.scalars(
                select(Run)
                .join(RunInput, RunInput.run_id == Run.id)
                .where(RunInput.dataset_version_id == obj.id)
                .distinct()
            ).all()
            for run in runs:
                k = self.run_node(run)
                self.edges.add((key, k, "consumed_by"))
                out.append((k, run))
        elif isinstance(obj, Run):
            for mv, m in self.session.execute(
                select(ModelVersion, Model)
                .join(Model, ModelVersion.model_id == Model.id)
                .where(ModelVersion.run_id == obj.id)
            ).all():
                k = self.model_version_node(mv, m)
                self.edges.add((key, k, "produced"))
                out.append((k, mv))
            for dv, ds in self.session.execute(
                select(DatasetVersion, Dataset)
                .join(Dataset, DatasetVersion.dataset_id == Dataset.id)
                .where(DatasetVersion.produced_by_run_id == obj.id, DatasetVersion.state == "committed")
            ).all():
                k = self.dataset_version_node(dv, ds)
                self.edges.add((key, k, "produced"))
                out.append((k, dv))
        elif obj is None and key.startswith("code:"):
            sha = key.rsplit("@", 1)[-1]
            for run in self.session.scalars(
                select(Run).where(Run.project_id == self.project.id, Run.commit_sha == sha)
            ):
                k = self.run_node(run)
                self.edges.add((key, k, "ran"))
                out.append((k, run))
        return out


def resolve_node(session: Session, project: Project, walker: _Walker, node: str) -> tuple[str, Any]:
    """The start node named `node`: model_version:NAME/N, dataset_version:NAME/N, run:ID or code:SHA."""
    kind, _, ident = node.partition(":")
    if kind in ("model_version", "dataset_version"):
        name, _, number = ident.rpartition("/")
        if not name or not number.isdigit():
            raise AnimusError(400, "invalid_node", f"{kind} nodes are named {kind}:NAME/VERSION", {"node": node[:300]})
        if kind == "model_version":
            row = session.execute(
                select(ModelVersion, Model)
                .join(Model, ModelVersion.model_id == Model.id)
                .where(Model.project_id == project.id, Model.name == name, ModelVersion.version == int(number))
            ).first()
            if row is None:
                raise AnimusError(404, "model_version_not_found", f"Model {name!r} has no version {number}")
            return walker.model_version_node(*row), row[0]
        row = session.execute(
            select(DatasetVersion, Dataset)
            .join(Dataset, DatasetVersion.dataset_id == Dataset.id)
            .where(Dataset.project_id == project.id, Dataset.name == name, DatasetVersion.version == int(number))
        ).first()
        if row is None or not walker._dataset_readable(row[1]):
            raise AnimusError(404, "dataset_version_not_found", f"Dataset {name!r} has no version {number}")
        return walker.dataset_version_node(*row), row[0]
    if kind == "run":
        run = session.scalar(select(Run).where(Run.project_id == project.id, Run.id == ident))
        if run is None:
            raise AnimusError(404, "run_not_found", f"Run {ident!r} not found")
        return walker.run_node(run), run
    if kind == "code":
        sha = ident.rsplit("@", 1)[-1]
        run = session.scalar(select(Run).where(Run.project_id == project.id, Run.commit_sha == sha).limit(1))
        if run is None:
            raise AnimusError(404, "code_not_found", f"No run of this project ran commit {sha!r}")
        return walker.code_node(run), None
    raise AnimusError(
        400,
        "invalid_node",
        "node is model_version:NAME/N, dataset_version:NAME/N, run:ID or code:SHA",
        {"node": node[:300]},
    )


def graph(
    session: Session, project: Project, principal: Any, role: Role | None, node: str, direction: str, depth: int
) -> dict[str, Any]:
    if direction not in DIRECTIONS:
        raise AnimusError(400, "invalid_argument", f"direction must be one of {', '.join(DIRECTIONS)}")
    if not 1 <= depth <= MAX_DEPTH:
        raise AnimusError(400, "invalid_argument", f"depth must be between 1 and {MAX_DEPTH}", {"maximum": MAX_DEPTH})
    walker = _Walker(session, project, principal, role)
    start, obj = resolve_node(session, project, walker, node)
    truncated = False
    for way in ("upstream", "downstream"):
        if direction not in (way, "both"):
            continue
        seen = {start}
        queue = deque([(start, obj, 0)])
        while queue:
            key, o, d = queue.popleft()
            if d >= depth:
                continue
            for k, nxt in getattr(walker, way)(key, o):
                if k not in seen:
                    seen.add(k)
                    queue.append((k, nxt, d + 1))
            if len(walker.nodes) > MAX_NODES:
                truncated = True
                queue.clear()
    return {
        "root": start,
        "direction": direction,
        "depth": depth,
        "nodes": sorted(walker.nodes.values(), key=lambda n: n["id"]),
        "edges": [{"from": a, "to": b, "relation": r} for a, b, r in sorted(walker.edges)],
        "truncated": truncated,
    }
