"""animus-api throughput and latency next to a bare Tornado JSON handler, in one run.

    python benchmarks/api_throughput.py [--duration 10] [--connections 32]
                                        [--db sqlite|postgresql] [--via-proxy]

Starts a real embedded Animus stack (JupyterHub + proxy + animus-api, tests/stack.py)
in a temporary directory and, in a separate process, a bare single-process Tornado
server answering the same kind of JSON. A load generator in a third process (its
own event loop, raw asyncio HTTP/1.1, keep-alive, closed loop: each connection sends
its next request as soon as the previous answer is complete) drives each scenario
with N concurrent connections: a warm-up, then a fixed measured window in which
every latency is recorded.

Scenarios: GET /projects/{p} and PATCH /projects/{p} (a mutation: audited, one
transaction with a hash-chained audit event), each against animus-api on its own
port and against bare Tornado; with --via-proxy also against animus-api through
configurable-http-proxy. Prints req/s, p50, p99, errors, the servers' CPU use and
the animus/bare ratios, then the goal lines as information (never an assertion),
and writes the results as JSON to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# the test suite's helpers: the embedded stack (stack.py) and throwaway databases (pgdb.py)
sys.path.insert(0, str(REPO / "tests"))
from pgdb import create_pg_database, drop_pg_database  # noqa: E402

RESULTS_DIR = HERE / "results"
PROJECT = "bench"
GOAL_GET_RATIO = 0.40
GOAL_GET_P99_MS = 50.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# =============================================================================
# The bare Tornado peer (runs in its own process: --serve-bare PORT)
# =============================================================================


def serve_bare(port: int) -> None:
    import tornado.web
    from tornado.httpserver import HTTPServer

    state = {
        "slug": PROJECT,
        "display_name": PROJECT,
        "description": "",
        "created_at": "2025-01-01T00:00:00Z",
        "created_by": "bench",
        "updated_at": "2025-01-01T00:00:00Z",
        "archived": False,
        "archived_at": None,
        "role": "owner",
    }

    class ProjectHandler(tornado.web.RequestHandler):
        def set_default_headers(self) -> None:
            self.set_header("Content-Type", "application/json; charset=utf-8")

        def get(self, project: str) -> None:
            self.finish(json.dumps({**state, "slug": project}))

        def patch(self, project: str) -> None:
            data = json.loads(self.request.body)
            if not isinstance(data, dict):
                raise tornado.web.HTTPError(400)
            for field in ("display_name", "description"):
                if field in data:
                    state[field] = data[field]
            state["updated_at"] = dt.datetime.now(dt.UTC).isoformat()
            self.finish(json.dumps({**state, "slug": project}))

    app = tornado.web.Application([(r"/api/v1/projects/(?P<project>[^/]+)", ProjectHandler)])

    async def main() -> None:
        server = HTTPServer(app)
        server.listen(port, address="127.0.0.1")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        server.stop()

    asyncio.run(main())


# =============================================================================
# The load generator (runs in its own process: --loadgen SPEC_JSON; prints JSON)
# =============================================================================


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection sending one request at a time."""

    def __init__(self, gen: _LoadGen, index: int):
        self.gen = gen
        self.index = index
        self.seq = 0
        self.buf = b""
        self.need: int | None = None
        self.status = 0
        self.t0 = 0.0
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.send()

    def send(self) -> None:
        if self.gen.stopping:
            self.transport.close()
            return
        self.seq += 1
        self.t0 = time.perf_counter()
        self.transport.write(self.gen.request(self.index, self.seq))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.need is None:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buf[:end].decode("latin-1")
                lines = head.split("\r\n")
                self.status = int(lines[0].split(" ", 2)[1])
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    name = name.strip().lower()
                    if name == "content-length":
                        length = int(value)
                    elif name == "transfer-encoding" and "chunked" in value.lower():
                        self.gen.protocol_errors += 1
                        self.transport.abort()
                        return
                self.need = end + 4 + length
            if len(self.buf) < self.need:
                return
            self.buf = self.buf[self.need :]
            self.need = None
            self.gen.record(self.t0, time.perf_counter(), self.status)
            self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self.gen.lost(self)


class _LoadGen:
    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.host = "127.0.0.1"
        self.port = int(spec["port"])
        self.method = spec["method"]
        self.path = spec["path"]
        self.headers = "".join(f"{k}: {v}\r\n" for k, v in spec.get("headers", {}).items())
        self.stopping = False
        self.window = (float("inf"), float("inf"))
        self.starts = array("d")
        self.latencies = array("d")
        self.statuses: dict[int, int] = {}
        self.protocol_errors = 0
        self.connection_errors = 0
        self.conns: list[_Conn] = []
        self._get = f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.headers}\r\n".encode()

    def request(self, index: int, seq: int) -> bytes:
        if self.method == "GET":
            return self._get
        # every mutation really changes something
        body = json.dumps({"description": f"bench c{index} #{seq}"}).encode()
        head = (
            f"{self.method} {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.headers}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    def record(self, t0: float, t1: float, status: int) -> None:
        start, end = self.window
        if t0 >= start and t1 <= end:
            self.starts.append(t0)
            self.latencies.append(t1 - t0)
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def lost(self, conn: _Conn) -> None:
        if self.stopping:
            return
        self.connection_errors += 1
        if conn in self.conns:
            self.conns.remove(conn)
        asyncio.get_running_loop().create_task(self.connect(conn.index))

    async def connect(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(50):
            try:
                _, conn = await loop.create_connection(lambda: _Conn(self, index), self.host, self.port)
                self.conns.append(conn)
                return
            except OSError:
                self.connection_errors += 1
                await asyncio.sleep(0.1)

    async def run(self) -> dict[str, Any]:
        import psutil

        n = int(self.spec["connections"])
        warmup = float(self.spec["warmup"])
        duration = float(self.spec["duration"])
        procs = []
        for pid in self.spec.get("server_pids", []):
            try:
                procs.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
        await asyncio.gather(*(self.connect(i) for i in range(n)))
        await asyncio.sleep(warmup)

        def cpu(p: psutil.Process) -> float:
            try:
                t = p.cpu_times()
                return t.user + t.system
            except psutil.NoSuchProcess:
                return 0.0

        def db_procs() -> dict[int, psutil.Process]:
            name = self.spec.get("db_process_name")
            if not name:
                return {}
            return {p.pid: p for p in psutil.process_iter(["name"]) if p.info["name"] == name}

        db0 = {pid: cpu(p) for pid, p in db_procs().items()}
        srv0 = sum(cpu(p) for p in procs)
        me0 = sum(os.times()[:2])
        start = time.perf_counter()
        self.window = (start, start + duration)
        await asyncio.sleep(duration)
        end = time.perf_counter()
        srv1 = sum(cpu(p) for p in procs)
        me1 = sum(os.times()[:2])
        db1 = {pid: cpu(p) for pid, p in db_procs().items()}
        db_cpu = sum(db1[pid] - db0.get(pid, 0.0) for pid in db1) if self.spec.get("db_process_name") else None
        self.stopping = True
        conns = list(self.conns)
        await asyncio.wait([c.closed for c in conns], timeout=10)
        for c in conns:
            if c.transport is not None and not c.transport.is_closing():
                c.transport.abort()

        lat = sorted(self.latencies)
        count = len(lat)
        elapsed = end - start

        def pct(q: float) -> float | None:
            if not lat:
                return None
            return 1000.0 * lat[min(count - 1, max(0, int(round(q * count + 0.5)) - 1))]

        non2xx = sum(v for k, v in self.statuses.items() if not 200 <= k < 300)
        ok = count - non2xx
        return {
            "requests": count,
            "ok": ok,
            "duration_s": elapsed,
            "rps": ok / elapsed if elapsed > 0 else 0.0,
            "p50_ms": pct(0.50),
            "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
            "max_ms": 1000.0 * lat[-1] if lat else None,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "non_2xx": non2xx,
            "connection_errors": self.connection_errors,
            "protocol_errors": self.protocol_errors,
            "errors": non2xx + self.connection_errors + self.protocol_errors,
            "server_cpu_s": srv1 - srv0,
            "server_cpu_pct": 100.0 * (srv1 - srv0) / elapsed if procs else None,
            "server_cpu_ms_per_req": 1000.0 * (srv1 - srv0) / count if procs and count else None,
            "db_cpu_pct": 100.0 * db_cpu / elapsed if db_cpu is not None else None,
            "loadgen_cpu_pct": 100.0 * (me1 - me0) / elapsed,
        }


def loadgen_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    result = asyncio.run(_LoadGen(spec).run())
    print(json.dumps(result), flush=True)


# =============================================================================
# The driver
# =============================================================================


class BenchDatabase:
    """A throwaway PostgreSQL database for one benchmark run, on the server of --pg-admin-dsn."""

    def __init__(self, admin_dsn: str):
        self.admin_dsn = admin_dsn
        self.name = ""

    def create(self) -> str:
        """A new empty database; its SQLAlchemy URL."""
        self.name, url = create_pg_database(self.admin_dsn, prefix="animus_bench")
        return url

    def drop(self) -> None:
        """Drop it, if it was made; a failure is a warning (cleanup goes on)."""
        if not self.name:
            return
        try:
            drop_pg_database(self.name, self.admin_dsn)
            self.name = ""
        except Exception as e:  # noqa: BLE001 - cleanup must go on
            print(f"warning: could not drop database {self.name}: {e}", file=sys.stderr)


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tmp: Path | None = None
        self.stack: Any = None
        self.bare: subprocess.Popen | None = None
        self.loadgen: subprocess.Popen | None = None
        self.database = BenchDatabase(args.pg_admin_dsn)

    # --- setup ---------------------------------------------------------------

    def start_stack(self) -> None:
        sys.path.insert(0, str(REPO / "tests"))
        from stack import HubStack

        db_url = self.database.create() if self.args.db == "postgresql" else ""
        self.stack = HubStack(self.tmp / "stack", db_url=db_url)
        log(f"starting the Animus stack ({self.args.db}) in {self.tmp} ...")
        self.stack.start()
        self.token = self.stack.user_token("bench")
        r = self.stack.api("POST", "/projects", self.token, json={"slug": PROJECT})
        if r.status_code != 201:
            raise RuntimeError(f"could not create the project: {r.status_code} {r.text}")
        r = self.stack.api("GET", f"/projects/{PROJECT}", self.token)
        if r.status_code != 200:
            raise RuntimeError(f"could not read the project: {r.status_code} {r.text}")
        self.api_pid = self.find_pid("animus_hub.app")
        self.proxy_pid = self.find_pid("configurable-http-proxy")

    def find_pid(self, needle: str) -> int | None:
        import psutil

        for p in psutil.Process(self.stack.proc.pid).children(recursive=True):
            try:
                if any(needle in part for part in p.cmdline()):
                    return p.pid
            except psutil.Error:
                continue
        return None

    def start_bare(self) -> None:
        self.bare_port = free_port()
        self.bare = subprocess.Popen(
            [sys.executable, __file__, "--serve-bare", str(self.bare_port)], start_new_session=True
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.bare.poll() is not None:
                raise RuntimeError("the bare Tornado server exited")
            try:
                with socket.create_connection(("127.0.0.1", self.bare_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("the bare Tornado server did not come up")

    # --- running -------------------------------------------------------------

    def targets(self) -> list[dict[str, Any]]:
        from animus_hub.hubconfig import API_PATH

        auth = {"Authorization": f"Bearer {self.token}"}
        # PostgreSQL's CPU (all its processes on this machine) is shown beside animus-api's
        db_proc = "postgres" if self.args.db == "postgresql" else None
        path = f"{API_PATH}/projects/{PROJECT}"
        found = [
            {
                "target": "bare-tornado",
                "port": self.bare_port,
                "path": f"/api/v1/projects/{PROJECT}",
                "headers": auth,
                "server_pids": [self.bare.pid],
            },
            {
                "target": "animus-api",
                "port": self.stack.settings.api_port,
                "path": path,
                "headers": auth,
                "server_pids": [p for p in [self.api_pid] if p],
                "db_process_name": db_proc,
            },
        ]
        if self.args.via_proxy:
            found.append(
                {
                    "target": "animus-api via proxy",
                    "port": self.stack.settings.port,
                    "path": path,
                    "headers": auth,
                    "server_pids": [p for p in [self.api_pid, self.proxy_pid] if p],
                    "db_process_name": db_proc,
                }
            )
        return found

    def run_one(self, method: str, target: dict[str, Any]) -> dict[str, Any]:
        spec = {
            **target,
            "method": method,
            "connections": self.args.connections,
            "warmup": self.args.warmup,
            "duration": self.args.duration,
        }
        log(f"  {method:5} {target['target']:22} {self.args.warmup:g}s warm-up + {self.args.duration:g}s ...")
        self.loadgen = subprocess.Popen(
            [sys.executable, __file__, "--loadgen", json.dumps(spec)],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,  # Ctrl-C reaches only this driver, which stops it
        )
        out, _ = self.loadgen.communicate(timeout=self.args.warmup + self.args.duration + 60)
        rc = self.loadgen.returncode
        self.loadgen = None
        if rc != 0:
            raise RuntimeError(f"the load generator failed (exit {rc})")
        result = json.loads(out.strip().splitlines()[-1])
        return {"scenario": method, "target": target["target"], **result}

    def run(self) -> dict[str, Any]:
        self.tmp = Path(tempfile.mkdtemp(prefix="animus-bench-"))
        self.start_stack()
        self.start_bare()
        rows = []
        for method in ("GET", "PATCH"):
            for target in self.targets():
                rows.append(self.run_one(method, target))
        return self.report(rows)

    # --- reporting ------------------------------------------------------------

    def report(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        bare = {r["scenario"]: r for r in rows if r["target"] == "bare-tornado"}
        for r in rows:
            peer = bare.get(r["scenario"])
            r["ratio_rps_vs_bare"] = r["rps"] / peer["rps"] if peer and peer["rps"] else None

        def f(v: float | None, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        print()
        print(
            f"animus-api vs bare Tornado: {self.args.connections} connections, "
            f"{self.args.duration:g}s per scenario after {self.args.warmup:g}s warm-up, "
            f"db={self.args.db}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
        )
        header = (
            f"{'scenario':8} {'target':22} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
            f"{'srv CPU%':>9} {'CPU ms/req':>10} {'db CPU%':>8} {'gen CPU%':>9} {'ratio':>6}"
        )
        print(header)
        print("-" * len(header))
        for r in rows:
            ratio = "" if r["target"] == "bare-tornado" else f(r["ratio_rps_vs_bare"], ".2f")
            print(
                f"{r['scenario']:8} {r['target']:22} {r['rps']:8.0f} {f(r['p50_ms'], '8.1f'):>8} "
                f"{f(r['p99_ms'], '8.1f'):>8} {r['errors']:7d} {f(r['server_cpu_pct'], '8.0f'):>9} "
                f"{f(r['server_cpu_ms_per_req'], '.2f'):>10} {f(r.get('db_cpu_pct'), '.0f'):>8} "
                f"{r['loadgen_cpu_pct']:9.0f} {ratio:>6}"
            )
        print(
            "(ratio = animus req/s ÷ bare Tornado req/s in the same scenario; srv CPU = the target's "
            "server process(es); db CPU = all postgres processes, with --db postgresql; "
            "gen = the load generator; 100% = one core)"
        )
        errors = [r for r in rows if r["errors"]]
        if errors:
            print()
            print("!" * 78)
            for r in errors:
                print(
                    f"!!! ERRORS: {r['scenario']} {r['target']}: {r['errors']} errors "
                    f"(statuses {r['statuses']}, connection errors {r['connection_errors']}, "
                    f"protocol errors {r['protocol_errors']}): its figures are NOT valid"
                )
            print("!" * 78)
        print()
        get_api = next(r for r in rows if r["scenario"] == "GET" and r["target"] == "animus-api")
        ratio = get_api["ratio_rps_vs_bare"]
        p99 = get_api["p99_ms"]
        print(
            f"GET throughput ratio {f(ratio, '.2f')} (goal ≥ {GOAL_GET_RATIO:.2f}): "
            f"{'met' if ratio is not None and ratio >= GOAL_GET_RATIO else 'NOT met'}"
        )
        print(
            f"GET p99 {f(p99, '.1f')} ms (goal ≤ {GOAL_GET_P99_MS:.0f} ms): "
            f"{'met' if p99 is not None and p99 <= GOAL_GET_P99_MS else 'NOT met'}"
        )
        return {
            "benchmark": "api_throughput",
            "time": dt.datetime.now(dt.UTC).isoformat(),
            "settings": {
                "duration_s": self.args.duration,
                "warmup_s": self.args.warmup,
                "connections": self.args.connections,
                "db": self.args.db,
                "via_proxy": self.args.via_proxy,
            },
            "machine": {
                "cpus": os.cpu_count(),
                "loadavg": os.getloadavg(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "goals": {
                "get_ratio": ratio,
                "get_ratio_goal": GOAL_GET_RATIO,
                "get_p99_ms": p99,
                "get_p99_goal_ms": GOAL_GET_P99_MS,
            },
            "results": rows,
        }

    # --- cleanup ---------------------------------------------------------------

    def cleanup(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        for proc in (self.loadgen, self.bare):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        if self.stack is not None:
            try:
                self.stack.stop()
            except Exception as e:  # noqa: BLE001
                print(f"warning: stopping the stack: {e}", file=sys.stderr)
        self.database.drop()
        if self.tmp is not None:
            if self.args.keep:
                log(f"kept {self.tmp}")
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per scenario (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per scenario (default 2)")
    p.add_argument("--connections", type=int, default=32, help="concurrent keep-alive connections (default 32)")
    p.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    p.add_argument(
        "--pg-admin-dsn",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="where --db postgresql creates (and drops) a fresh database",
    )
    p.add_argument("--via-proxy", action="store_true", help="also measure animus-api through the proxy")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (stack log)")
    p.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    p.add_argument("--loadgen", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.serve_bare:
        serve_bare(args.serve_bare)
        return 0
    if args.loadgen:
        loadgen_main(args.loadgen)
        return 0

    return run_and_save(Bench(args), "api_throughput")


def run_and_save(bench, name: str) -> int:
    """Run a benchmark, always clean up, and write its results as JSON (shared by the benchmarks)."""
    # Ctrl-C and SIGTERM stop the run and clean up (set explicitly: a shell may start us with SIGINT ignored)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = bench.run()
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        return 130
    finally:
        bench.cleanup()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"{name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
