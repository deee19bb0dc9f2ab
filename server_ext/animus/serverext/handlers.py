"""REST handlers of the Animus server extension, under ``<base_url>animus/``.

The JupyterLab panels never hold an Animus token. They call these handlers with
the browser's Jupyter login (cookie plus XSRF token, or a token header), and the
handlers call animus-api *as the workspace's owner* with the workspace's own token
(``ANIMUS_TOKEN`` or ``JUPYTERHUB_API_TOKEN``, which the hub binds to the project of
the workspace). So:

- every handler requires a Jupyter login (``@web.authenticated``) and the
  authorizer's permission for the ``animus`` resource (``@authorized``);
- only the owner of the workspace may use them: someone the owner shared the server
  with would otherwise act with the owner's rights (403 ``not_workspace_owner``);
- only the calls the panels make are forwarded (``FORWARDED``): another method or
  path answers 404 ``not_forwarded``, and in a project's workspace only that
  project's paths are forwarded (the API enforces the same with the token's binding);
- the API's answers (and its errors, DESIGN §5) are passed through unchanged; when
  the API cannot be reached the answer is 502 ``api_unreachable``.

Routes (``ROUTES``): ``GET context`` and ``GET|POST api/<path below /api/v1/>``.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from typing import Any
from urllib.parse import quote

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

#: the authorizer's resource name for every Animus handler
AUTH_RESOURCE = "animus"
#: the largest request body forwarded (the panels send small JSON documents)
MAX_BODY = 1024 * 1024
#: seconds to wait for animus-api
API_TIMEOUT = 30.0

_SEG = r"[^/]+"
_P = r"projects/(?P<project>[^/]+)"
_V = _P + r"/models/[^/]+/versions/[^/]+"

#: (method, path below /api/v1/) pairs the panels may call; full-match regular expressions
FORWARDED: tuple[tuple[str, str], ...] = (
    ("GET", r"whoami"),
    ("GET", r"projects"),
    ("GET", _P),
    ("GET", _P + r"/access"),
    # Datasets panel
    ("GET", _P + r"/datasets"),
    ("GET", _P + rf"/datasets/{_SEG}"),
    ("GET", _P + rf"/datasets/{_SEG}/versions"),
    ("GET", _P + rf"/datasets/{_SEG}/versions/{_SEG}"),
    ("GET", _P + rf"/datasets/{_SEG}/versions/{_SEG}/(files|schema)"),
    ("GET", _P + rf"/datasets/{_SEG}/diff"),
    ("GET", _P + r"/lineage"),
    # Experiments panel
    ("GET", _P + r"/experiments"),
    ("GET", _P + r"/runs"),
    ("GET", _P + r"/runs/compare"),
    ("GET", _P + rf"/runs/{_SEG}"),
    ("GET", _P + rf"/runs/{_SEG}/metric-history"),
    # Runs panel
    ("GET", _P + rf"/runs/{_SEG}/(logs|job)"),
    ("POST", _P + rf"/runs/{_SEG}/(cancel|reproduce)"),
    ("GET", _P + r"/pipelines"),
    ("GET", _P + rf"/pipelines/{_SEG}"),
    ("GET", _P + r"/environments"),
    # Models panel
    ("GET", _P + r"/models"),
    ("GET", _P + rf"/models/{_SEG}"),
    ("GET", _P + rf"/models/{_SEG}/versions"),
    ("GET", _V),
    ("GET", _V + r"/(history|actions)"),
    ("POST", _V + r"/(transitions|approvals)"),
    ("GET", _P + r"/promotion-policy"),
    # Audit panel
    ("GET", _P + r"/audit/events"),
)
_FORWARDED = [(m, re.compile(p)) for m, p in FORWARDED]


def forwarded(method: str, path: str) -> re.Match[str] | None:
    """The match if the panels may call `method` `path` (below /api/v1/), else None."""
    if "//" in path or any(part in (".", "..") for part in path.split("/")):
        return None
    for m, pattern in _FORWARDED:
        if m == method:
            match = pattern.fullmatch(path)
            if match:
                return match
    return None


def api_settings() -> tuple[str, str]:
    """animus-api's URL and the workspace's token, as the CLI finds them in a workspace."""
    url = (os.environ.get("ANIMUS_API_URL") or "").rstrip("/")
    token = os.environ.get("ANIMUS_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN") or ""
    return url, token


class AnimusHandler(APIHandler):
    """Base: JSON errors in the API's shape, and the owner rule."""

    auth_resource = AUTH_RESOURCE

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        reason = getattr(exc, "animus_reason", None) or {401: "unauthenticated", 403: "forbidden"}.get(
            status_code, "error"
        )
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "reason": reason, "message": message}))

    def fail(self, status: int, reason: str, message: str) -> web.HTTPError:
        error = web.HTTPError(status, message)
        error.animus_reason = reason  # type: ignore[attr-defined]
        return error

    @property
    def owner(self) -> str | None:
        return os.environ.get("JUPYTERHUB_USER") or None

    @property
    def project(self) -> str:
        return os.environ.get("ANIMUS_PROJECT") or ""

    def check_owner(self) -> None:
        owner = self.owner
        user = self.current_user
        name = getattr(user, "username", None) or getattr(user, "name", None)
        if owner and name != owner:
            raise self.fail(
                403,
                "not_workspace_owner",
                f"The Animus panels act as the workspace's owner ({owner}); you are signed in as {name}",
            )

    async def call_api(self, method: str, path: str, query: str = "", body: bytes | None = None) -> tuple[int, Any]:
        """Call animus-api as the owner: (status, decoded JSON body). 502 if it cannot be reached."""
        url, token = api_settings()
        if not url or not token:
            raise self.fail(
                503,
                "api_not_configured",
                "This workspace does not know where Animus is (ANIMUS_API_URL and a token are not set)",
            )
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "User-Agent": "animus-panels"}
        if method == "POST":
            headers["Content-Type"] = "application/json"
            headers["Idempotency-Key"] = self.request.headers.get("Idempotency-Key") or uuid.uuid4().hex
        request = HTTPRequest(
            f"{url}/{path}" + (f"?{query}" if query else ""),
            method=method,
            headers=headers,
            body=body if method == "POST" else None,
            request_timeout=API_TIMEOUT,
            follow_redirects=False,
        )
        try:
            # raise_error=False returns every HTTP answer; no answer at all (refused, timed out) raises
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as e:
            self.log.warning("Animus API at %s cannot be reached: %s", url, e)
            raise self.fail(502, "api_unreachable", f"The Animus API cannot be reached ({type(e).__name__})") from None
        try:
            data = json.loads(response.body) if response.body else None
        except ValueError:
            raise self.fail(
                502, "api_bad_answer", f"The Animus API answered {response.code} without a JSON body"
            ) from None
        return response.code, data


class ContextHandler(AnimusHandler):
    """``GET animus/context``: who and where the panels are.

    The owner (as the API sees the workspace's token), the workspace's project and
    template, the owner's projects (for switching) and the hub's URLs for opening
    another project's workspace. Works when the API is down (``api_error`` says why).
    """

    @web.authenticated
    @authorized
    async def get(self) -> None:
        self.check_owner()
        owner = self.owner or ""
        hub_prefix = os.environ.get("JUPYTERHUB_BASE_URL", "/")
        context: dict[str, Any] = {
            "user": owner or None,
            "project": self.project or None,
            "workspace": {
                "server_name": os.environ.get("JUPYTERHUB_SERVER_NAME", ""),
                "template": os.environ.get("ANIMUS_WORKSPACE_TEMPLATE") or None,
                "folder": os.environ.get("ANIMUS_WORKSPACE_DIR") or os.getcwd(),
            },
            "hub": {
                "home_url": url_path_join(hub_prefix, "hub/home"),
                # + the project's slug: the hub starts (or reopens) that project's workspace
                "spawn_url": url_path_join(hub_prefix, "hub/spawn", quote(owner, safe="")) + "/" if owner else None,
            },
            "me": None,
            "projects": [],
            "role": None,
            "project_info": None,
            "api_error": None,
        }
        try:
            status, me = await self.call_api("GET", "whoami")
            if status != 200:
                context["api_error"] = (me or {}).get("message") or f"whoami answered {status}"
            else:
                context["me"] = me
                status, projects = await self.call_api("GET", "projects", "limit=200")
                if status == 200:
                    context["projects"] = [
                        {"slug": p["slug"], "display_name": p.get("display_name") or p["slug"]}
                        for p in projects.get("items", [])
                    ]
                if self.project:
                    status, project = await self.call_api("GET", f"projects/{quote(self.project, safe='')}")
                    if status == 200:
                        context["role"] = project.get("role")
                        context["project_info"] = project
                    else:
                        context["api_error"] = (project or {}).get("message") or f"project answered {status}"
        except web.HTTPError as e:
            context["api_error"] = e.log_message
        self.finish(json.dumps(context))


class ApiForwardHandler(AnimusHandler):
    """``GET|POST animus/api/<path>``: a panel's call to animus-api, as the workspace's owner."""

    async def _forward(self, method: str, path: str) -> None:
        self.check_owner()
        match = forwarded(method, path)
        if match is None:
            raise self.fail(404, "not_forwarded", f"The Animus panels do not call {method} {path}")
        project = match.groupdict().get("project")
        if project is not None and self.project and project != self.project:
            raise self.fail(
                404,
                "project_not_found",
                f"This workspace is project {self.project!r}'s; open project {project!r}'s own workspace",
            )
        body = None
        if method == "POST":
            body = self.request.body or b"{}"
            if len(body) > MAX_BODY:
                raise self.fail(413, "payload_too_large", f"A request body is at most {MAX_BODY} bytes")
            try:
                json.loads(body)
            except ValueError:
                raise self.fail(400, "invalid_json", "The request body is not JSON") from None
        # tornado hands over the path decoded: encode each segment again, so a decoded "?" or
        # "%" stays part of its segment on the way to the API
        encoded = "/".join(quote(part, safe="") for part in path.split("/"))
        status, data = await self.call_api(method, encoded, self.request.query, body)
        self.set_status(status)
        self.finish(json.dumps(data) if data is not None else b"")

    @web.authenticated
    @authorized
    async def get(self, path: str) -> None:
        await self._forward("GET", path)

    @web.authenticated
    @authorized
    async def post(self, path: str) -> None:
        await self._forward("POST", path)


#: (route below <base_url>animus/, handler) — every handler the extension serves
ROUTES: tuple[tuple[str, type[AnimusHandler]], ...] = (
    ("context", ContextHandler),
    ("api/(.*)", ApiForwardHandler),
)


def setup_handlers(web_app: Any) -> None:
    base_url = web_app.settings.get("base_url", "/")
    web_app.add_handlers(".*$", [(url_path_join(base_url, "animus", route), h) for route, h in ROUTES])
