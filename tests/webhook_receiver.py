"""A real webhook receiver for tests: a Tornado server on 127.0.0.1 in its own thread.

It verifies signatures the way docs/how-to/webhooks.md tells receivers to, records
every request, dedupes by event id, and answers as `respond(n)` says for the n-th
request (0-based): an HTTP status, ("redirect", url) or ("hang", seconds).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from animus_hub.webhook_delivery import verify_signature


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    signature_ok: bool | None

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def event_id(self) -> str:
        return self.headers.get("Animus-Event-Id", "")


@dataclass
class Receiver:
    secrets: dict[str, str] = field(default_factory=dict)  # path → signing secret
    respond: Callable[[int], Any] = lambda n: 200
    requests: list[Received] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- what the handler calls ---

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> Any:
        secret = self.secrets.get(path)
        ok = None
        if secret is not None:
            ok = verify_signature(
                secret, headers.get("Animus-Timestamp", ""), body, headers.get("Animus-Signature", "")
            )
        with self._lock:
            n = len(self.requests)
            self.requests.append(Received(path, headers, body, time.monotonic(), ok))
        return self.respond(n)

    # --- lifecycle ---

    def start(self) -> Receiver:
        receiver = self

        class Handler(web.RequestHandler):
            async def post(self) -> None:
                answer = receiver._record(self.request.path, dict(self.request.headers), self.request.body)
                if isinstance(answer, tuple) and answer[0] == "redirect":
                    self.redirect(answer[1], status=307)
                    return
                if isinstance(answer, tuple) and answer[0] == "hang":
                    await asyncio.sleep(answer[1])
                    answer = 200
                self.set_status(int(answer))
                self.finish() if int(answer) in (204, 304) else self.finish({"received": True})

            def log_exception(self, *args: Any) -> None:
                pass

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            sockets = bind_sockets(self.port, "127.0.0.1")
            self.port = sockets[0].getsockname()[1]
            self._server = HTTPServer(web.Application([(r"/.*", Handler)], log_function=lambda h: None))
            self._server.add_sockets(sockets)
            self._ready.set()
            loop.run_forever()
            self._server.stop()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    # --- what tests look at ---

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def unique_events(self, path: str | None = None) -> dict[str, Received]:
        """Event id → the first request that carried it (a receiver's dedupe)."""
        out: dict[str, Received] = {}
        for r in self.received(path):
            out.setdefault(r.event_id, r)
        return out

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()
