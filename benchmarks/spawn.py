"""Workspace spawn time: an Animus project workspace next to plain JupyterHub, in one run.

    python benchmarks/spawn.py [--runs 10] [--quick] [--plain-extensions jupyterlab|same] [--keep]

Starts two hubs side by side on 127.0.0.1 (free ports), both with this environment's
JupyterHub, configurable-http-proxy from .venv/node_modules and SQLite:

- plain: a bare JupyterHub (DummyAuthenticator, an admin service token to create the
  user) with SimpleLocalProcessSpawner, named servers, `python -m jupyterhub.singleuser`,
  default URL /lab, and the same spawner timeouts and hub log level as Animus's. Its
  servers run only the server extensions of a plain JupyterHub + JupyterLab install
  (--plain-extensions same: everything installed, as on the Animus side);
- animus: the embedded profile as `animus up` configures it (tests/stack.py: animus-api,
  the object gateway, the SSH gateway and the idle culler running, AnimusLocalSpawner),
  a person in users.json, and a project created by that person through the Animus API
  (so they are its owner).

Each measured spawn is what a person's "open workspace" does: with the person's own hub
token, POST /hub/api/users/{u}/servers/{name} (for Animus the name is the project slug),
wait for the hub's progress event stream to say "ready", then GET {server}/lab (200 with
JupyterLab's page) and GET {server}/api/status (200). Ready = both answered; the time is
from sending the POST. Then the server is stopped (DELETE) and the benchmark waits until
the hub no longer lists it, its process has exited and both hubs are idle again. Spawns
alternate between the two sides (A B B A A B …); the first spawn on each side is reported
on its own (the first start of that hub), the others give median, p90 and min, and
animus ÷ plain of the medians.

Where the time goes, read after each spawn without polling anything: the server
process's start (/proc/<pid>/stat), its first "extension was successfully linked" log
line (imports done) and its "is running at" line (listening) from the hub's log, the
hub's ready event, the two page loads, and the CPU time of the server, the hub, the
proxy and the hub-managed services.

Goal (printed as information, never asserted): animus ≤ 1.1 × plain. Results go to
benchmarks/results/ as JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from api_throughput import free_port, log, run_and_save  # noqa: E402

GOAL_RATIO = 1.1
USER = "bench"
PROJECT = "bench"
ADMIN_SERVICE = "bench-admin"
# the server extensions a plain `pip install jupyterhub jupyterlab` enables; with
# --plain-extensions jupyterlab the plain side runs only these, so what Animus adds to a
# workspace (e.g. jupyter-server-proxy for VS Code) counts on Animus's side
PLAIN_SERVER_EXTENSIONS = ("jupyterlab", "jupyter_lsp", "jupyter_server_terminals", "notebook_shim")
# the phases, in the order they happen (seconds after the POST); see Spawn
PHASES = (
    ("post", "POST answered"),
    ("process", "server process started"),
    ("first_log", "server's extensions linked"),
    ("listening", "server listening"),
    ("hub_ready", "hub says ready"),
    ("lab", "/lab page loaded"),
    ("ready", "ready (/lab and /api/status)"),
)


CPU_KINDS = {
    "server": "the server, until ready",
    "hub": "JupyterHub",
    "proxy": "configurable-http-proxy",
    "services": "hub-managed services",
}


# =============================================================================
# Pure helpers (tests/test_bench_spawn.py)
# =============================================================================


def summarize(values: list[float]) -> dict[str, float | int | None]:
    """Median, p90 (linear interpolation between closest ranks), min, max and count."""
    if not values:
        return {"n": 0, "median": None, "p90": None, "min": None, "max": None}
    s = sorted(values)
    pos = 0.9 * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    p90 = s[lo] + (s[hi] - s[lo]) * (pos - lo)
    return {"n": len(s), "median": statistics.median(s), "p90": p90, "min": s[0], "max": s[-1]}


def spawn_order(runs: int, sides: tuple[str, str] = ("plain", "animus")) -> list[str]:
    """`runs` spawns per side, alternating in pairs (A B B A A B …): neither side always goes
    first after the other one's teardown."""
    order = []
    a, b = sides
    for i in range(runs):
        order.extend((a, b) if i % 2 == 0 else (b, a))
    return order


# loggers of a single-user server (jupyter-server, JupyterLab, the hub's singleuser extension)
SERVER_LOGGERS = frozenset(("ServerApp", "LabApp", "JupyterHubSingleUser", "SingleUserLabApp", "SingleUserNotebookApp"))
LOG_LINE = re.compile(r"^\S*\[(?P<level>[A-Z]) (?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (?P<name>[^\s\]]+)")


def server_log_times(text: str, base_url: str) -> dict[str, float]:
    """Wall-clock times (epoch seconds) of a single-user server's first "extension was
    successfully linked" line (its imports are done and its extensions found) and of its
    "is running at" line (it listens), from the part of a hub's log
    written during one spawn (one server starts in it). The "running at" line counts if it or
    the next line names the server's URL."""
    first = running = None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = LOG_LINE.match(line)
        if not m:
            continue
        t = dt.datetime.strptime(m["ts"], "%Y-%m-%d %H:%M:%S.%f").timestamp()
        if first is None and m["name"] in SERVER_LOGGERS and "extension was successfully linked" in line:
            first = t
        if running is None and "is running at" in line and base_url in " ".join(lines[i : i + 2]):
            running = t
    out = {}
    if first is not None:
        out["first_log"] = first
    if running is not None:
        out["listening"] = running
    return out


def process_start_offset(pid: int, boot_t0: float) -> float | None:
    """Seconds from `boot_t0` (CLOCK_BOOTTIME) to the start of process `pid` (10 ms resolution)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command may contain spaces and parentheses: fields start after the last ")"
    fields = stat[stat.rindex(")") + 2 :].split()
    start_ticks = int(fields[19])  # field 22 of proc(5), counting from field 3
    return start_ticks / os.sysconf("SC_CLK_TCK") - boot_t0


# =============================================================================
# The plain hub
# =============================================================================

PLAIN_CONFIG = """
import sys
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.JupyterHub.db_url = "sqlite:///{root}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{root}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = "{root}/jupyterhub.pid"
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
c.JupyterHub.log_level = "WARN"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{proxy_cmd!r}]
c.ConfigurableHTTPProxy.pid_file = "{root}/proxy.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.services = [{{"name": "{admin}", "api_token": "{token}"}}]
c.JupyterHub.load_roles = [{{"name": "admin", "services": ["{admin}"]}}]
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{root}/workspaces/{{username}}"
c.JupyterHub.allow_named_servers = True
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.http_timeout = 60
c.Spawner.start_timeout = 120
c.Spawner.args = {args!r}
"""


def enabled_server_extensions() -> list[str]:
    """Jupyter server extensions enabled in this Python environment's config."""
    from jupyter_core.paths import jupyter_config_path
    from jupyter_server.extension.config import ExtensionConfigManager

    found: dict[str, bool] = {}
    for path in jupyter_config_path():
        for name, enabled in ExtensionConfigManager(read_config_path=[path]).get_jpserver_extensions().items():
            found.setdefault(name, enabled)
    return sorted(name for name, enabled in found.items() if enabled)


def plain_disabled_extensions(extensions: str) -> list[str]:
    """The server extensions the plain side switches off ('jupyterlab': all but JupyterLab's own)."""
    if extensions == "same":
        return []
    return [name for name in enabled_server_extensions() if name not in PLAIN_SERVER_EXTENSIONS]


def plain_server_args(disabled: list[str]) -> list[str]:
    args = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
    return args + [f"--ServerApp.jpserver_extensions={name}=False" for name in disabled]


class PlainHub:
    """A bare JupyterHub with the simple local-process spawner, in its own session."""

    def __init__(self, root: Path, server_args: list[str]):
        from animus_hub.hubconfig import find_proxy_command

        self.root = root
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.log_path = root / "hub.log"
        self.proc: subprocess.Popen | None = None
        self.config = PLAIN_CONFIG.format(
            port=self.port,
            hub_port=free_port(),
            proxy_api_port=free_port(),
            root=root,
            proxy_cmd=find_proxy_command(),
            admin=ADMIN_SERVICE,
            token=self.token,
            args=server_args,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> None:
        from animus_hub.embedded import wait_until_up

        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "jupyterhub_config.py").write_text(self.config)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(self.root / "jupyterhub_config.py")],
            cwd=self.root,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if not wait_until_up(self.url + "/hub/api/", self.proc, timeout):
            raise RuntimeError(f"the plain hub did not come up; log: {self.log_path}")

    def hub(self, method: str, path: str, **kwargs: Any):
        import requests

        headers = {"Authorization": f"token {self.token}"}
        return requests.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=30, **kwargs)

    def user_token(self, name: str) -> str:
        r = self.hub("POST", f"/users/{name}")
        if r.status_code not in (201, 409):
            raise RuntimeError(f"could not create user {name}: {r.status_code} {r.text}")
        r = self.hub("POST", f"/users/{name}/tokens", json={"note": "spawn benchmark", "expires_in": 86400})
        if r.status_code != 201:
            raise RuntimeError(f"could not create a token: {r.status_code} {r.text}")
        return r.json()["token"]

    def stop(self) -> None:
        from animus_hub.embedded import stop_hub, stop_leftovers

        # then the proxy and any server still alive (they run with their cwd under root)
        if self.proc is not None:
            stop_hub(self.proc, self.root)
        else:
            stop_leftovers(self.root)
        if getattr(self, "_log", None):
            self._log.close()


# =============================================================================
# One side: a hub, a person with a token, a server name
# =============================================================================


@dataclass
class Side:
    name: str
    hub: Any  # PlainHub or tests/stack.py HubStack: .url, .hub(), .log_path
    token: str
    server: str
    spawns: list[dict[str, Any]] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"/user/{USER}/{self.server}/"


class SpawnError(RuntimeError):
    pass


def spawn_once(side: Side, timeout: float) -> dict[str, Any]:
    """Open the workspace as the person would and wait until JupyterLab is ready; then stop it."""
    import requests

    http = requests.Session()
    http.headers["Authorization"] = f"token {side.token}"
    api = f"{side.hub.url}/hub/api/users/{USER}/servers/{side.server}"
    log_offset = side.hub.log_path.stat().st_size
    cpu0 = tree_cpu(side.hub.proc.pid)
    marks: dict[str, float] = {}

    wall0 = time.time()
    boot0 = time.clock_gettime(time.CLOCK_BOOTTIME)
    t0 = time.perf_counter()
    r = http.post(api, json={}, timeout=timeout)
    marks["post"] = time.perf_counter() - t0
    if r.status_code not in (201, 202):
        raise SpawnError(f"{side.name}: POST {api} answered {r.status_code}: {r.text[:300]}")
    url = None
    with http.get(api + "/progress", stream=True, timeout=timeout) as events:
        if events.status_code != 200:
            raise SpawnError(f"{side.name}: progress answered {events.status_code}: {events.text[:300]}")
        for line in events.iter_lines():
            if not line.startswith(b"data:"):
                continue
            event = json.loads(line[5:])
            if event.get("failed"):
                raise SpawnError(f"{side.name}: spawn failed: {event.get('message')}")
            if event.get("ready"):
                url = event["url"]
                break
    marks["hub_ready"] = time.perf_counter() - t0
    if not url:
        raise SpawnError(f"{side.name}: the progress stream ended without a ready event")
    server_url = side.hub.url + url
    deadline = t0 + timeout
    lab = wait_ok(
        http, server_url + "lab", deadline, lambda r: "JupyterLab" in r.text and "jupyter-config-data" in r.text
    )
    marks["lab"] = time.perf_counter() - t0
    status = wait_ok(http, server_url + "api/status", deadline, lambda r: "started" in r.json())
    marks["ready"] = time.perf_counter() - t0
    cpu = cpu_by_kind(cpu0, tree_cpu(side.hub.proc.pid))

    # where the time went: the server's process start and its own log lines
    model = side.hub.hub("GET", f"/users/{USER}").json()["servers"].get(side.server, {})
    pid = (model.get("state") or {}).get("pid")
    if pid:
        start = process_start_offset(pid, boot0)
        if start is not None:
            marks["process"] = start
    with open(side.hub.log_path, "rb") as f:
        f.seek(log_offset)
        text = f.read().decode(errors="replace")
    for key, t in server_log_times(text, side.base_url).items():
        marks[key] = t - wall0

    stop_server(http, api, side.server, USER, side.hub.url, pid, timeout)
    return {
        "seconds": marks["ready"],
        "marks": marks,
        "status": [lab.status_code, status.status_code],
        # CPU seconds from the POST until ready: the server's own (its start-up), the hub's,
        # the proxy's and the hub-managed services' (animus-api, gateways, culler)
        "cpu_s": cpu,
        "pid": pid,
    }


def wait_ok(http: Any, url: str, deadline: float, check: Any) -> Any:
    """GET `url` until it answers 200 and `check(response)` holds (the hub said ready, so
    this is normally the first answer)."""
    import requests

    last = None
    while True:
        try:
            r = http.get(url, timeout=30, allow_redirects=False)
            if r.status_code == 200 and check(r):
                return r
            last = f"{r.status_code} {r.text[:200]}"
        except (requests.RequestException, ValueError) as e:
            last = repr(e)
        if time.perf_counter() > deadline:
            raise SpawnError(f"GET {url} not ready: {last}")
        time.sleep(0.05)


def stop_server(http: Any, api: str, server: str, user: str, hub_url: str, pid: int | None, timeout: float) -> None:
    import psutil

    r = http.delete(api, timeout=timeout)
    if r.status_code not in (202, 204):
        raise SpawnError(f"DELETE {api} answered {r.status_code}: {r.text[:300]}")
    deadline = time.monotonic() + timeout
    while server in http.get(f"{hub_url}/hub/api/users/{user}", timeout=30).json().get("servers", {}):
        if time.monotonic() > deadline:
            raise SpawnError(f"{api} was not stopped after {timeout:.0f} s")
        time.sleep(0.2)
    if pid:
        try:
            psutil.Process(pid).wait(timeout=max(1.0, deadline - time.monotonic()))
        except psutil.NoSuchProcess:
            pass


def tree_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds of a process and each living descendant, by pid, with what each one is:
    "hub" (the process `pid`), "proxy", "server" (a single-user server) or "services"."""
    import psutil

    out: dict[int, tuple[str, float]] = {}
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return out
    for p in procs:
        try:
            t = p.cpu_times()
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if p.pid == pid:
            kind = "hub"
        elif "configurable-http-proxy" in cmd:
            kind = "proxy"
        elif "jupyterhub.singleuser" in cmd:
            kind = "server"
        else:
            kind = "services"
        out[p.pid] = (kind, t.user + t.system)
    return out


def cpu_by_kind(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds used between two tree_cpu() snapshots, summed by kind (processes that
    appeared in between count from zero; processes gone by `after` are not counted)."""
    used: dict[str, float] = {"hub": 0.0, "proxy": 0.0, "server": 0.0, "services": 0.0}
    for pid, (kind, cpu) in after.items():
        used[kind] += cpu - before.get(pid, (kind, 0.0))[1]
    return used


def settle(procs: list[int], limit: float, quiet: float = 0.1, window: float = 1.0) -> None:
    """Wait until the process trees of `procs` use less than `quiet` CPU seconds in `window`
    seconds (start-up and teardown work is not measured), at most `limit` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = [tree_cpu(p) for p in procs]
        time.sleep(window)
        used = sum(sum(cpu_by_kind(b, tree_cpu(p)).values()) for b, p in zip(before, procs, strict=True))
        if used < quiet:
            return
    log(f"  the hubs still used CPU after {limit:.0f} s; going on")


# =============================================================================
# The driver
# =============================================================================


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.tmp: Path | None = None
        self.plain: PlainHub | None = None
        self.stack: Any = None
        self.disabled: list[str] = []

    def run(self) -> dict[str, Any]:
        args = self.args
        runs = 3 if args.quick else args.runs
        cache = REPO / ".cache"
        cache.mkdir(exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix="animus-bench-spawn-", dir=cache))
        self.disabled = plain_disabled_extensions(args.plain_extensions)
        disabled = self.disabled
        log(f"working in {self.tmp}")
        log(
            "plain side: server extensions "
            + (f"without {', '.join(disabled)}" if disabled else "as installed (the same as Animus's)")
        )

        log("starting the plain hub ...")
        self.plain = PlainHub(self.tmp / "plain", plain_server_args(disabled))
        self.plain.start()
        plain = Side("plain", self.plain, self.plain.user_token(USER), PROJECT)

        log("starting the Animus stack (as `animus up`) ...")
        sys.path.insert(0, str(REPO / "tests"))
        from stack import HubStack

        self.stack = HubStack(self.tmp / "animus", hub_config=args.animus_hub_config)
        self.stack.start()
        # a person of users.json, as after `animus-hub users add`: the hub's auth refresh
        # (every few seconds, and before each spawn) finds them
        from animus_hub.userfile import UserFile, generate_password

        UserFile(self.stack.root / "users.json").set_user(USER, password=generate_password(), groups=[], admin=False)
        token = self.stack.user_token(USER)
        r = self.stack.api("POST", "/projects", token, json={"slug": PROJECT})
        if r.status_code != 201:
            raise RuntimeError(f"could not create project {PROJECT}: {r.status_code} {r.text}")
        animus = Side("animus", self.stack, token, PROJECT)
        sides = {"plain": plain, "animus": animus}
        hubs = [self.plain.proc.pid, self.stack.proc.pid]
        log("waiting for both hubs to finish their start-up work ...")
        settle(hubs, limit=90)

        load_before = os.getloadavg()
        order = ["plain", "animus"] + spawn_order(runs)
        log(f"{len(order)} spawns: a first one on each side, then {runs} each, alternating ...")
        for i, name in enumerate(order, 1):
            side = sides[name]
            result = spawn_once(side, args.timeout)
            result["load1"] = os.getloadavg()[0]
            side.spawns.append(result)
            m = result["marks"]
            log(
                f"  {i:2}/{len(order)} {name:6} {result['seconds']:6.2f} s  "
                f"(process {fmt(m.get('process'))}, listening {fmt(m.get('listening'))}, "
                f"hub ready {fmt(m.get('hub_ready'))}; load {result['load1']:.2f})"
            )
            time.sleep(args.pause)
            settle(hubs, limit=30)
        load_after = os.getloadavg()
        return self.report(sides, runs, load_before, load_after)

    def report(self, sides: dict[str, Side], runs: int, load_before: tuple, load_after: tuple) -> dict[str, Any]:
        figures: dict[str, Any] = {}
        for name, side in sides.items():
            warm = side.spawns[1:]
            figures[name] = {
                "first": side.spawns[0]["seconds"],
                "warm": summarize([s["seconds"] for s in warm]),
                "phases": {key: summarize([s["marks"][key] for s in warm if key in s["marks"]]) for key, _ in PHASES},
                "cpu_s": {kind: summarize([s["cpu_s"][kind] for s in warm]) for kind in CPU_KINDS},
                "spawns": side.spawns,
            }
        p, a = figures["plain"], figures["animus"]
        ratio = a["warm"]["median"] / p["warm"]["median"]
        first_ratio = a["first"] / p["first"]

        print()
        print(f"Spawn to JupyterLab ready, {runs} spawns per side after a first one (seconds)")
        print(f"{'':34}{'plain':>10}{'animus':>10}{'ratio':>9}")
        for key, label in (("median", "median"), ("p90", "p90"), ("min", "min")):
            pv, av = p["warm"][key], a["warm"][key]
            print(f"{label:34}{pv:10.2f}{av:10.2f}{av / pv:9.2f}")
        print(f"{'first start (each hub)':34}{p['first']:10.2f}{a['first']:10.2f}{first_ratio:9.2f}")
        print()
        print("Where the time goes (median seconds after the POST)")
        for key, label in PHASES:
            pv, av = p["phases"][key]["median"], a["phases"][key]["median"]
            print(f"  {label:32}{fmt(pv):>10}{fmt(av):>10}")
        print()
        print("CPU seconds per spawn (median)")
        for kind, label in CPU_KINDS.items():
            print(f"  {label:32}{fmt(p['cpu_s'][kind]['median']):>10}{fmt(a['cpu_s'][kind]['median']):>10}")
        print()
        during = [sp["load1"] for side in sides.values() for sp in side.spawns]
        print(
            f"load average (1/5/15 min): before {fmt_load(load_before)}, after {fmt_load(load_after)}; "
            f"1 min after each spawn: mean {statistics.mean(during):.2f}, max {max(during):.2f} "
            f"({os.cpu_count()} CPUs)"
        )
        verdict = "met" if ratio <= GOAL_RATIO else "NOT met"
        print(f"goal: animus ≤ {GOAL_RATIO} × plain (median) — {ratio:.2f} ×, {verdict}")
        return {
            "benchmark": "spawn",
            "time": dt.datetime.now(dt.UTC).isoformat(),
            "settings": {
                "runs": runs,
                "quick": self.args.quick,
                "plain_extensions": self.args.plain_extensions,
                "animus_hub_config": self.args.animus_hub_config,
                "plain_disabled_server_extensions": self.disabled,
                "pause": self.args.pause,
            },
            "machine": {
                "cpus": os.cpu_count(),
                "loadavg_before": load_before,
                "loadavg_after": load_after,
                "load1_after_spawns_mean": statistics.mean(during),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "goal_ratio": GOAL_RATIO,
            "ratio_median": ratio,
            "ratio_first": first_ratio,
            "results": figures,
        }

    def cleanup(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        for what, thing in (("the plain hub", self.plain), ("the Animus stack", self.stack)):
            if thing is None:
                continue
            try:
                thing.stop()
            except Exception as e:  # noqa: BLE001
                print(f"warning: stopping {what}: {e}", file=sys.stderr)
        if self.tmp is not None:
            if self.args.keep:
                log(f"kept {self.tmp} (hub logs: plain/hub.log, animus/stack.log)")
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def fmt_load(load: tuple) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Both hubs run on this machine at the same time, bound to 127.0.0.1. "
        "Ctrl-C stops everything the benchmark started. See benchmarks/README.md.",
    )
    p.add_argument("--runs", type=int, default=10, help="measured spawns per side after the first one (default 10)")
    p.add_argument("--quick", action="store_true", help="3 spawns per side: a smoke run")
    p.add_argument(
        "--plain-extensions",
        choices=("jupyterlab", "same"),
        default="jupyterlab",
        help="server extensions of the plain side's servers: 'jupyterlab' (default) only those a plain "
        "JupyterHub + JupyterLab install enables, so what Animus adds counts against Animus; 'same' "
        "everything installed in this environment, as on the Animus side (compares hub and spawner only)",
    )
    p.add_argument(
        "--pause",
        type=float,
        default=1.0,
        help="seconds of rest after each spawn, before waiting for both hubs to be idle (default 1)",
    )
    p.add_argument("--timeout", type=float, default=180, help="seconds one spawn or stop may take (default 180)")
    p.add_argument(
        "--animus-hub-config",
        default="",
        metavar="PYTHON",
        help="extra lines for the Animus hub's jupyterhub_config.py, to compare a setting, e.g. "
        "'c.AnimusLocalSpawner.ready_check_interval = 0'",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (both hubs' logs)")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return run_and_save(Bench(args), "spawn")


if __name__ == "__main__":
    sys.exit(main())
