"""LocalExecutor: each attempt's runner is a local process group (embedded profile).

The runner starts in its own session (so its process group is its own and it
outlives a restart of animus-api), in its own working directory
``<work_dir>/<run id>/attempt-<n>``, with a clean environment (nothing of the
control plane's environment leaks in: only PATH, locale, HOME/TMPDIR inside the
working directory and the ANIMUS_* variables of the run), core dumps off and, when
the run has a timeout, a CPU-time limit. The memory limit of the resource template
is applied by the runner to the user's command. Stopping kills the whole group.

A handle is ``local:<pid>:<start time>``: the start time (from /proc) tells the
runner apart from a later process that got the same pid.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

from traitlets import Float, List, Unicode, default

from .base import Executor, LaunchSpec

CLEAN_PATH = "/usr/local/bin:/usr/bin:/bin"


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None  # a zombie has finished
    return fields[19]


def parse_handle(handle: str) -> tuple[int, str] | None:
    kind, _, rest = handle.partition(":")
    pid, _, started = rest.partition(":")
    if kind != "local" or not pid.isdigit():
        return None
    return int(pid), started


class LocalExecutor(Executor):
    name = "local"

    work_dir = Unicode(
        help="Where each attempt gets its working directory (default: ./runs, next to the database)."
    ).tag(config=True)

    @default("work_dir")
    def _work_dir_default(self) -> str:
        return os.path.abspath("runs")

    cache_dir = Unicode(
        help="Where the runner keeps cached virtualenvs (one per lock-file digest); default: <work_dir>/.cache."
    ).tag(config=True)

    @default("cache_dir")
    def _cache_dir_default(self) -> str:
        return os.path.join(self.work_dir, ".cache")

    runner_command = List(
        Unicode(),
        help="The command that starts animus-runner (default: this Python with -m animus.runner).",
    ).tag(config=True)

    @default("runner_command")
    def _runner_command_default(self) -> list[str]:
        return [sys.executable, "-m", "animus.runner"]

    kill_grace_seconds = Float(
        3.0, help="Seconds between SIGTERM and SIGKILL when a run's process group is stopped."
    ).tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._procs: dict[int, subprocess.Popen] = {}

    def _environment(self, spec: LaunchSpec, workdir: Path) -> dict[str, str]:
        env = {
            "PATH": CLEAN_PATH,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": str(workdir / "home"),
            "TMPDIR": str(workdir / "tmp"),
            "ANIMUS_API_URL": spec.api_url,
            "ANIMUS_TOKEN": spec.token,
            "ANIMUS_PROJECT": spec.project,
            "ANIMUS_RUN_ID": spec.run_id,
            "ANIMUS_RUN_ATTEMPT": str(spec.attempt),
            "ANIMUS_RUNNER_CACHE": self.cache_dir,
            "ANIMUS_HEARTBEAT_INTERVAL": str(spec.heartbeat_interval),
        }
        env.update(spec.secret_environment)
        memory = spec.resources.get("memory_mb")
        if memory:
            env["ANIMUS_MEMORY_LIMIT_MB"] = str(int(memory))
        return env

    def _limits(self, spec: LaunchSpec):
        cpu_seconds = None
        if spec.timeout_seconds:
            cores = max(1.0, float(spec.resources.get("cpu") or 1))
            cpu_seconds = int(spec.timeout_seconds * cores) + 60

        def apply() -> None:  # runs in the child between fork and exec
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if cpu_seconds:
                resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 30))

        return apply

    async def launch(self, spec: LaunchSpec) -> str:
        workdir = Path(self.work_dir) / spec.run_id / f"attempt-{spec.attempt}"
        for sub in ("", "home", "tmp"):
            (workdir / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        Path(self.cache_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
        log = open(workdir / "runner.log", "ab")  # noqa: SIM115 (handed to the child)
        try:
            proc = subprocess.Popen(  # noqa: S603 (our own runner, a fixed command)
                self.runner_command,
                cwd=workdir,
                env=self._environment(spec, workdir),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=self._limits(spec),  # noqa: PLW1509 (only setrlimit)
                close_fds=True,
            )
        finally:
            log.close()
        self._procs[proc.pid] = proc
        started = _start_time(proc.pid) or ""
        self.log.info("run %s attempt %s: runner pid %s in %s", spec.run_id, spec.attempt, proc.pid, workdir)
        return f"local:{proc.pid}:{started}"

    def _reap(self, pid: int) -> None:
        proc = self._procs.get(pid)
        if proc is not None and proc.poll() is not None:
            del self._procs[pid]

    def _running(self, pid: int, started: str) -> bool:
        self._reap(pid)
        now = _start_time(pid)
        return now is not None and (not started or now == started)

    async def alive(self, handle: str) -> bool | None:
        parsed = parse_handle(handle)
        if parsed is None:
            return None
        return self._running(*parsed)

    async def stop(self, handle: str, grace: float = 0.0) -> None:
        parsed = parse_handle(handle)
        if parsed is None:
            return
        pid, started = parsed
        deadline = asyncio.get_running_loop().time() + grace
        while grace > 0 and self._running(pid, started) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        if self._running(pid, started):
            self._signal(pid, signal.SIGTERM)
            deadline = asyncio.get_running_loop().time() + self.kill_grace_seconds
            while self._running(pid, started) and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.1)
        # the group may outlive its leader (the user's own child processes): kill what is left
        if started == "" or _start_time(pid) in (None, started):
            self._signal(pid, signal.SIGKILL)
        self._reap(pid)

    @staticmethod
    def _signal(pgid: int, sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    async def close(self) -> None:
        for pid in list(self._procs):
            self._reap(pid)
