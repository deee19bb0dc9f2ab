"""Experiment tracking: Animus next to an MLflow tracking server, in one run on one machine.

    python benchmarks/tracking.py [--quick] [--mlflow-workers 1] [--keep]

Starts an MLflow 3.17 tracking server (SQLite backend, its own venv under
.cache/bench/mlflow-venv, created on first use) and a real embedded Animus stack
(tests/stack.py) in a temporary directory, and drives the same workload through the
same MLflow client (a subprocess of the MLflow venv's python) against both:

  (a) single `log_metric` calls from 1 and from 8 threads (each thread its own run),
      time-boxed, calls/s;
  (b) `log_batch` of 1,000 metrics, repeated (time-boxed), metrics/s;
  (c) 2,000 runs created as a user would (create_run + log_batch of 5 params and
      5 metrics + set_terminated), runs/s; then a filtered, ordered `search_runs`
      of 100 results, repeated, median ms;
  (d) `get_metric_history` of a 10,000-point metric, repeated, median ms;

then the servers' resident memory, and the Animus SDK (`run.log_metric`, background
batched, then `run.flush()`) against Animus. Prints each figure for both, the ratio
and the issue's goal as information (never an assertion), and writes the results as
JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from api_throughput import free_port, log, run_and_save  # noqa: E402

MLFLOW_VENV = REPO / ".cache" / "bench" / "mlflow-venv"
MLFLOW_SPEC = "mlflow==3.17.*"
MLFLOW_SERIES = "3.17."
PROJECT = "bench"

# every client and server environment: nothing phones home, no long back-off on an error
QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "GIT_PYTHON_REFRESH": "quiet",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "300",
    "PYTHONUNBUFFERED": "1",
}


# =============================================================================
# The MLflow venv
# =============================================================================


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def mlflow_version(venv: Path) -> str | None:
    py = venv_python(venv)
    if not py.exists():
        return None
    r = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; print(m.version('mlflow'))"],
        capture_output=True,
        text=True,
        env={**os.environ, **QUIET_ENV},
    )
    return r.stdout.strip() if r.returncode == 0 else None


def ensure_mlflow_venv(venv: Path = MLFLOW_VENV) -> str:
    """The MLflow venv (created with `python -m venv` + pip on first use); returns MLflow's version."""
    version = mlflow_version(venv)
    if version and version.startswith(MLFLOW_SERIES) and (venv / "bin" / "mlflow").exists():
        return version
    log(f"creating {venv} with {MLFLOW_SPEC} (first use; a few minutes) ...")
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv_python(venv)), "-m", "pip", "install", "--quiet", MLFLOW_SPEC], check=True)
    version = mlflow_version(venv)
    if not version or not version.startswith(MLFLOW_SERIES):
        raise RuntimeError(f"{venv}: expected MLflow {MLFLOW_SERIES}x, found {version}")
    return version


# =============================================================================
# The MLflow client worker: runs with the MLflow venv's python
#   (--mlflow-worker SPEC_JSON; MLFLOW_TRACKING_URI/TOKEN in the environment;
#    prints "RESULT <json>")
# =============================================================================


def _median_ms(samples: list[float]) -> float:
    return 1000.0 * statistics.median(samples)


def _wl_log_metric(client: Any, exp: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Single log_metric calls from N threads (each its own run) for a fixed window: calls/s."""
    n, duration = int(spec["threads"]), float(spec["duration"])
    runs = [client.create_run(exp, run_name=f"log-metric-{n}t-{i}").info.run_id for i in range(n)]
    counts = [0] * n
    errors: list[str] = []
    stop = threading.Event()
    ready = threading.Barrier(n + 1)

    def work(i: int) -> None:
        rid, step = runs[i], 0
        try:
            for _ in range(3):  # warm-up: connection, first statements
                client.log_metric(rid, "warmup", 0.0, step=step)
                step += 1
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e)[:300])
        ready.wait()
        while not stop.is_set() and not errors:
            try:
                client.log_metric(rid, "loss", 1.0 / (step + 1), step=step)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e)[:300])
                return
            step += 1
            counts[i] += 1

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    ready.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    stop.wait(duration)
    done, t1, c1 = sum(counts), time.perf_counter(), time.process_time()  # the calls completed inside the window
    stop.set()
    for t in threads:
        t.join(timeout=120)
    return {
        "calls": done,
        "seconds": t1 - t0,
        "value": done / (t1 - t0),
        "unit": "calls/s",
        "client_cpu_ms_per_call": 1000 * (c1 - c0) / done if done else None,
        "errors": errors,
    }


def _wl_log_batch(client: Any, exp: str, spec: dict[str, Any]) -> dict[str, Any]:
    """log_batch of `batch` metrics (10 keys x batch/10 steps), repeated for a window: metrics/s."""
    from mlflow.entities import Metric

    size, duration = int(spec["batch"]), float(spec["duration"])
    rid = client.create_run(exp, run_name="log-batch").info.run_id
    keys = 10
    step = 0

    def batch() -> list[Any]:
        nonlocal step
        ts = int(time.time() * 1000)
        out = [Metric(f"m{k}", (step + j) * 0.001 + k, ts, step + j) for j in range(size // keys) for k in range(keys)]
        step += size // keys
        return out

    client.log_batch(rid, metrics=batch())  # warm-up
    sent, calls, errors = 0, 0, []
    t0, c0 = time.perf_counter(), time.process_time()
    t1 = t0
    while t1 - t0 < duration:
        b = batch()
        try:
            client.log_batch(rid, metrics=b)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e)[:300])
            break
        t1 = time.perf_counter()
        sent += len(b)
        calls += 1
    return {
        "metrics": sent,
        "calls": calls,
        "seconds": t1 - t0,
        "value": sent / (t1 - t0) if t1 > t0 else 0.0,
        "unit": "metrics/s",
        "client_cpu_ms_per_call": 1000 * (time.process_time() - c0) / calls if calls else None,
        "errors": errors,
    }


SEARCH_FILTER = "metrics.m0 > 0.5 and params.p1 = 'b'"
SEARCH_ORDER = ["metrics.m1 DESC"]


def _wl_runs_and_search(client: Any, exp: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Create N runs as a user would (5 params, 5 metrics, terminated): runs/s; then search_runs: median ms."""
    import random

    from mlflow.entities import Metric, Param

    n, searches = int(spec["runs"]), int(spec["searches"])
    rng = random.Random(20240501)  # the same data on both servers
    errors: list[str] = []
    t0, c0 = time.perf_counter(), time.process_time()
    created = 0
    for i in range(n):
        try:
            rid = client.create_run(exp, run_name=f"r{i:05d}").info.run_id
            ts = int(time.time() * 1000)
            params = [Param("p0", str(i)), Param("p1", "abc"[i % 3])] + [
                Param(f"p{j}", f"v{rng.randrange(1000)}") for j in range(2, 5)
            ]
            metrics = [Metric(f"m{j}", rng.random(), ts, 0) for j in range(5)]
            client.log_batch(rid, metrics=metrics, params=params)
            client.set_terminated(rid)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e)[:300])
            break
        created += 1
    t1 = time.perf_counter()
    create = {
        "runs": created,
        "seconds": t1 - t0,
        "value": created / (t1 - t0),
        "unit": "runs/s",
        "client_cpu_ms_per_call": 1000 * (time.process_time() - c0) / created if created else None,
        "errors": errors,
    }
    samples, names, errors = [], [], []
    c0 = time.process_time()
    for _ in range(searches):
        s0 = time.perf_counter()
        try:
            found = client.search_runs([exp], filter_string=SEARCH_FILTER, order_by=SEARCH_ORDER, max_results=100)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e)[:300])
            break
        samples.append(time.perf_counter() - s0)
        names = [r.info.run_name for r in found]
    search = {
        "searches": len(samples),
        "results": len(names),
        "first": names[:3],
        "names": names,
        "samples_ms": [round(1000 * s, 2) for s in samples],
        "value": _median_ms(samples) if samples else None,
        "unit": "ms (median)",
        "client_cpu_ms_per_call": 1000 * (time.process_time() - c0) / len(samples) if samples else None,
        "errors": errors,
    }
    return {"create": create, "search": search}


def _wl_history(client: Any, exp: str, spec: dict[str, Any]) -> dict[str, Any]:
    """One run with an N-point metric (logged with log_batch), then get_metric_history: median ms."""
    from mlflow.entities import Metric

    points, repeats = int(spec["points"]), int(spec["repeats"])
    rid = client.create_run(exp, run_name="history").info.run_id
    ts = int(time.time() * 1000)
    for start in range(0, points, 1000):
        client.log_batch(
            rid, metrics=[Metric("loss", 1.0 / (s + 1), ts + s, s) for s in range(start, min(points, start + 1000))]
        )
    samples, got, errors = [], 0, []
    c0 = time.process_time()
    for _ in range(repeats):
        s0 = time.perf_counter()
        try:
            hist = client.get_metric_history(rid, "loss")
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e)[:300])
            break
        samples.append(time.perf_counter() - s0)
        got = len(hist)
    if got != points and not errors:
        errors.append(f"get_metric_history returned {got} points, expected {points}")
    return {
        "points": got,
        "repeats": len(samples),
        "samples_ms": [round(1000 * s, 2) for s in samples],
        "value": _median_ms(samples) if samples else None,
        "unit": "ms (median)",
        "client_cpu_ms_per_call": 1000 * (time.process_time() - c0) / len(samples) if samples else None,
        "errors": errors,
    }


WORKLOADS = {
    "log_metric": _wl_log_metric,
    "log_batch": _wl_log_batch,
    "runs_and_search": _wl_runs_and_search,
    "history": _wl_history,
}


def mlflow_worker_main(spec_json: str) -> None:
    import mlflow
    from mlflow import MlflowClient

    spec = json.loads(spec_json)
    client = MlflowClient()
    exp = client.create_experiment(spec["experiment"])
    result = WORKLOADS[spec["workload"]](client, exp, spec)
    result["client_version"] = mlflow.__version__
    print("RESULT " + json.dumps(result), flush=True)


# =============================================================================
# The Animus SDK worker: runs with the project venv's python (--sdk-worker SPEC_JSON)
# =============================================================================


def sdk_worker_main(spec_json: str) -> None:
    import animus
    from animus.client import Client

    spec = json.loads(spec_json)
    duration, cap = float(spec["duration"]), int(spec["max_points"])
    client = Client(url=spec["api_url"], token=spec["token"])
    run = animus.start_run(project=spec["project"], name="sdk-log-metric", client=client)
    errors: list[str] = []
    run.log_metric("warmup", 0.0)
    run.flush()
    n = 0
    t0 = time.perf_counter()
    try:
        while n < cap and (n & 1023 or time.perf_counter() - t0 < duration):
            run.log_metric("loss", 1.0 / (n + 1), step=n)
            n += 1
    except Exception as e:  # noqa: BLE001
        errors.append(repr(e)[:300])
    t1 = time.perf_counter()
    try:
        run.flush(timeout=float(spec["flush_timeout"]))
    except Exception as e:  # noqa: BLE001
        errors.append(repr(e)[:300])
    t2 = time.perf_counter()
    sender = run._sender
    if sender.pending:
        errors.append(f"{sender.pending} points still queued after the flush timeout")
    sent = sender.sent_points - 1  # less the warm-up point
    try:
        run.end()
    except Exception as e:  # noqa: BLE001
        errors.append(repr(e)[:300])
    stored_n = client.metric_history(spec["project"], run.id, "loss", max_points=2).get("total_points")
    result = {
        "logged": n,
        "sent": sent,
        "stored_points_read_back": stored_n,
        "loop_seconds": t1 - t0,
        "flush_seconds": t2 - t1,
        "enqueue_per_s": n / (t1 - t0),
        "value": sent / (t2 - t0),
        "unit": "points/s incl. flush",
        "errors": errors,
    }
    print("RESULT " + json.dumps(result), flush=True)


# =============================================================================
# Resident memory of process trees, sampled in the background (for the peak)
# =============================================================================


def tree(pid: int | None, children: bool = True) -> list[Any]:
    import psutil

    if not pid:
        return []
    try:
        p = psutil.Process(pid)
        return [p, *(p.children(recursive=True) if children else [])]
    except psutil.Error:
        return []


def rss_mb(procs: list[Any]) -> float | None:
    import psutil

    total, seen = 0, False
    for p in procs:
        try:
            total += p.memory_info().rss
            seen = True
        except psutil.Error:
            continue
    return total / 2**20 if seen else None


def cpu_s(procs: list[Any]) -> float:
    import psutil

    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            continue
    return total


def _is_uvicorn(p: Any) -> bool:
    try:
        return "uvicorn" in p.cmdline()
    except Exception:  # noqa: BLE001
        return False


class MemorySampler(threading.Thread):
    """Samples the RSS of named process groups every `interval` seconds; keeps the peak."""

    def __init__(self, groups: dict[str, Any], interval: float = 1.0):
        super().__init__(name="rss-sampler", daemon=True)
        self.groups = groups  # name -> callable returning the group's processes
        self.interval = interval
        self.peak: dict[str, float] = {}
        self.stopping = threading.Event()

    def sample(self) -> dict[str, float | None]:
        now = {name: rss_mb(procs()) for name, procs in self.groups.items()}
        for name, mb in now.items():
            if mb is not None:
                self.peak[name] = max(self.peak.get(name, 0.0), mb)
        return now

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.sample()


# =============================================================================
# The driver
# =============================================================================

# (key, label, unit, higher is better, goal as Animus ÷ MLflow)
ROWS = [
    ("log_metric_1t", "(a) log_metric, 1 thread", "calls/s", True, 10.0),
    ("log_metric_8t", "(a) log_metric, 8 threads", "calls/s", True, 10.0),
    ("log_batch", "(b) log_batch of 1,000", "metrics/s", True, 10.0),
    ("create_runs", "(c) create runs (5p+5m)", "runs/s", True, 10.0),
    ("search_runs", "(c) search_runs, 100", "ms", False, 0.10),
    ("metric_history", "(d) get_metric_history", "ms", False, 0.05),
    ("memory", "resident memory", "MB", False, 0.25),
]


def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return {"window": 3.0, "runs": 100, "searches": 5, "points": 2000, "repeats": 3, "sdk_window": 3.0}
    return {"window": 15.0, "runs": 2000, "searches": 20, "points": 10_000, "repeats": 10, "sdk_window": 15.0}


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.size = sizes(args.quick)
        self.tmp: Path | None = None
        self.stack: Any = None
        self.mlflow: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.sampler: MemorySampler | None = None
        self.api_pid: int | None = None
        self.proxy_pid: int | None = None
        self.gateway_pid: int | None = None

    # --- setup ---------------------------------------------------------------

    def start_mlflow(self) -> None:
        self.mlflow_version = ensure_mlflow_venv()
        port = free_port()
        data = self.tmp / "mlflow"
        (data / "artifacts").mkdir(parents=True)
        self.mlflow_url = f"http://127.0.0.1:{port}"
        cmd = [
            str(MLFLOW_VENV / "bin" / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{data / 'mlflow.db'}",
            "--default-artifact-root",
            str(data / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(self.args.mlflow_workers),
        ]
        log(f"starting MLflow {self.mlflow_version} on {self.mlflow_url} ({self.args.mlflow_workers} worker) ...")
        self.mlflow_log = open(data / "server.log", "ab")
        self.mlflow = subprocess.Popen(
            cmd,
            cwd=data,
            env={**os.environ, **QUIET_ENV},
            stdout=self.mlflow_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole at the end
        )
        import requests

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.mlflow.poll() is not None:
                raise RuntimeError(f"the MLflow server exited; log: {data / 'server.log'}")
            try:
                if requests.get(self.mlflow_url + "/health", timeout=2).status_code == 200:
                    self.settle("the MLflow server", lambda: tree(self.mlflow.pid))
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the MLflow server did not come up; log: {data / 'server.log'}")

    def settle(self, what: str, procs: Any, limit: float = 90) -> None:
        """Wait until a freshly started server's process tree is (nearly) idle: start-up work is not measured."""
        t_end = time.monotonic() + limit
        while time.monotonic() < t_end:
            c0 = cpu_s(procs())
            time.sleep(2)
            if cpu_s(procs()) - c0 < 0.2:
                return
        log(f"  {what} still busy after {limit:.0f}s; going on")

    def start_stack(self) -> None:
        sys.path.insert(0, str(REPO / "tests"))
        from stack import HubStack

        self.stack = HubStack(self.tmp / "stack")
        log(f"starting the Animus stack in {self.tmp} ...")
        self.stack.start()
        self.token = self.stack.user_token("bench")
        r = self.stack.api("POST", "/projects", self.token, json={"slug": PROJECT})
        if r.status_code != 201:
            raise RuntimeError(f"could not create the project: {r.status_code} {r.text}")
        self.api_pid = self.find_pid("animus_hub.app")
        self.proxy_pid = self.find_pid("configurable-http-proxy")
        self.gateway_pid = self.find_pid("animus_hub.objectgateway")
        self.settle("the Animus stack", lambda: tree(self.stack.proc.pid))
        from animus_hub.hubconfig import SERVICE_PREFIX

        base = f"http://127.0.0.1:{self.stack.settings.api_port}" if self.args.animus_direct else self.stack.url
        self.animus_uri = f"{base}{SERVICE_PREFIX}mlflow/projects/{PROJECT}"

    def find_pid(self, needle: str) -> int | None:
        for p in tree(self.stack.proc.pid)[1:]:
            try:
                if any(needle in part for part in p.cmdline()):
                    return p.pid
            except Exception:  # noqa: BLE001, S112
                continue
        return None

    def wait_for_mlflow_layer(self) -> None:
        """The MLflow protocol layer must answer (it may still be being routed)."""
        import requests

        url = self.animus_uri + "/api/2.0/mlflow/experiments/search"
        deadline = time.monotonic() + self.args.wait_for_layer
        while True:
            r = requests.post(
                url, json={"max_results": 1}, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
            )
            if r.status_code == 200:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Animus's MLflow layer does not answer at {url}: {r.status_code} {r.text[:200]}")
            log(f"  Animus's MLflow layer answers {r.status_code}; waiting ...")
            time.sleep(30)

    # --- running -------------------------------------------------------------

    def server_procs(self, target: str) -> list[Any]:
        return tree(self.mlflow.pid) if target == "mlflow" else tree(self.api_pid)

    def run_worker(self, cmd: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
        self.worker = subprocess.Popen(
            cmd,
            env=env,
            cwd=self.tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # Ctrl-C reaches only this driver, which stops it
        )
        try:
            out, err = self.worker.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop_proc(self.worker)
            return {"value": None, "errors": [f"the worker did not finish in {timeout:.0f}s"]}
        rc, self.worker = self.worker.returncode, None
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        if rc != 0 or not lines:
            return {"value": None, "errors": [f"the worker failed (exit {rc}): {err.strip()[-1500:]}"]}
        return json.loads(lines[-1][len("RESULT ") :])

    def run_mlflow_client(self, target: str, workload: str, **spec: Any) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "JUPYTERHUB_", "ANIMUS_"))}
        env.update(QUIET_ENV, HOME=str(self.tmp))
        if target == "mlflow":
            env["MLFLOW_TRACKING_URI"] = self.mlflow_url
        else:
            env["MLFLOW_TRACKING_URI"] = self.animus_uri
            env["MLFLOW_TRACKING_TOKEN"] = self.token
        self.counter += 1
        spec = {"workload": workload, "experiment": f"{workload}-{self.counter}", **spec}
        procs = self.server_procs(target)
        c0 = cpu_s(procs)
        w0 = time.perf_counter()
        result = self.run_worker(
            [str(venv_python(MLFLOW_VENV)), __file__, "--mlflow-worker", json.dumps(spec)], env, timeout=3600
        )
        result["wall_seconds"] = time.perf_counter() - w0
        result["server_cpu_s"] = cpu_s(procs) - c0
        return result

    def measure(self) -> dict[str, dict[str, Any]]:
        sz = self.size
        out: dict[str, dict[str, Any]] = {}
        for target in ("mlflow", "animus"):
            out[target] = {}
        self.counter = 0
        for key, workload, spec in [
            ("log_metric_1t", "log_metric", {"threads": 1, "duration": sz["window"]}),
            ("log_metric_8t", "log_metric", {"threads": 8, "duration": sz["window"]}),
            ("log_batch", "log_batch", {"batch": 1000, "duration": sz["window"]}),
            ("runs_and_search", "runs_and_search", {"runs": sz["runs"], "searches": sz["searches"]}),
            ("metric_history", "history", {"points": sz["points"], "repeats": sz["repeats"]}),
        ]:
            for target in ("mlflow", "animus"):
                log(f"  {key:16} {target:7} ...")
                r = self.run_mlflow_client(target, workload, **spec)
                if key == "runs_and_search":
                    for sub, name in (("create", "create_runs"), ("search", "search_runs")):
                        part = r.get(sub) or {"value": None, "errors": r.get("errors", [])}
                        part["server_cpu_s"] = r.get("server_cpu_s")
                        out[target][name] = part
                else:
                    out[target][key] = r
                shown = out[target]["create_runs" if key == "runs_and_search" else key]
                log(
                    f"  {'':16} {target:7} {fmt(shown.get('value'))} {shown.get('unit', '')}"
                    + (f"  ERRORS: {shown['errors'][:1]}" if shown.get("errors") else "")
                )
        return out

    def memory(self) -> dict[str, Any]:
        now = self.sampler.sample()
        return {name: {"end_mb": mb, "peak_mb": self.sampler.peak.get(name)} for name, mb in now.items()}

    def run_sdk(self) -> dict[str, Any]:
        spec = {
            "api_url": self.stack.api_url,
            "token": self.token,
            "project": PROJECT,
            "duration": self.size["sdk_window"],
            "max_points": self.args.sdk_max_points,
            "flush_timeout": 600,
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "ANIMUS_"))}
        env.update(PYTHONUNBUFFERED="1", HOME=str(self.tmp))
        procs = self.server_procs("animus")
        c0 = cpu_s(procs)
        log("  sdk log_metric   animus  ...")
        r = self.run_worker([sys.executable, __file__, "--sdk-worker", json.dumps(spec)], env, timeout=900)
        r["server_cpu_s"] = cpu_s(procs) - c0
        log(f"  {'':16} animus  {fmt(r.get('value'))} {r.get('unit', '')}")
        return r

    def run(self) -> dict[str, Any]:
        self.tmp = Path(tempfile.mkdtemp(prefix="animus-bench-tracking-"))
        self.start_mlflow()
        self.start_stack()
        self.wait_for_mlflow_layer()
        self.sampler = MemorySampler(
            {
                "mlflow server": lambda: tree(self.mlflow.pid),
                "(of which uvicorn)": lambda: [p for p in tree(self.mlflow.pid) if _is_uvicorn(p)],
                "animus-api": lambda: tree(self.api_pid),
                "jupyterhub": lambda: tree(self.stack.proc.pid, children=False),
                "proxy": lambda: tree(self.proxy_pid),
                "object gateway": lambda: tree(self.gateway_pid),
            }
        )
        self.sampler.start()
        start_mem = self.memory()
        figures = self.measure()
        mem = self.memory()
        sdk = self.run_sdk()
        mem_after_sdk = self.memory()
        self.sampler.stopping.set()
        figures["mlflow"]["memory"] = {"value": mem["mlflow server"]["end_mb"], "unit": "MB", **mem["mlflow server"]}
        figures["animus"]["memory"] = {"value": mem["animus-api"]["end_mb"], "unit": "MB", **mem["animus-api"]}
        return self.report(figures, sdk, {"start": start_mem, "end": mem, "after_sdk": mem_after_sdk})

    # --- reporting ------------------------------------------------------------

    def report(self, figures: dict[str, Any], sdk: dict[str, Any], memory: dict[str, Any]) -> dict[str, Any]:
        sz = self.size
        print()
        print(
            f"MLflow {self.mlflow_version} (SQLite, --workers {self.args.mlflow_workers}) vs Animus "
            f"(SQLite, MLflow client {'direct to animus-api' if self.args.animus_direct else 'through the proxy'}); "
            f"{'QUICK sizes; ' if self.args.quick else ''}{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
        )
        header = (
            f"{'workload':28} {'unit':>9} {'MLflow':>10} {'Animus':>10} {'Animus÷MLflow':>14} {'goal':>7} {'met?':>5}"
        )
        print(header)
        print("-" * len(header))
        goals = {}
        for key, label, unit, higher, goal in ROWS:
            m, a = figures["mlflow"].get(key, {}), figures["animus"].get(key, {})
            mv, av = m.get("value"), a.get("value")
            ratio = av / mv if mv and av is not None else None
            bad = bool(m.get("errors") or a.get("errors"))
            met = None if ratio is None or bad else (ratio >= goal if higher else ratio <= goal)
            goals[key] = {
                "mlflow": mv,
                "animus": av,
                "ratio": ratio,
                "goal": goal,
                "higher_is_better": higher,
                "met": met,
            }
            goal_s = f"≥{goal:g}×" if higher else f"≤{goal:g}×"
            print(
                f"{label:28} {unit:>9} {fmt(mv):>10} {fmt(av):>10} {fmt(ratio, '.3g') + '×' if ratio else '-':>14} "
                f"{goal_s:>7} {'-' if met is None else ('yes' if met else 'NO'):>5}"
            )
        print(
            f"(sizes: (a) {sz['window']:g}s windows; (b) {sz['window']:g}s of 1,000-metric batches; (c) {sz['runs']} runs, "
            f"median of {sz['searches']} searches; (d) {sz['points']} points, median of {sz['repeats']}; memory = RSS of "
            f"the server's process tree after the workloads: MLflow's server, animus-api)"
        )
        cpu = []
        for key, label, *_ in ROWS[:-1]:
            m, a = figures["mlflow"].get(key, {}), figures["animus"].get(key, {})
            cpu.append(f"{label[4:]} {fmt(m.get('client_cpu_ms_per_call'))}/{fmt(a.get('client_cpu_ms_per_call'))}")
        print("the MLflow client process's own CPU ms per operation (a run in (c)), MLflow/Animus: " + "; ".join(cpu))
        search = (figures["mlflow"].get("search_runs", {}), figures["animus"].get("search_runs", {}))
        if search[0].get("names") is not None and search[1].get("names") is not None:
            same = search[0]["names"] == search[1]["names"]
            print(
                f"search_runs returned {search[0].get('results')} (MLflow) and {search[1].get('results')} (Animus) runs; "
                f"same runs in the same order: {'yes' if same else 'NO'}"
            )
        print()
        print(
            f"Animus SDK run.log_metric, 1 thread, {sz['sdk_window']:g}s then flush: {fmt(sdk.get('value'))} points/s "
            f"including the flush ({sdk.get('logged', 0):,} points; loop {fmt(sdk.get('loop_seconds'))}s, "
            f"flush {fmt(sdk.get('flush_seconds'))}s; {sdk.get('stored_points_read_back')} stored)"
        )
        end = memory["end"]
        print(
            "resident memory after the workloads (MB, RSS; peak in brackets): "
            + ", ".join(f"{name} {fmt(v['end_mb'])} [{fmt(v['peak_mb'])}]" for name, v in end.items())
        )
        errors = [
            (target, key, r["errors"])
            for target, rows in figures.items()
            for key, r in rows.items()
            if isinstance(r, dict) and r.get("errors")
        ]
        if sdk.get("errors"):
            errors.append(("animus", "sdk", sdk["errors"]))
        if errors:
            print()
            print("!" * 78)
            for target, key, errs in errors:
                print(f"!!! ERRORS: {target} {key}: {errs[:3]}: its figure is NOT valid")
            print("!" * 78)
        return {
            "benchmark": "tracking",
            "time": dt.datetime.now(dt.UTC).isoformat(),
            "settings": {
                "quick": self.args.quick,
                "sizes": sz,
                "mlflow_version": self.mlflow_version,
                "mlflow_workers": self.args.mlflow_workers,
                "animus_direct": self.args.animus_direct,
                "search": {"filter": SEARCH_FILTER, "order_by": SEARCH_ORDER, "max_results": 100},
            },
            "machine": {
                "cpus": os.cpu_count(),
                "loadavg": os.getloadavg(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "goals": goals,
            "results": figures,
            "sdk": sdk,
            "memory_mb": memory,
        }

    # --- cleanup ---------------------------------------------------------------

    @staticmethod
    def stop_proc(proc: subprocess.Popen | None, grace: float = 15) -> None:
        """Stop a process started in its own session, with its whole process group."""
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # children that outlived their parent
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def cleanup(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        if self.sampler is not None:
            self.sampler.stopping.set()
        self.stop_proc(self.worker, grace=5)
        self.stop_proc(self.mlflow)
        if getattr(self, "mlflow_log", None):
            self.mlflow_log.close()
        if self.stack is not None:
            try:
                self.stack.stop()
            except Exception as e:  # noqa: BLE001
                print(f"warning: stopping the stack: {e}", file=sys.stderr)
        if self.tmp is not None:
            if self.args.keep:
                log(f"kept {self.tmp}")
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)


def fmt(v: float | None, spec: str = "") -> str:
    if v is None:
        return "-"
    if spec:
        return format(v, spec)
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes and 3s windows: a smoke run")
    p.add_argument("--mlflow-workers", type=int, default=1, help="MLflow server worker processes (default 1)")
    p.add_argument(
        "--animus-direct",
        action="store_true",
        help="send the MLflow client straight to animus-api's port instead of through the proxy",
    )
    p.add_argument(
        "--sdk-max-points",
        type=int,
        default=2_000_000,
        help="stop the SDK loop early at this many points (its queue is unbounded; default 2,000,000)",
    )
    p.add_argument(
        "--wait-for-layer",
        type=float,
        default=0,
        help="seconds to wait for Animus's MLflow layer to answer (default 0: fail at once)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (server logs, databases)")
    p.add_argument("--setup", action="store_true", help="only create the MLflow venv")
    p.add_argument("--mlflow-worker", help=argparse.SUPPRESS)
    p.add_argument("--sdk-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.mlflow_worker:
        mlflow_worker_main(args.mlflow_worker)
        return 0
    if args.sdk_worker:
        sdk_worker_main(args.sdk_worker)
        return 0
    if args.setup:
        print(f"MLflow {ensure_mlflow_venv()} in {MLFLOW_VENV}")
        return 0

    return run_and_save(Bench(args), "tracking")


if __name__ == "__main__":
    sys.exit(main())
