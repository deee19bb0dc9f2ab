"""The MLflow tracking protocol, so unmodified `mlflow` client code logs into an Animus project.

    MLFLOW_TRACKING_URI=<hub>/services/animus/mlflow/projects/<project>
    MLFLOW_TRACKING_TOKEN=<a JupyterHub or Animus token>

MLflow experiments are Animus experiments of the project, MLflow runs are Animus
runs, MLflow 3 logged models are stored as LoggedModel rows, and artifacts go
straight to the object store with presigned URLs. With a token bound to one
project (service accounts, run tokens, a workspace's token), ``<hub>/services/animus/mlflow``
is enough; such a token cannot log into any other project.

`make_handlers()` gives the routes, mounted beside (not under) /api/v1.
"""

from __future__ import annotations

from .artifacts import ArtifactHandler, MultipartUploadHandler, ServerInfoHandler
from .handlers import (
    ExperimentCreateHandler,
    ExperimentDeleteHandler,
    ExperimentDeleteTagHandler,
    ExperimentGetByNameHandler,
    ExperimentGetHandler,
    ExperimentRestoreHandler,
    ExperimentSearchHandler,
    ExperimentSetTagHandler,
    ExperimentUpdateHandler,
    LoggedModelCreateHandler,
    LoggedModelHandler,
    LoggedModelParamsHandler,
    LoggedModelSearchHandler,
    LoggedModelTagHandler,
    LoggedModelTagsHandler,
    MetricHistoryHandler,
    MLflowHandler,
    MLflowNotFoundHandler,
    RunCreateHandler,
    RunDeleteHandler,
    RunDeleteTagHandler,
    RunGetHandler,
    RunLogBatchHandler,
    RunLogInputsHandler,
    RunLogMetricHandler,
    RunLogModelHandler,
    RunLogOutputsHandler,
    RunLogParamHandler,
    RunRestoreHandler,
    RunSearchHandler,
    RunSetTagHandler,
    RunUpdateHandler,
)

MLFLOW_PREFIX = "mlflow"
PROJECT_ROOT = MLFLOW_PREFIX + r"/projects/(?P<project>[^/]+)"
MODEL = r"(?P<model_id>[^/]+)"
API = "/api/2.0/mlflow"

# (path under a tracking URI, handler): the endpoints the mlflow client calls
ENDPOINTS: list[tuple[str, type[MLflowHandler]]] = [
    (f"{API}/experiments/create", ExperimentCreateHandler),
    (f"{API}/experiments/get", ExperimentGetHandler),
    (f"{API}/experiments/get-by-name", ExperimentGetByNameHandler),
    (f"{API}/experiments/search", ExperimentSearchHandler),
    (f"{API}/experiments/update", ExperimentUpdateHandler),
    (f"{API}/experiments/delete", ExperimentDeleteHandler),
    (f"{API}/experiments/restore", ExperimentRestoreHandler),
    (f"{API}/experiments/set-experiment-tag", ExperimentSetTagHandler),
    (f"{API}/experiments/delete-experiment-tag", ExperimentDeleteTagHandler),
    (f"{API}/runs/create", RunCreateHandler),
    (f"{API}/runs/get", RunGetHandler),
    (f"{API}/runs/update", RunUpdateHandler),
    (f"{API}/runs/delete", RunDeleteHandler),
    (f"{API}/runs/restore", RunRestoreHandler),
    (f"{API}/runs/log-metric", RunLogMetricHandler),
    (f"{API}/runs/log-parameter", RunLogParamHandler),
    (f"{API}/runs/set-tag", RunSetTagHandler),
    (f"{API}/runs/delete-tag", RunDeleteTagHandler),
    (f"{API}/runs/log-batch", RunLogBatchHandler),
    (f"{API}/runs/log-inputs", RunLogInputsHandler),
    (f"{API}/runs/outputs", RunLogOutputsHandler),
    (f"{API}/runs/log-model", RunLogModelHandler),
    (f"{API}/runs/search", RunSearchHandler),
    (f"{API}/metrics/get-history", MetricHistoryHandler),
    (f"{API}/logged-models", LoggedModelCreateHandler),
    (f"{API}/logged-models/search", LoggedModelSearchHandler),
    (f"{API}/logged-models/{MODEL}", LoggedModelHandler),
    (f"{API}/logged-models/{MODEL}/tags", LoggedModelTagsHandler),
    (f"{API}/logged-models/{MODEL}/tags/(?P<tag_key>.+)", LoggedModelTagHandler),
    (f"{API}/logged-models/{MODEL}/params", LoggedModelParamsHandler),
    ("/api/2.0/mlflow-artifacts/artifacts(?:/(?P<path>.*))?", ArtifactHandler),
    ("/api/2.0/mlflow-artifacts/mpu/(?P<mpu_action>create|complete|abort)(?:/(?P<path>.*))?", MultipartUploadHandler),
    ("/api/3.0/mlflow/server-info", ServerInfoHandler),
    (r"(?:/.*)?", MLflowNotFoundHandler),
]


def make_handlers(base_url: str) -> list[tuple[str, type, dict]]:
    """Routes under ``{base_url}mlflow/projects/<project>`` and, for project-bound tokens, ``{base_url}mlflow``.

    The project form comes first: the short form's catch-all would match it.
    """
    kwargs = {"mlflow_root": base_url + MLFLOW_PREFIX}
    routes = []
    for root in (PROJECT_ROOT, MLFLOW_PREFIX):
        routes += [(base_url + root + path, cls, kwargs) for path, cls in ENDPOINTS]
    return routes


__all__ = ["ENDPOINTS", "make_handlers"]
