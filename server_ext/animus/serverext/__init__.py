"""The Animus Jupyter server extension: the REST handlers the JupyterLab panels call.

Loaded by every workspace's Jupyter server (enabled by
``etc/jupyter/jupyter_server_config.d/animus.json``). It answers under
``<server base URL>/animus/`` and forwards the panels' calls to animus-api as the
workspace's owner (see :mod:`animus.serverext.handlers`).
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "animus.serverext"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from .handlers import setup_handlers

    setup_handlers(serverapp.web_app)
    serverapp.log.info(
        "Animus server extension loaded: %s", serverapp.web_app.settings.get("base_url", "/") + "animus/"
    )
