"""Animus user side: the Python SDK, the `animus` CLI and the Jupyter server extension.

    import animus
    with animus.start_run(experiment="churn") as run:
        animus.log_param("lr", 0.01)
        animus.log_metric("loss", 0.42, step=1)
"""

from animus_hub._version import __version__

from .tracking import (
    active_run,
    end_run,
    flush,
    log_artifact,
    log_artifacts,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    set_tag,
    set_tags,
    start_run,
)

__all__ = [
    "__version__",
    "active_run",
    "end_run",
    "flush",
    "log_artifact",
    "log_artifacts",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "set_tag",
    "set_tags",
    "start_run",
]
