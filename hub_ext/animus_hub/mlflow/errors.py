"""AnimusError → MLflow's error shape, in one table.

The MLflow client turns any non-200 answer with ``{"error_code", "message"}`` into
an ``MlflowException`` carrying that code, and retries 408/429/500/502/503/504. So
a client mistake must never be answered with a 5xx, and conflicts the Animus API
answers with 409/413/422 are answered here as MLflow's own server does (400).
"""

from __future__ import annotations

from typing import Any

from ..errors import AnimusError

INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
RESOURCE_DOES_NOT_EXIST = "RESOURCE_DOES_NOT_EXIST"
RESOURCE_ALREADY_EXISTS = "RESOURCE_ALREADY_EXISTS"

# Animus reason → (MLflow error_code, HTTP status); reasons not listed fall back on BY_STATUS
BY_REASON: dict[str, tuple[str, int]] = {
    "experiment_exists": (RESOURCE_ALREADY_EXISTS, 400),
    # params are immutable: MLflow answers a changed value with 400 INVALID_PARAMETER_VALUE
    "param_conflict": (INVALID_PARAMETER_VALUE, 400),
    # Animus refuses to log into an ended or deleted run; MLflow's closest answer
    # (logging into a deleted run) is INVALID_PARAMETER_VALUE. Its INVALID_STATE
    # maps to 500, which the client would retry.
    "run_finished": (INVALID_PARAMETER_VALUE, 400),
    "run_deleted": (INVALID_PARAMETER_VALUE, 400),
    "experiment_deleted": (INVALID_PARAMETER_VALUE, 400),
    "logged_model_finalized": (INVALID_PARAMETER_VALUE, 400),
    "batch_too_large": (INVALID_PARAMETER_VALUE, 400),
    "project_archived": (INVALID_PARAMETER_VALUE, 400),
    "project_required": (INVALID_PARAMETER_VALUE, 400),
    "route_not_found": ("ENDPOINT_NOT_FOUND", 404),
    "method_not_allowed": ("ENDPOINT_NOT_FOUND", 405),
    "token_lacks_access": ("PERMISSION_DENIED", 403),
    # not retryable on purpose: a missing store does not heal by retrying
    "storage_not_configured": ("NOT_IMPLEMENTED", 501),
}

# Animus status → (MLflow error_code, HTTP status)
BY_STATUS: dict[int, tuple[str, int]] = {
    400: (INVALID_PARAMETER_VALUE, 400),
    401: ("UNAUTHENTICATED", 401),
    403: ("PERMISSION_DENIED", 403),
    404: (RESOURCE_DOES_NOT_EXIST, 404),
    409: ("RESOURCE_CONFLICT", 409),
    413: (INVALID_PARAMETER_VALUE, 400),
    416: (INVALID_PARAMETER_VALUE, 400),
    422: (INVALID_PARAMETER_VALUE, 400),
    429: ("REQUEST_LIMIT_EXCEEDED", 429),
    501: ("NOT_IMPLEMENTED", 501),
    503: ("TEMPORARILY_UNAVAILABLE", 503),
}


def mlflow_error(error: AnimusError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body MLflow's server would answer for `error`."""
    if error.reason in BY_REASON:
        code, status = BY_REASON[error.reason]
    elif error.status in BY_STATUS:
        code, status = BY_STATUS[error.status]
    elif error.status >= 500:
        code, status = "INTERNAL_ERROR", 500
    else:
        code, status = "BAD_REQUEST", error.status
    # the Animus reason rides along for people reading logs; MLflow clients ignore it
    return status, {"error_code": code, "message": error.message, "animus_reason": error.reason}
