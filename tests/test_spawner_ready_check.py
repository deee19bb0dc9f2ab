"""The local spawner's own check that a starting workspace answers (wait_until_answering).

AnimusLocalSpawner.start() returns once GET <server>/api answers below 500, so the hub's
check, which backs off for up to seconds, passes at its first try. The check keeps going
through "not listening" and 5xx answers, and gives up when the process is gone or its time
is up (the hub's own check decides then). Against a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
from types import SimpleNamespace

from jupyterhub.httpclient import JupyterHubHTTPClient
from jupyterhub.spawner import SimpleLocalProcessSpawner
from tornado import web
from tornado.httpserver import HTTPServer

from animus_hub.spawner import AnimusLocalSpawner, wait_until_answering


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FlakyAPI(web.RequestHandler):
    """Answers 503 to the first `failures` requests, then 200 (a server still starting)."""

    def initialize(self, seen: list[str], failures: int) -> None:
        self.seen = seen
        self.failures = failures

    def get(self) -> None:
        self.seen.append(self.request.path)
        if len(self.seen) <= self.failures:
            self.set_status(503)
        self.finish({"version": "test"})


async def check(port: int, alive, timeout: float = 30.0, failures: int = 0, listen: bool = True):
    seen: list[str] = []
    server = None
    if listen:
        app = web.Application([(r"/user/u/p/api", FlakyAPI, {"seen": seen, "failures": failures})])
        server = HTTPServer(app)
        server.listen(port, address="127.0.0.1")
    try:
        ok = await wait_until_answering(f"http://127.0.0.1:{port}/user/u/p/api", alive, 0.01, timeout)
    finally:
        if server is not None:
            server.stop()
        await JupyterHubHTTPClient.loop_instance().close()
    return ok, seen


def test_returns_once_the_server_answers_after_5xx_answers():
    ok, seen = asyncio.run(check(free_port(), alive=lambda: True, failures=2))
    assert ok is True
    assert seen == ["/user/u/p/api"] * 3


def test_waits_while_nothing_listens_until_the_server_starts():
    port = free_port()
    attempts = []

    def alive() -> bool:
        attempts.append(1)
        return True

    async def go():
        task = asyncio.create_task(wait_until_answering(f"http://127.0.0.1:{port}/user/u/p/api", alive, 0.01, 30.0))
        while len(attempts) < 3:  # refused at least twice
            await asyncio.sleep(0.01)
        seen: list[str] = []
        server = HTTPServer(web.Application([(r"/user/u/p/api", FlakyAPI, {"seen": seen, "failures": 0})]))
        server.listen(port, address="127.0.0.1")
        try:
            return await task, seen
        finally:
            server.stop()
            await JupyterHubHTTPClient.loop_instance().close()

    ok, seen = asyncio.run(go())
    assert ok is True and seen == ["/user/u/p/api"]


def test_gives_up_when_the_process_has_exited():
    ok, seen = asyncio.run(check(free_port(), alive=lambda: False))
    assert ok is False
    assert seen == []  # no request to a server that is gone


def test_gives_up_after_its_time_leaving_the_decision_to_the_hub():
    ok, seen = asyncio.run(check(free_port(), alive=lambda: True, timeout=0.05, listen=False))
    assert ok is False and seen == []


class StartingProcess(subprocess.Popen):
    """Stands in for the server's Popen: running, and counts how often the spawner looked."""

    def __init__(self) -> None:  # no process: Popen's own __init__ is not called
        self._child_created = False
        self.returncode = None
        self.polls = 0

    def poll(self) -> int | None:
        self.polls += 1
        return None


def spawner_starting_on(monkeypatch, tmp_path, port: int, **config) -> AnimusLocalSpawner:
    """An AnimusLocalSpawner whose process "starts" at once (JupyterHub's part of start())
    and whose HTTP server on `port` comes up whenever the test starts it."""

    async def process_started(self):
        self.proc = StartingProcess()
        return "127.0.0.1", port

    monkeypatch.setattr(SimpleLocalProcessSpawner, "start", process_started)
    spawner = AnimusLocalSpawner(home_dir=str(tmp_path), **config)
    spawner.server = SimpleNamespace(base_url="/user/u/p/")
    return spawner


def test_start_returns_only_once_the_workspace_answers(monkeypatch, tmp_path):
    port = free_port()
    spawner = spawner_starting_on(monkeypatch, tmp_path, port, ready_check_interval=0.01)

    async def go():
        task = asyncio.create_task(spawner.start())
        while not task.done() and (spawner.proc is None or spawner.proc.polls < 3):  # refused at least twice
            await asyncio.sleep(0.01)
        assert not task.done(), "start() returned before the workspace answered"
        seen: list[str] = []
        server = HTTPServer(web.Application([(r"/user/u/p/api", FlakyAPI, {"seen": seen, "failures": 0})]))
        server.listen(port, address="127.0.0.1")
        try:
            return await task, seen
        finally:
            server.stop()
            await JupyterHubHTTPClient.loop_instance().close()

    address, seen = asyncio.run(go())
    assert address == ("127.0.0.1", port)
    assert seen == ["/user/u/p/api"]


def test_with_the_check_off_start_returns_when_the_process_started(monkeypatch, tmp_path):
    assert AnimusLocalSpawner.ready_check_interval.default_value > 0
    port = free_port()  # nothing listens there
    spawner = spawner_starting_on(monkeypatch, tmp_path, port, ready_check_interval=0)
    assert asyncio.run(spawner.start()) == ("127.0.0.1", port)
    assert spawner.proc.polls == 0
