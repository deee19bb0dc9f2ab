"""Helpers for the end-to-end tests (fixtures are in conftest.py): the real `animus up` as a subprocess, and Chromium.

`animus up` is started exactly as a person starts it (the console script of this
installation, in its own session, output to a log file); it is stopped as Ctrl-C
stops it (SIGINT to its process group). Chromium is Debian's (/usr/bin/chromium)
driven by Playwright, with a fresh profile and HOME/XDG directories under pytest's
temporary directory.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "e2e"
CHROMIUM = os.environ.get("ANIMUS_E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD_RE = re.compile(r"First start: created the platform admin '(?P<user>[^']+)' with password: (?P<password>\S+)")
UP_RE = re.compile(r"Animus is up: (?P<url>http://\S+?)/?\s*$", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_user(port: int) -> str:
    """Who listens on 127.0.0.1:port (best effort), for an error message."""
    try:
        for c in psutil.net_connections("tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                try:
                    return f"pid {c.pid}: {' '.join(psutil.Process(c.pid).cmdline())[:200]}"
                except psutil.Error:
                    return f"pid {c.pid}"
    except psutil.Error:
        pass
    return "unknown process"


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def require_free_ports(ports: dict[int, str]) -> None:
    busy = [
        f"  {port} ({what}) is in use by {port_user(port)}" for port, what in ports.items() if not port_is_free(port)
    ]
    if busy:
        pytest.fail("cannot run `animus up` for the e2e test: ports taken\n" + "\n".join(busy), pytrace=False)


def processes_of(data_dir: Path) -> list[psutil.Process]:
    """Live processes that belong to this data directory: cwd inside it, or
    ANIMUS_DATA_DIR=data_dir in their environment (pytest and its parents excluded)."""
    me = psutil.Process()
    spared = {me.pid} | {p.pid for p in me.parents()}
    marker = str(data_dir)
    found = []
    for p in psutil.process_iter(["pid"]):
        if p.info["pid"] in spared:
            continue
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            cwd = p.cwd()
            if cwd == marker or cwd.startswith(marker + os.sep) or p.environ().get("ANIMUS_DATA_DIR") == marker:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def describe(procs: list[psutil.Process]) -> str:
    lines = []
    for p in procs:
        try:
            lines.append(f"  pid {p.pid} cwd={p.cwd()} cmd={' '.join(p.cmdline())[:200]}")
        except psutil.Error:
            lines.append(f"  pid {p.pid} (gone)")
    return "\n".join(lines)


class AnimusUp:
    """One run of `animus up --data-dir DIR --port PORT`, its output in `log_path`."""

    def __init__(self, data_dir: Path, port: int, log_path: Path):
        self.data_dir = data_dir
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{port}"
        # internal ports: the hub's API, the proxy's API and animus-api
        self.internal = {
            "--hub-port": free_port(),
            "--proxy-api-port": free_port(),
            "--api-port": free_port(),
            "--objects-port": free_port(),
            "--ssh-port": free_port(),
        }

    @staticmethod
    def command() -> str:
        exe = Path(sys.executable).parent / "animus"
        if not exe.exists():
            pytest.fail(
                f"the `animus` console script is not installed beside {sys.executable}",
                pytrace=False,
            )
        return str(exe)

    def start(self) -> AnimusUp:
        require_free_ports({self.port: "animus up --port", **{p: flag for flag, p in self.internal.items()}})
        # a clean environment, as in a new shell: nothing of a surrounding Animus or hub
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANIMUS_", "JUPYTERHUB_", "JPY_"))}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (open while the process runs)
        self.proc = subprocess.Popen(
            [
                self.command(),
                "up",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
                *[str(x) for item in self.internal.items() for x in item],
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.log_path.parent,
            env=env,
            start_new_session=True,
        )
        return self

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def wait_up(self, timeout: float = 240) -> str:
        """Wait for "Animus is up"; return the URL it prints."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = UP_RE.search(self.output())
            if m:
                return m.group("url")
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        out = self.output()
        hint = "\nA port clash." if ("Address already in use" in out or "EADDRINUSE" in out) else ""
        state = (
            f"exited with {self.proc.returncode}" if self.proc.poll() is not None else f"not up after {timeout:.0f} s"
        )
        pytest.fail(
            f"`animus up` {state}{hint}\nlog {self.log_path}:\n{self.tail()}",
            pytrace=False,
        )

    def admin_password(self) -> tuple[str, str] | None:
        m = PASSWORD_RE.search(self.output())
        return (m.group("user"), m.group("password")) if m else None

    def interrupt(self, timeout: float = 60) -> int | None:
        """Ctrl-C: SIGINT to the process group; return the exit code (None if still running)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def cleanup(self) -> None:
        """After a failure: make sure nothing of this run is left (only our own processes)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
                self.proc.wait(timeout=60)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                self.proc.kill()
                self.proc.wait()
        left = processes_of(self.data_dir)
        for p in left:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(left, timeout=10)
        if getattr(self, "_log", None):
            self._log.close()


# --- the browser: waiting, screenshots, JupyterLab terminals ------------------------------

PROMPT = re.compile(r"\n[^\n]*[#$] ?$")
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]|\x1b[=>]")

# Reads what a JupyterLab terminal has shown: terminado replays its output buffer to
# every client that connects, so a second websocket from the page (same cookies) sees
# the text that xterm draws on a canvas.
READ_TERMINAL_JS = """
async ([wsUrl, ms]) => new Promise((resolve) => {
  let out = "";
  const ws = new WebSocket(wsUrl);
  ws.onmessage = (ev) => { const m = JSON.parse(ev.data); if (m[0] === "stdout") out += m[1]; };
  ws.onerror = () => resolve({error: true, out});
  setTimeout(() => { ws.close(); resolve({error: false, out}); }, ms);
})
"""


def wait_for(check, timeout: float, interval: float = 0.5, what: str = "condition", detail=None):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n{detail()}" if detail else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(interval)


def screenshot(page, artifacts: Path, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / name))
    page.screenshot(path=str(tmp_path / name))


def command_done(text: str, command: str) -> str:
    """The output of `command` (plus a newline) once a new prompt follows it, else ""."""
    if command not in text:
        return ""
    after = text.rsplit(command, 1)[1]
    prompt = PROMPT.search(after)
    return after[: prompt.start()] + "\n" if prompt else ""
