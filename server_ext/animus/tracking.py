"""Experiment tracking from Python: runs, params, metrics, tags.

    import animus

    with animus.start_run(experiment="churn", name="rf-baseline") as run:
        animus.log_params({"n_estimators": 200, "max_depth": 8})
        for step, loss in enumerate(losses):
            animus.log_metric("loss", loss, step=step)   # returns at once

Metrics are queued and sent in the background in batches, so a training loop is
not slowed; the queue is flushed by ``flush()``, at ``end_run()`` and when the
interpreter exits. Each batch carries an ``Idempotency-Key``: a batch whose answer
was lost to a broken connection is re-sent with the same key and the server
stores it once, so points are neither lost nor duplicated. Params and tags are
sent at once, so a conflicting param fails where it is logged.

The project comes from ``start_run(project=...)`` or ``$ANIMUS_PROJECT``.

Inside a batch run (``animus runs submit``) the runner sets ``$ANIMUS_RUN_ID``:
``start_run()`` and the module-level ``log_*`` functions then log into that run,
and ending it only flushes (the runner reports how the run ended).
"""

from __future__ import annotations

import atexit
import hashlib
import math
import os
import queue
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests

from .client import AnimusAPIError, Client
from .keys import key_problem

BATCH_MAX = 1000
FLUSH_INTERVAL = 1.0
# points waiting to be sent; a loop that logs faster than they can be sent waits here
QUEUE_MAX = 100_000
# transient failures are retried this long before the batch is reported lost
RETRY_HORIZON = 120.0


class TrackingError(Exception):
    """Logging failed for a reason retrying cannot fix (e.g. the run has finished)."""


def _seg(value: str) -> str:
    return quote(value, safe="")


def _json_value(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def git_code_ref(path: str = ".") -> dict[str, str] | None:
    """Repository URL, commit SHA and a digest of uncommitted changes, when in a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", path, *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return None
    ref: dict[str, str] = {"commit_sha": sha}
    try:
        url = git("config", "--get", "remote.origin.url")
        if url:
            ref["repo_url"] = _without_credentials(url)
    except subprocess.SubprocessError:
        pass
    try:
        diff = subprocess.run(["git", "-C", path, "diff", "HEAD", "--binary"], capture_output=True, timeout=30, check=True).stdout
        if diff:
            ref["diff_digest"] = "sha256:" + hashlib.sha256(diff).hexdigest()
    except (OSError, subprocess.SubprocessError):
        pass
    return ref


def _without_credentials(url: str) -> str:
    """https://user:token@host/repo.git → https://host/repo.git: a run shows its URL to every viewer."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return url


class _MetricSender(threading.Thread):
    """Sends queued metric points in batches; retries a batch with the same key until it lands."""

    def __init__(self, run: Run):
        super().__init__(name=f"animus-metrics-{run.id[:8]}", daemon=True)
        self.target = run
        self.queue: queue.Queue[dict | None] = queue.Queue(maxsize=QUEUE_MAX)
        self.flushed = threading.Condition()
        self.pending = 0
        self.error: Exception | None = None
        self.sent_points = 0

    def put(self, point: dict) -> None:
        with self.flushed:
            self.pending += 1
        self.queue.put(point)

    def run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[dict] = []
            try:
                item = self.queue.get(timeout=FLUSH_INTERVAL)
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
            except queue.Empty:
                continue
            deadline = time.monotonic() + 0.05
            while len(batch) < BATCH_MAX:
                try:
                    item = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            if batch:
                self._send(batch)
                with self.flushed:
                    self.pending -= len(batch)
                    self.flushed.notify_all()

    def _send(self, batch: list[dict]) -> None:
        key = uuid.uuid4().hex
        delay, give_up = 0.5, time.monotonic() + RETRY_HORIZON
        while True:
            try:
                self.target.client.request(
                    "POST",
                    f"/projects/{_seg(self.target.project)}/runs/{self.target.id}/log-batch",
                    json_body={"metrics": batch},
                    idempotency_key=key,
                )
                self.sent_points += len(batch)
                return
            except AnimusAPIError as e:
                retryable = e.status == 0 or e.status >= 500 or e.status == 429
                if not retryable or time.monotonic() > give_up:
                    self.error = TrackingError(f"{len(batch)} metric points not logged: {e.message}")
                    return
            time.sleep(delay * (0.5 + random.random()))  # noqa: S311 (jitter, not security)
            delay = min(delay * 2, 10.0)

    def wait_flushed(self, timeout: float | None = None) -> bool:
        with self.flushed:
            return self.flushed.wait_for(lambda: self.pending == 0, timeout=timeout)


class Run:
    """A tracking run of a project. Use `start_run()` rather than constructing it."""

    def __init__(self, client: Client, project: str, data: dict[str, Any]):
        self.client = client
        self.project = project
        self.id: str = data["id"]
        self.experiment_id: str = data["experiment_id"]
        self.name: str = data.get("name", "")
        self._sender = _MetricSender(self)
        self._sender.start()
        self._ended = False
        #: the batch run this process runs in (ANIMUS_RUN_ID): its runner ends it, not we
        self.attached = False

    def __repr__(self) -> str:
        return f"<animus Run {self.id} project={self.project!r} name={self.name!r}>"

    # --- logging --------------------------------------------------------------

    def _raise_background_error(self) -> None:
        if self._sender.error is not None:
            error, self._sender.error = self._sender.error, None
            raise error

    def log_metric(self, key: str, value: float, step: int = 0, timestamp: int | None = None) -> None:
        self._raise_background_error()
        if self._ended:
            raise TrackingError(f"run {self.id} has ended")
        problem = key_problem(key)
        if problem is not None:
            raise ValueError(f"invalid metric key {key!r}: {problem}")
        self._sender.put(
            {
                "key": key,
                "value": _json_value(float(value)),
                "step": int(step),
                "timestamp": int(timestamp if timestamp is not None else time.time() * 1000),
            }
        )

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0, timestamp: int | None = None) -> None:
        for key, value in metrics.items():
            self.log_metric(key, value, step=step, timestamp=timestamp)

    def _log_batch(self, **body: Any) -> None:
        self._raise_background_error()
        self.client.request("POST", f"/projects/{_seg(self.project)}/runs/{self.id}/log-batch", json_body=body)

    def log_param(self, key: str, value: Any) -> None:
        self._log_batch(params=[{"key": key, "value": str(value)}])

    def log_params(self, params: Mapping[str, Any]) -> None:
        items = [{"key": k, "value": str(v)} for k, v in params.items()]
        for i in range(0, len(items), 100):
            self._log_batch(params=items[i : i + 100])

    def set_tag(self, key: str, value: Any) -> None:
        self._log_batch(tags=[{"key": key, "value": str(value)}])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        items = [{"key": k, "value": str(v)} for k, v in tags.items()]
        for i in range(0, len(items), 100):
            self._log_batch(tags=items[i : i + 100])

    def log_artifact(self, local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Upload one file as an artifact (under `artifact_path`/its name)."""
        path = Path(local_path)
        if not path.is_file():
            raise TrackingError(f"{path} is not a file")
        name = f"{artifact_path.strip('/')}/{path.name}" if artifact_path else path.name
        self._log_files([(name, path)])

    def log_artifacts(self, local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        """Upload every file under `local_dir`, keeping relative paths (under `artifact_path`)."""
        root = Path(local_dir)
        if not root.is_dir():
            raise TrackingError(f"{root} is not a directory")
        prefix = f"{artifact_path.strip('/')}/" if artifact_path else ""
        files = [(prefix + p.relative_to(root).as_posix(), p) for p in sorted(root.rglob("*")) if p.is_file()]
        for i in range(0, len(files), 1000):
            self._log_files(files[i : i + 1000])

    def _log_files(self, files: list[tuple[str, Path]]) -> None:
        """Content-addressed: hash, ask which blobs are missing, PUT those straight to storage, commit."""
        self._raise_background_error()
        manifest = [{"path": name, "sha256": _sha256_file(p), "size": p.stat().st_size} for name, p in files]
        by_digest = {m["sha256"]: p for m, (_, p) in zip(manifest, files, strict=True)}
        base = f"/projects/{_seg(self.project)}/runs/{self.id}/artifacts"
        plan = self.client.request("POST", base + "/upload", json_body={"files": manifest})
        for up in plan["uploads"]:
            with by_digest[up["sha256"]].open("rb") as f:
                r = requests.put(up["url"], data=f, headers=up.get("headers") or {}, timeout=600)
            if r.status_code >= 300:
                raise TrackingError(f"upload of {by_digest[up['sha256']]} failed: HTTP {r.status_code} {r.text[:200]}")
        self.client.request("POST", base + "/commit", json_body={"files": manifest})

    def flush(self, timeout: float | None = None) -> None:
        """Block until every queued metric point has been sent (or failed)."""
        self._sender.wait_flushed(timeout)
        self._raise_background_error()

    def end(self, status: str = "succeeded") -> None:
        """Flush, then mark the run finished with `status` (succeeded, failed or cancelled)."""
        if self._ended:
            return
        try:
            self.flush()
        finally:
            self._ended = True
            self._sender.queue.put(None)
            if not self.attached:
                self.client.request(
                    "PATCH", f"/projects/{_seg(self.project)}/runs/{self.id}", json_body={"status": status}
                )

    def info(self) -> dict[str, Any]:
        """The run as the API has it now (params, tags, latest metrics)."""
        return self.client.request("GET", f"/projects/{_seg(self.project)}/runs/{self.id}")


_active: list[Run] = []
_lock = threading.Lock()


_uncaught: list[BaseException] = []
_previous_excepthook = sys.excepthook


def _note_uncaught(exc_type, exc, tb) -> None:
    _uncaught.append(exc)
    _previous_excepthook(exc_type, exc, tb)


sys.excepthook = _note_uncaught


def _end_active_runs_at_exit() -> None:
    # a script that died of an uncaught exception failed; one that got to the end succeeded
    status = "failed" if _uncaught else "succeeded"
    for run in list(_active):
        try:
            run.end(status)
        except Exception:  # noqa: S110  (best effort at interpreter exit)
            pass


atexit.register(_end_active_runs_at_exit)


def _project(project: str | None) -> str:
    project = project or os.environ.get("ANIMUS_PROJECT")
    if not project:
        raise TrackingError("No project: pass start_run(project=...) or set ANIMUS_PROJECT")
    return project


class _RunContext:
    """What start_run returns: the Run itself, usable as a context manager."""

    def __init__(self, run: Run):
        self.run = run

    def __enter__(self) -> Run:
        return self.run

    def __exit__(self, exc_type, exc, tb) -> None:
        status = "succeeded" if exc_type is None else ("cancelled" if exc_type is KeyboardInterrupt else "failed")
        end_run(status, run=self.run)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.run, name)


def start_run(
    experiment: str | None = None,
    name: str = "",
    *,
    project: str | None = None,
    tags: Mapping[str, Any] | None = None,
    record_code: bool = True,
    client: Client | None = None,
) -> _RunContext:
    """Start a run in `experiment` (created if missing; "Default" when omitted) and make it active.

    Inside a git checkout the run records the repository URL, the commit SHA and a
    digest of uncommitted changes.
    """
    batch_run = _attach_batch_run(client)
    if batch_run is not None:
        if tags:
            batch_run.set_tags(tags)
        return _RunContext(batch_run)
    client = client or Client()
    project = _project(project)
    body: dict[str, Any] = {"name": name, "tags": {k: str(v) for k, v in (tags or {}).items()}}
    if experiment:
        body["experiment"] = experiment
    if record_code:
        ref = git_code_ref()
        if ref:
            body["code"] = ref
    data = client.request("POST", f"/projects/{_seg(project)}/runs", json_body=body)
    run = Run(client, project, data)
    with _lock:
        _active.append(run)
    return _RunContext(run)


def _attach_batch_run(client: Client | None = None) -> Run | None:
    """The batch run named by $ANIMUS_RUN_ID (set by animus-runner), made the active run once."""
    run_id = os.environ.get("ANIMUS_RUN_ID")
    if not run_id:
        return None
    with _lock:
        for run in _active:
            if run.id == run_id:
                return run
    client = client or Client()
    project = _project(None)
    data = client.request("GET", f"/projects/{_seg(project)}/runs/{_seg(run_id)}")
    run = Run(client, project, data)
    run.attached = True
    with _lock:
        _active.append(run)
    return run


def active_run() -> Run | None:
    if not _active and os.environ.get("ANIMUS_RUN_ID"):
        return _attach_batch_run()
    return _active[-1] if _active else None


def _require_active() -> Run:
    run = active_run()
    if run is None:
        raise TrackingError("No active run: call animus.start_run() first")
    return run


def end_run(status: str = "succeeded", run: Run | None = None) -> None:
    run = run or active_run()
    if run is None:
        return
    with _lock:
        if run in _active:
            _active.remove(run)
    run.end(status)


def log_metric(key: str, value: float, step: int = 0, timestamp: int | None = None) -> None:
    _require_active().log_metric(key, value, step, timestamp)


def log_metrics(metrics: Mapping[str, float], step: int = 0, timestamp: int | None = None) -> None:
    _require_active().log_metrics(metrics, step, timestamp)


def log_param(key: str, value: Any) -> None:
    _require_active().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    _require_active().log_params(params)


def set_tag(key: str, value: Any) -> None:
    _require_active().set_tag(key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    _require_active().set_tags(tags)


def flush() -> None:
    _require_active().flush()


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    _require_active().log_artifact(local_path, artifact_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    _require_active().log_artifacts(local_dir, artifact_path)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
