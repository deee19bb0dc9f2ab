"""The spawners' question before a project's workspace starts, against small local HTTP servers.

The answers of a real animus-api (member, non-member, no such project) are tested through
the hub in tests/test_workbench_panels.py; here: what the hub answers when animus-api
does not answer properly.
"""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from tornado import web
from tornado.httpserver import HTTPServer

from animus_hub import workspace_access
from animus_hub.workspace_access import ProjectWorkspaceAccess


class Spawner(ProjectWorkspaceAccess):
    """The attributes of a JupyterHub spawner the check reads."""

    def __init__(self, url: str, name: str = "churn", **kw):
        super().__init__(animus_api_url=url, **kw)
        self.name = name
        self.user_options = {"profile": "cpu-small"}
        self.api_token = "the-server-token"


class Recorder(web.RequestHandler):
    def initialize(self, status: int, seen: list) -> None:
        self.status = status
        self.seen = seen

    async def post(self, project: str) -> None:
        self.seen.append((project, self.request.headers.get("Authorization"), json.loads(self.request.body)))
        self.set_status(self.status)
        self.finish({"status": self.status, "message": f"answer {self.status} for {project}"})


async def serve(status: int, seen: list) -> tuple[HTTPServer, str]:
    app = web.Application([(r"/api/projects/([^/]+)/workspaces/open", Recorder, {"status": status, "seen": seen})])
    server = HTTPServer(app)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    server.add_sockets([sock])
    return server, f"http://127.0.0.1:{sock.getsockname()[1]}/api"


def check(spawner: Spawner) -> web.HTTPError | None:
    try:
        asyncio.run(spawner.check_project_access())
    except web.HTTPError as e:
        return e
    return None


def test_a_member_passes_and_the_question_carries_the_server_token_and_template():
    async def main():
        seen: list = []
        server, url = await serve(200, seen)
        try:
            await Spawner(url).check_project_access()
        finally:
            server.stop()
        return seen

    assert asyncio.run(main()) == [("churn", "Bearer the-server-token", {"template": "cpu-small", "server": "churn"})]


@pytest.mark.parametrize("status", [403, 404])
def test_a_refusal_is_the_hubs_answer_with_animus_message(status):
    async def main():
        server, url = await serve(status, [])
        try:
            await Spawner(url).check_project_access()
        except web.HTTPError as e:
            return e
        finally:
            server.stop()

    error = asyncio.run(main())
    assert error is not None and error.status_code == status and error.log_message == f"answer {status} for churn"


def test_an_animus_failure_is_503():
    async def main():
        server, url = await serve(500, [])
        try:
            await Spawner(url).check_project_access()
        except web.HTTPError as e:
            return e
        finally:
            server.stop()

    error = asyncio.run(main())
    assert error is not None and error.status_code == 503 and "try again" in error.log_message


def test_nothing_listening_is_503():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    error = check(Spawner(f"http://127.0.0.1:{port}/api"))
    assert error is not None and error.status_code == 503 and "cannot be reached" in error.log_message


def test_an_api_that_never_answers_is_503(monkeypatch):
    monkeypatch.setattr(workspace_access, "REQUEST_TIMEOUT", 0.5)
    with socket.socket() as s:  # accepts connections, never answers
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        error = check(Spawner(f"http://127.0.0.1:{s.getsockname()[1]}/api"))
    assert error is not None and error.status_code == 503 and "cannot be reached" in error.log_message


def test_the_default_server_and_an_unconfigured_hub_ask_nothing():
    assert check(Spawner("http://127.0.0.1:9/api", name="")) is None
    assert check(Spawner("", name="churn")) is None
