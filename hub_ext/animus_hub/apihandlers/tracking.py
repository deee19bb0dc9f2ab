"""/projects/{project}/experiments and /runs: experiment tracking."""

from __future__ import annotations

import json
from typing import Any

from ..errors import AnimusError
from ..schemas import ExperimentCreate, ExperimentUpdate, RunCreate, RunInputs, RunUpdate
from ..services import runsearch
from ..services import tracking as svc
from ..services.blobs import blob_key
from ..services.pagination import parse_limit
from .base import APIHandler
from .projects import PROJECT

EXPERIMENT = r"(?P<experiment_id>[^/]+)"
RUN = r"(?P<run_id>[^/]+)"
LIFECYCLES = ("active", "deleted", "all")


class _TrackingHandler(APIHandler):
    def lifecycle_arg(self) -> str:
        value = self.get_query_argument("lifecycle", "active")
        if value not in LIFECYCLES:
            raise AnimusError(400, "invalid_argument", f"lifecycle must be one of {', '.join(LIFECYCLES)}")
        return value

    def int_arg(self, name: str, default: int | None = None, minimum: int | None = None, maximum: int | None = None) -> int | None:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise AnimusError(400, "invalid_argument", f"{name} must be an integer") from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise AnimusError(400, "invalid_argument", f"{name} must be between {minimum} and {maximum}")
        return value

    def raw_json(self) -> dict[str, Any]:
        if not self.request.body:
            raise AnimusError(400, "invalid_json", "A JSON object body is required")
        try:
            data = json.loads(self.request.body.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise AnimusError(400, "invalid_json", f"Malformed JSON: {e}") from None
        if not isinstance(data, dict):
            raise AnimusError(400, "invalid_json", "The body must be a JSON object")
        return data


# --- experiments ----------------------------------------------------------------------


class ExperimentListAPIHandler(_TrackingHandler):
    actions = {"GET": "experiments:read", "POST": "experiments:write"}

    def get(self, project: str) -> None:
        rows, next_cursor = svc.list_experiments(
            self.db,
            self.project,
            lifecycle=self.lifecycle_arg(),
            name=self.get_query_argument("name", None),
            limit=self.limit_arg(),
            cursor=self.get_query_argument("cursor", None),
        )
        self.write_json({"items": [svc.experiment_json(e) for e in rows], "next_cursor": next_cursor})

    def post(self, project: str) -> None:
        data = self.json_body(ExperimentCreate)
        e = svc.create_experiment(self.db, self.project, data.name, self.principal.name, data.description, data.tags)
        self.commit_and_write(
            svc.experiment_json(e), 201, audit_action="experiment.create", resource=f"project/{project}/experiments/{e.id}",
            details={"name": e.name},
        )


class ExperimentAPIHandler(_TrackingHandler):
    actions = {"GET": "experiments:read", "PATCH": "experiments:write", "DELETE": "experiments:write"}

    def get(self, project: str, experiment_id: str) -> None:
        self.write_json(svc.experiment_json(svc.find_experiment(self.db, self.project, experiment_id)))

    def patch(self, project: str, experiment_id: str) -> None:
        data = self.json_body(ExperimentUpdate)
        e = svc.find_experiment(self.db, self.project, experiment_id)
        changes = svc.update_experiment(self.db, self.project, e, name=data.name, description=data.description, tags=data.tags)
        self.commit_and_write(
            svc.experiment_json(e), audit_action="experiment.update", resource=f"project/{project}/experiments/{e.id}",
            details={"changes": changes},
        )

    def delete(self, project: str, experiment_id: str) -> None:
        e = svc.find_experiment(self.db, self.project, experiment_id)
        changes = svc.update_experiment(self.db, self.project, e, lifecycle_stage="deleted")
        self.commit_and_write(
            None, 204, audit_action="experiment.delete", resource=f"project/{project}/experiments/{e.id}", details={"changes": changes}
        )


class ExperimentRestoreAPIHandler(_TrackingHandler):
    actions = {"POST": "experiments:write"}

    def post(self, project: str, experiment_id: str) -> None:
        e = svc.find_experiment(self.db, self.project, experiment_id)
        changes = svc.update_experiment(self.db, self.project, e, lifecycle_stage="active")
        self.commit_and_write(
            svc.experiment_json(e), audit_action="experiment.restore", resource=f"project/{project}/experiments/{e.id}",
            details={"changes": changes},
        )


# --- runs ---------------------------------------------------------------------


class RunListAPIHandler(_TrackingHandler):
    actions = {"GET": "runs:read", "POST": "runs:write"}

    def get(self, project: str) -> None:
        experiment_ids = None
        raw = self.get_query_arguments("experiment_id")
        if raw:
            experiment_ids = [svc.find_experiment(self.db, self.project, e).id for e in raw]
        result = runsearch.search_runs(
            self.db,
            project_id=self.project.id,
            experiment_ids=experiment_ids,
            filter=self.get_query_argument("filter", ""),
            order_by=self.get_query_arguments("order_by"),
            limit=parse_limit(self.get_query_argument("limit", None), 1000, default=100),
            cursor=self.get_query_argument("cursor", None),
            lifecycle=self.lifecycle_arg(),
        )
        data = svc.run_data(self.db, result.runs)
        self.write_json({"items": [svc.run_json(r, data[r.id]) for r in result.runs], "next_cursor": result.next_cursor})

    def post(self, project: str) -> None:
        data = self.json_body(RunCreate)
        if data.experiment_id is not None:
            experiment = svc.find_experiment(self.db, self.project, data.experiment_id)
        elif data.experiment is not None:
            experiment = svc.find_experiment_by_name(self.db, self.project, data.experiment) or svc.create_experiment(
                self.db, self.project, data.experiment, self.principal.name
            )
        else:
            experiment = svc.default_experiment(self.db, self.project, self.principal.name)
        code = svc.CodeRef(**data.code.model_dump()) if data.code else None
        run = svc.create_run(
            self.db,
            self.project,
            experiment,
            self.principal.name,
            name=data.name,
            tags=data.tags,
            start_time=svc.from_epoch_ms(data.start_time) if data.start_time is not None else None,
            code=code,
        )
        self.commit_and_write(
            svc.run_json(run, svc.run_data(self.db, [run])[run.id]),
            201,
            audit_action="run.create",
            resource=f"project/{project}/runs/{run.id}",
            details={"experiment_id": str(experiment.id), "name": run.name},
        )


class RunCompareAPIHandler(_TrackingHandler):
    """Aligned params, latest metrics and downsampled histories of several runs."""

    actions = {"GET": "runs:read"}

    def get(self, project: str) -> None:
        run_ids = [r for arg in self.get_query_arguments("run_id") for r in arg.split(",") if r]
        keys = [k for arg in self.get_query_arguments("metric") for k in arg.split(",") if k] or None
        max_points = self.int_arg("max_points", svc.DEFAULT_MAX_POINTS, 2, 100_000)
        self.write_json(svc.compare_runs(self.db, self.project, run_ids, keys, max_points))


class RunAPIHandler(_TrackingHandler):
    actions = {"GET": "runs:read", "PATCH": "runs:write", "DELETE": "runs:write"}

    def get(self, project: str, run_id: str) -> None:
        run = svc.find_run(self.db, self.project, run_id)
        self.write_json(svc.run_json(run, svc.run_data(self.db, [run])[run.id]))

    def patch(self, project: str, run_id: str) -> None:
        data = self.json_body(RunUpdate)
        run = svc.find_run(self.db, self.project, run_id)
        details: dict[str, Any] = {}
        if data.name is not None and data.name != run.name:
            details["name"] = {"from": run.name, "to": data.name}
            run.name = data.name
        if data.status is not None:
            if run.kind == "batch":
                raise AnimusError(
                    409,
                    "batch_run_status",
                    f"Run {run.id} is a batch run: its runner reports its status; cancel it with POST .../cancel",
                )
            end = svc.from_epoch_ms(data.end_time) if data.end_time is not None else None
            if svc.set_status(self.db, self.project, run, data.status, end):
                details["status"] = data.status
        self.commit_and_write(
            svc.run_json(run, svc.run_data(self.db, [run])[run.id]),
            audit_action="run.update",
            resource=f"project/{project}/runs/{run.id}",
            details=details,
        )

    def delete(self, project: str, run_id: str) -> None:
        run = svc.find_run(self.db, self.project, run_id)
        run.lifecycle_stage = "deleted"
        self.commit_and_write(None, 204, audit_action="run.delete", resource=f"project/{project}/runs/{run.id}")


class RunRestoreAPIHandler(_TrackingHandler):
    actions = {"POST": "runs:write"}

    def post(self, project: str, run_id: str) -> None:
        run = svc.find_run(self.db, self.project, run_id)
        run.lifecycle_stage = "active"
        self.commit_and_write(svc.run_json(run), audit_action="run.restore", resource=f"project/{project}/runs/{run.id}")


class RunLogBatchAPIHandler(_TrackingHandler):
    """Metrics, params and tags in one request (what the SDK's background sender uses)."""

    actions = {"POST": "runs:write"}

    def post(self, project: str, run_id: str) -> None:
        body = self.raw_json()
        unknown = set(body) - {"metrics", "params", "tags"}
        if unknown:
            raise AnimusError(422, "validation_failed", f"Unknown fields: {', '.join(sorted(unknown))}")
        metrics, params, tags = body.get("metrics") or [], body.get("params") or [], body.get("tags") or []
        if not all(isinstance(x, list) for x in (metrics, params, tags)):
            raise AnimusError(422, "validation_failed", "metrics, params and tags must be lists")
        svc.check_batch_limits(len(metrics), len(params), len(tags))
        run = svc.find_run(self.db, self.project, run_id)
        now_ms = svc.epoch_ms(svc.utcnow())
        points = [svc.parse_metric(m, now_ms) for m in metrics]
        param_items = [_kv(p, "param") for p in params]
        tag_items = [_kv(t, "tag") for t in tags]
        n_metrics, n_params, n_tags = svc.log_batch(self.db, run, points, param_items, tag_items)
        self.commit_and_write(
            {"metrics": n_metrics, "params": n_params, "tags": n_tags},
            audit_action="run.log",
            resource=f"project/{project}/runs/{run.id}",
            details={"metrics": n_metrics, "params": n_params, "tags": n_tags},
        )


def _kv(item: Any, what: str) -> tuple[str, str]:
    if not isinstance(item, dict) or set(item) - {"key", "value"} or "key" not in item:
        raise AnimusError(422, f"invalid_{what}", f"Each {what} is an object {{key, value}}")
    value = item.get("value", "")
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise AnimusError(422, f"invalid_{what}", f"{what} {item.get('key')!r}: value must be a string or a number")
    return svc.validate_key(item["key"], what), str(value)


class RunTagAPIHandler(_TrackingHandler):
    actions = {"DELETE": "runs:write"}

    def delete(self, project: str, run_id: str) -> None:
        key = self.get_query_argument("key", None)
        if not key:
            raise AnimusError(400, "invalid_argument", "Give the tag to delete as ?key=")
        run = svc.find_run(self.db, self.project, run_id)
        svc.delete_tag(self.db, run, key)
        self.commit_and_write(None, 204, audit_action="run.tag_delete", resource=f"project/{project}/runs/{run.id}", details={"key": key})


class RunMetricHistoryAPIHandler(_TrackingHandler):
    actions = {"GET": "runs:read"}

    def get(self, project: str, run_id: str) -> None:
        key = self.get_query_argument("key", None)
        if not key:
            raise AnimusError(400, "invalid_argument", "Give the metric as ?key=")
        run = svc.find_run(self.db, self.project, run_id)
        points, total, reduced = svc.metric_history(
            self.db,
            run,
            key,
            max_points=self.int_arg("max_points", None, 2, 1_000_000),
            start_step=self.int_arg("start_step"),
            end_step=self.int_arg("end_step"),
        )
        self.write_json({"key": key, "points": points, "total_points": total, "downsampled": reduced})


class RunInputsAPIHandler(_TrackingHandler):
    actions = {"POST": "runs:write"}

    def post(self, project: str, run_id: str) -> None:
        data = self.json_body(RunInputs)
        run = svc.find_run(self.db, self.project, run_id)
        n = svc.log_inputs(self.db, run, [d.model_dump(by_alias=True) for d in data.datasets])
        self.commit_and_write(
            {"added": n}, audit_action="run.inputs", resource=f"project/{project}/runs/{run.id}", details={"datasets": n}
        )


default_handlers = [
    (f"/projects/{PROJECT}/experiments", ExperimentListAPIHandler),
    (f"/projects/{PROJECT}/experiments/{EXPERIMENT}", ExperimentAPIHandler),
    (f"/projects/{PROJECT}/experiments/{EXPERIMENT}/restore", ExperimentRestoreAPIHandler),
    (f"/projects/{PROJECT}/runs", RunListAPIHandler),
    (f"/projects/{PROJECT}/runs/compare", RunCompareAPIHandler),
    (f"/projects/{PROJECT}/runs/{RUN}", RunAPIHandler),
    (f"/projects/{PROJECT}/runs/{RUN}/restore", RunRestoreAPIHandler),
    (f"/projects/{PROJECT}/runs/{RUN}/log-batch", RunLogBatchAPIHandler),
    (f"/projects/{PROJECT}/runs/{RUN}/tags", RunTagAPIHandler),
    (f"/projects/{PROJECT}/runs/{RUN}/metric-history", RunMetricHistoryAPIHandler),
    (f"/projects/{PROJECT}/runs/{RUN}/inputs", RunInputsAPIHandler),
]


# --- artifacts ----------------------------------------------------------------


class RunArtifactListAPIHandler(_TrackingHandler):
    """Files logged with the SDK (content-addressed) and, on the first page, files MLflow
    clients wrote for the run and its logged models (``logged-models/<id>/…``)."""

    actions = {"GET": "runs:read"}

    async def get(self, project: str, run_id: str) -> None:
        run = svc.find_run(self.db, self.project, run_id)
        cursor = self.get_query_argument("cursor", None)
        rows, next_cursor = svc.list_artifacts(self.db, run, self.limit_arg(1000), cursor)
        items = [{**svc.artifact_json(a), "source": "animus"} for a in rows]
        if cursor is None:
            items += await self._mlflow_files(run)
        self.write_json({"items": items, "next_cursor": next_cursor})

    async def _mlflow_files(self, run) -> list[dict[str, Any]]:
        store, found = self.settings["object_store"], []
        for prefix, shown in svc.mlflow_file_keys(self.db, run):
            after = ""
            while len(found) < MLFLOW_LISTING_MAX:
                batch = await store.list(prefix + "/", limit=1000, start_after=after)
                for o in batch:
                    found.append({"path": shown + o.key[len(prefix) + 1 :], "size": o.size, "source": "mlflow"})
                if len(batch) < 1000:
                    break
                after = batch[-1].key
        return found[:MLFLOW_LISTING_MAX]


MLFLOW_LISTING_MAX = 10_000


class RunArtifactUploadAPIHandler(_TrackingHandler):
    """Presigned upload URLs for the blobs of files about to be logged; bytes go straight to storage."""

    actions = {"POST": "runs:write"}

    async def post(self, project: str, run_id: str) -> None:
        body = self.raw_json()
        files = svc.parse_artifact_files(body.get("files"))
        run = svc.find_run(self.db, self.project, run_id)
        svc.ensure_writable(run)
        svc.refuse_changed_paths(self.db, run, files)
        store, expires = self.settings["object_store"], self.settings["presign_expires"]
        uploads, present = [], []
        for sha in dict.fromkeys(f.sha256 for f in files):
            key = blob_key(self.project.id, sha)
            if await store.exists(key):
                present.append(sha)
                continue
            size = next(f.size for f in files if f.sha256 == sha)
            uploads.append(
                {
                    "sha256": sha,
                    "url": store.presign_put(key, expires, content_length=size, sha256=sha),
                    "headers": store.upload_headers(sha),
                }
            )
        self.commit_and_write(
            {"uploads": uploads, "present": present, "expires_in": expires},
            audit_action="artifact.upload_urls",
            resource=f"project/{project}/runs/{run.id}/artifacts",
            details={"files": len(files), "blobs_to_upload": len(uploads)},
        )


class RunArtifactCommitAPIHandler(_TrackingHandler):
    """Record files as the run's artifacts once every blob is verified present."""

    actions = {"POST": "runs:write"}

    async def post(self, project: str, run_id: str) -> None:
        body = self.raw_json()
        files = svc.parse_artifact_files(body.get("files"))
        run = svc.find_run(self.db, self.project, run_id)
        svc.ensure_writable(run)
        store = self.settings["object_store"]
        missing = []
        for f in {f.sha256: f for f in files}.values():
            info = await store.head(blob_key(self.project.id, f.sha256))
            if info is None or info.size != f.size:
                missing.append(f.sha256)
        if missing:
            raise AnimusError(
                409,
                "blobs_missing",
                f"{len(missing)} file(s) are not uploaded (or have another size); upload them, then commit again",
                {"missing": missing[:100]},
            )
        n = svc.commit_artifacts(self.db, run, files)
        self.commit_and_write(
            {"committed": n, "files": len(files)},
            audit_action="artifact.commit",
            resource=f"project/{project}/runs/{run.id}/artifacts",
            details={"files": len(files), "new": n},
        )


class RunArtifactDownloadAPIHandler(_TrackingHandler):
    """A short-lived presigned URL to download one artifact straight from storage."""

    actions = {"GET": "runs:read"}

    async def get(self, project: str, run_id: str) -> None:
        path = self.get_query_argument("path", None)
        if not path:
            raise AnimusError(400, "invalid_argument", "Give the artifact as ?path=")
        run = svc.find_run(self.db, self.project, run_id)
        store, expires = self.settings["object_store"], self.settings["presign_expires"]
        filename = path.rsplit("/", 1)[-1]
        try:
            a = svc.find_artifact(self.db, run, path)
        except AnimusError:
            a = None
        if a is not None:
            sha = a.digest.removeprefix("sha256:")
            url = store.presign_get(blob_key(self.project.id, sha), expires, filename=filename)
            self.write_json({**svc.artifact_json(a), "source": "animus", "url": url, "expires_in": expires})
            return
        svc.validate_key(path, "artifact")
        for prefix, shown in svc.mlflow_file_keys(self.db, run):
            if shown and not path.startswith(shown):
                continue
            key = f"{prefix}/{path[len(shown):]}"
            info = await store.head(key)
            if info is not None:
                url = store.presign_get(key, expires, filename=filename)
                self.write_json({"path": path, "size": info.size, "source": "mlflow", "url": url, "expires_in": expires})
                return
        raise AnimusError(404, "artifact_not_found", f"Run {run.id} has no artifact {path!r}")


default_handlers += [
    (f"/projects/{PROJECT}/runs/{RUN}/artifacts", RunArtifactListAPIHandler),
    (f"/projects/{PROJECT}/runs/{RUN}/artifacts/upload", RunArtifactUploadAPIHandler),
    (f"/projects/{PROJECT}/runs/{RUN}/artifacts/commit", RunArtifactCommitAPIHandler),
    (f"/projects/{PROJECT}/runs/{RUN}/artifacts/download", RunArtifactDownloadAPIHandler),
]
