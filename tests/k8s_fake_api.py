"""A fake of the Kubernetes API server's HTTP surface, for the few calls KubernetesExecutor makes.

This is NOT Kubernetes: nothing is scheduled and no pod runs. It is a small HTTP
server on 127.0.0.1 that records every request (method, path, query, JSON body)
and answers with the shapes the real API server uses (the created object with a
uid, a Status object on errors), so a test can assert the exact requests the real
``kubernetes_asyncio`` client sends. A test sets Job status and pods itself, and
can make the next requests to a path fail with a status code.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from tornado import httpserver, netutil, web

JOBS = re.compile(r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs(?:/(?P<name>[^/]+)(?P<status>/status)?)?$")
SECRETS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/secrets(?:/(?P<name>[^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods$")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass
class FakeKubeAPI:
    requests: list[Request] = field(default_factory=list)
    jobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by "<ns>/<job name>"
    #: (METHOD, path regex) -> list of status codes answered to the next matching requests
    failures: list[tuple[str, str, int]] = field(default_factory=list)
    url: str = ""

    # --- control from the test ------------------------------------------------------------

    def fail(self, method: str, path_pattern: str, status: int, times: int = 1) -> None:
        self.failures.extend([(method, path_pattern, status)] * times)

    def set_job_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.jobs[(namespace, name)]["status"] = status

    def calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]

    # --- answering ------------------------------------------------------------------------

    def answer(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        self.requests.append(Request(method, path, query, body))
        for i, (m, pattern, code) in enumerate(self.failures):
            if m == method and re.search(pattern, path):
                del self.failures[i]
                return code, status_body(code, "InternalError" if code >= 500 else "Forbidden", "injected failure")
        if m := JOBS.match(path):
            return self._jobs(method, m["ns"], m["name"], body)
        if m := SECRETS.match(path):
            if method == "POST" and m["name"] is None:
                return self._create(self.secrets, m["ns"], body, "Secret")
        if (m := PODS.match(path)) and method == "GET":
            selector = dict(kv.split("=", 1) for kv in query.get("labelSelector", [""])[0].split(",") if kv)
            items = [
                p
                for pods in self.pods.values()
                for p in pods
                if p["metadata"].get("namespace") == m["ns"]
                and all(p["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
            ]
            return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
        return 404, status_body(404, "NotFound", f"the server could not find the requested resource {path}")

    def _create(self, store, ns: str, body: dict[str, Any], kind: str) -> tuple[int, Any]:
        name = body["metadata"]["name"]
        if (ns, name) in store:
            return 409, status_body(409, "AlreadyExists", f'{kind.lower()}s "{name}" already exists')
        obj = copy.deepcopy(body)
        obj["metadata"].update(uid=str(uuid.uuid4()), namespace=ns, creationTimestamp="2030-01-01T00:00:00Z")
        if kind == "Secret":
            # the API server stores stringData as base64 data and never returns stringData
            import base64

            obj["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in obj.pop("stringData", {}).items()}
        else:
            obj["status"] = {}
        store[(ns, name)] = obj
        return 201, obj

    def _jobs(self, method: str, ns: str, name: str | None, body: Any) -> tuple[int, Any]:
        if name is None:
            if method == "POST":
                return self._create(self.jobs, ns, body, "Job")
            return 405, status_body(405, "MethodNotAllowed", "not faked")
        job = self.jobs.get((ns, name))
        if job is None:
            return 404, status_body(404, "NotFound", f'jobs.batch "{name}" not found')
        if method == "GET":
            return 200, job
        if method == "DELETE":
            del self.jobs[(ns, name)]
            self.pods.pop(f"{ns}/{name}", None)
            return 200, {**job, "metadata": {**job["metadata"], "deletionTimestamp": "2030-01-01T00:00:01Z"}}
        return 405, status_body(405, "MethodNotAllowed", "not faked")

    # --- serving --------------------------------------------------------------------------

    def start(self) -> FakeKubeAPI:
        fake = self
        ready = threading.Event()

        class Handler(web.RequestHandler):
            SUPPORTED_METHODS = ("GET", "POST", "DELETE", "PATCH", "PUT")

            def _any(self) -> None:
                raw = self.request.body
                body = json.loads(raw) if raw else None
                query = parse_qs(self.request.query)
                code, out = fake.answer(self.request.method, self.request.path, query, body)
                self.set_status(code)
                self.set_header("Content-Type", "application/json")
                self.finish(json.dumps(out))

            get = post = delete = patch = put = _any

        def serve() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            sockets = netutil.bind_sockets(0, "127.0.0.1")
            server = httpserver.HTTPServer(web.Application([(r".*", Handler)]))
            server.add_sockets(sockets)
            fake.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
            fake._loop = loop
            ready.set()
            loop.run_forever()
            server.stop()
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
