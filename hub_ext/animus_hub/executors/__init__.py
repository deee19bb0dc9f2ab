"""Executors: where the attempts of batch runs execute (DESIGN.md §2 "Run workers").

The scheduler decides; an executor only starts ``animus-runner`` for one attempt,
tells whether it is still there, and stops it. ``LocalExecutor`` (embedded profile)
starts a local process group; a Kubernetes executor (one Job per attempt) plugs in
through ``AnimusAPI.executor_class``.
"""

from .base import Executor, LaunchSpec
from .local import LocalExecutor

__all__ = ["Executor", "LaunchSpec", "LocalExecutor"]
