"""The executor interface the run queue talks to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from traitlets import Integer
from traitlets.config import LoggingConfigurable


@dataclass(frozen=True)
class LaunchSpec:
    """One attempt to start: who it is, how the runner reaches the API, what it may use."""

    run_id: str
    project: str
    attempt: int
    token: str = field(repr=False)
    api_url: str
    timeout_seconds: int | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    heartbeat_interval: float = 10.0
    #: the environment version's image ("" for a run without an environment); LocalExecutor ignores it
    image: str = ""
    #: the run's priority inside its project (cluster executors map it to a priority class)
    priority: int = 0


class Executor(LoggingConfigurable):
    """Starts, watches and stops runner processes. Subclasses implement the three verbs.

    A handle is an opaque string the executor can interpret again after a restart of
    the control plane (it is stored with the run), so nothing lives only in memory.
    """

    #: the name stored with each attempt, so a handle goes back to the executor that made it
    name = "base"

    slots = Integer(
        4, help="How many attempts may be active at once on this executor (the scheduler's global capacity)."
    ).tag(config=True)

    async def launch(self, spec: LaunchSpec) -> str:
        """Start the runner for `spec`; return its handle. Raise on failure (the attempt is retried)."""
        raise NotImplementedError

    async def alive(self, handle: str) -> bool | None:
        """True if the attempt's runner still exists, False if it is gone, None if this executor cannot tell."""
        return None

    async def stop(self, handle: str, grace: float = 0.0) -> None:
        """Make sure nothing of the attempt runs any more: wait up to `grace` seconds, then kill. Idempotent."""
        raise NotImplementedError

    async def close(self) -> None:
        """Release the executor's own resources (not the runs: they outlive the control plane)."""
