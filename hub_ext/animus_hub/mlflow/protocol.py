"""MLflow's JSON (the proto3 JSON mapping of mlflow/protos/service.proto) ↔ Animus entities.

Ids: experiment ids are Animus experiment ids as strings ("0", MLflow's default
experiment, names the project's "Default" experiment); run ids are Animus run ids.
Times are epoch milliseconds. NaN and ±infinity travel as the strings "NaN",
"Infinity" and "-Infinity", as MLflow's server writes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import AnimusError
from ..orm import Experiment, LoggedModel, Project, Run
from ..services import tracking as svc

ARTIFACT_SCHEME = "mlflow-artifacts:"
DEFAULT_EXPERIMENT_ID = "0"
RUN_NAME_TAG = "mlflow.runName"
USER_TAG = "mlflow.user"
NOTE_TAG = "mlflow.note.content"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
GIT_REPO_TAG = "mlflow.source.git.repoURL"
LOG_MODEL_HISTORY_TAG = "mlflow.log-model.history"
DATASET_CONTEXT_TAG = "mlflow.data.context"

# Animus run status ↔ MLflow RunStatus; "starting" (picked up, not yet running) reads as SCHEDULED
STATUS_TO_MLFLOW = {
    "queued": "SCHEDULED",
    "starting": "SCHEDULED",
    "running": "RUNNING",
    "succeeded": "FINISHED",
    "failed": "FAILED",
    "cancelled": "KILLED",
}
STATUS_FROM_MLFLOW = {
    "RUNNING": "running",
    "SCHEDULED": "queued",
    "FINISHED": "succeeded",
    "FAILED": "failed",
    "KILLED": "cancelled",
}
_RUN_STATUS_NUMBERS = {1: "RUNNING", 2: "SCHEDULED", 3: "FINISHED", 4: "FAILED", 5: "KILLED"}

VIEW_TYPES = {"ACTIVE_ONLY": "active", "DELETED_ONLY": "deleted", "ALL": "all", 1: "active", 2: "deleted", 3: "all"}

# LoggedModel.status as stored ↔ MLflow LoggedModelStatus
MODEL_STATUS_TO_MLFLOW = {
    "PENDING": "LOGGED_MODEL_PENDING",
    "READY": "LOGGED_MODEL_READY",
    "FAILED": "LOGGED_MODEL_UPLOAD_FAILED",
}
MODEL_STATUS_FROM_MLFLOW = {
    "LOGGED_MODEL_PENDING": "PENDING",
    "LOGGED_MODEL_READY": "READY",
    "LOGGED_MODEL_UPLOAD_FAILED": "FAILED",
    1: "PENDING",
    2: "READY",
    3: "FAILED",
}


def invalid(message: str) -> AnimusError:
    return AnimusError(400, "invalid_parameter", message)


# --- request fields -------------------------------------------------------------------


def required_str(args: Mapping[str, Any], *names: str) -> str:
    """The first of `names` present as a non-empty string (run_id / run_uuid are synonyms)."""
    for name in names:
        value = args.get(name)
        if isinstance(value, str) and value:
            return value
        if value not in (None, ""):
            raise invalid(f"Invalid value {value!r} for parameter '{name}': a string is expected")
    raise invalid(
        f"Missing value for required parameter '{names[0]}'. See the API docs for more information about request parameters."
    )


def optional_str(args: Mapping[str, Any], name: str) -> str | None:
    value = args.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise invalid(f"Invalid value {value!r} for parameter '{name}': a string is expected")
    return value


def optional_int(
    args: Mapping[str, Any], name: str, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    """An int64 field: proto3 JSON allows a number or a decimal string."""
    value = args.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"Invalid value {value!r} for parameter '{name}': an integer is expected")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise invalid(f"Invalid value {value} for parameter '{name}': it must be between {minimum} and {maximum}")
    return value


def key_values(args: Mapping[str, Any], name: str) -> list[tuple[str, str]]:
    """A repeated {key, value} field (tags, params) as pairs; values are strings or numbers."""
    items = args.get(name) or []
    if not isinstance(items, list):
        raise invalid(f"Invalid value for parameter '{name}': a list of {{key, value}} objects is expected")
    pairs = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise invalid(f"Invalid entry in '{name}': each is an object {{key, value}} with a string key")
        value = item.get("value", "")
        if value is None:
            value = ""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise invalid(f"Invalid value for {name} {item['key']!r}: a string is expected")
        pairs.append((item["key"], str(value)))
    return pairs


def run_status(value: Any) -> str:
    """An MLflow RunStatus (name or number) as an Animus status."""
    name = _RUN_STATUS_NUMBERS.get(value, value) if isinstance(value, int) else value
    if name not in STATUS_FROM_MLFLOW:
        raise invalid(f"Invalid run status {value!r}: one of {', '.join(STATUS_FROM_MLFLOW)} is expected")
    return STATUS_FROM_MLFLOW[name]


def view_type(value: Any, default: str = "active") -> str:
    if value is None or value == "":
        return default
    if value not in VIEW_TYPES:
        raise invalid(f"Invalid view type {value!r}: ACTIVE_ONLY, DELETED_ONLY or ALL is expected")
    return VIEW_TYPES[value]


# --- artifact locations ---------------------------------------------------------------


run_artifact_prefix = svc.run_files_prefix
model_artifact_prefix = svc.logged_model_files_prefix


def artifact_uri(prefix: str) -> str:
    # the client resolves "mlflow-artifacts:/<key>" against its tracking URI, so the
    # same URI works with every route form and host name of this service
    return f"{ARTIFACT_SCHEME}/{prefix}"


# --- responses ------------------------------------------------------------------------


def kv_list(items: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    pairs = items.items() if isinstance(items, Mapping) else items
    return [{"key": k, "value": v} for k, v in pairs]


def experiment_json(e: Experiment) -> dict[str, Any]:
    tags = dict(e.tags or {})
    if e.description:
        tags[NOTE_TAG] = e.description
    return {
        "experiment_id": str(e.id),
        "name": e.name,
        "artifact_location": artifact_uri(f"projects/{e.project_id}/experiments/{e.id}"),
        "lifecycle_stage": e.lifecycle_stage,
        "creation_time": svc.epoch_ms(e.created_at),
        "last_update_time": svc.epoch_ms(e.updated_at),
        "tags": kv_list(tags),
    }


def run_info_json(run: Run) -> dict[str, Any]:
    info: dict[str, Any] = {
        "run_id": run.id,
        "run_uuid": run.id,
        "run_name": run.name,
        "experiment_id": str(run.experiment_id),
        "user_id": run.created_by,
        "status": STATUS_TO_MLFLOW.get(run.status, "RUNNING"),
        "start_time": svc.epoch_ms(run.start_time),
        "artifact_uri": artifact_uri(run_artifact_prefix(run.project_id, run.id)),
        "lifecycle_stage": run.lifecycle_stage,
    }
    if run.end_time is not None:
        info["end_time"] = svc.epoch_ms(run.end_time)
    return info


def run_json(run: Run, data: Mapping[str, Any], model_ids: Iterable[str] = ()) -> dict[str, Any]:
    """A Run from `svc.run_data()`'s params, tags, latest metrics and inputs."""
    metrics = [
        {"key": k, "value": m["value"], "timestamp": m["timestamp"], "step": m["step"]}
        for k, m in sorted(data["metrics"].items())
    ]
    inputs = [
        {
            "tags": [{"key": DATASET_CONTEXT_TAG, "value": i["context"]}] if i.get("context") else [],
            "dataset": {
                "name": i["name"],
                "digest": i["digest"],
                "source_type": i.get("source_type", ""),
                "source": i.get("source", ""),
                "schema": i.get("schema", ""),
                "profile": i.get("profile", ""),
            },
        }
        for i in data["inputs"]
    ]
    return {
        "info": run_info_json(run),
        "data": {
            "metrics": metrics,
            "params": kv_list(sorted(data["params"].items())),
            "tags": kv_list(sorted(data["tags"].items())),
        },
        "inputs": {"dataset_inputs": inputs},
        "outputs": {"model_outputs": [{"model_id": m, "step": 0} for m in model_ids]},
    }


def metric_json(key: str, point: Mapping[str, Any]) -> dict[str, Any]:
    return {"key": key, "value": point["value"], "timestamp": point["timestamp"], "step": point["step"]}


def logged_model_json(m: LoggedModel, project: Project) -> dict[str, Any]:
    info: dict[str, Any] = {
        "model_id": m.id,
        "experiment_id": str(m.experiment_id),
        "name": m.name,
        "creation_timestamp_ms": svc.epoch_ms(m.created_at),
        "last_updated_timestamp_ms": svc.epoch_ms(m.updated_at),
        "artifact_uri": artifact_uri(model_artifact_prefix(project.id, m.id)),
        "status": MODEL_STATUS_TO_MLFLOW.get(m.status, "LOGGED_MODEL_PENDING"),
        "model_type": m.model_type,
        "tags": kv_list(sorted((m.tags or {}).items())),
    }
    if m.run_id:
        info["source_run_id"] = m.run_id
    return {"info": info, "data": {"params": kv_list(sorted((m.params or {}).items())), "metrics": []}}
