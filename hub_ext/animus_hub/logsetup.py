"""Process-wide log setup shared by animus-api and the object gateway."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

LOGGERS = ("animus", "animus_hub", "tornado", "alembic")


def configure_logging(level: int | str, as_json: bool) -> None:
    """One stderr handler for our loggers: text for people, JSON objects for log shippers."""
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("[%(levelname)1.1s %(asctime)s %(name)s] %(message)s"))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level)
        logger.propagate = False
