"""Before a project's workspace starts, the hub asks Animus whether its person may open it.

A project's workspace is the person's named server called after the project.
JupyterHub lets anyone name a server anything, so both Animus spawners (the local
one and the Kubernetes one) ask animus-api first, with the new server's own token
(bound to that project): ``POST /projects/{project}/workspaces/open``. A person who
is not a member of the project, or a project that does not exist, gets the 404
every non-member gets (the denial is in the audit trail) and nothing starts; an
opening is audited as ``workspace.open`` with the template chosen. The default
server (no name) is not a project's workspace and is not checked.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

from jupyterhub.utils import maybe_future
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Unicode
from traitlets.config import LoggingConfigurable

#: seconds the hub waits for animus-api's answer before refusing the start (503)
REQUEST_TIMEOUT = 30.0


class ProjectWorkspaceAccess(LoggingConfigurable):
    """A spawner mixin (first among the bases): ``check_project_access()`` before the pre-spawn hook."""

    animus_api_url = Unicode(
        "",
        help="""animus-api's URL as the hub reaches it, e.g.
        http://animus-api:8090/services/animus/api/v1. Before a project's workspace
        starts, the hub asks it whether the person may open that project. Empty: no
        check (any person may start a server named after any project; not for
        production). `animus up` sets it.""",
    ).tag(config=True)

    async def run_pre_spawn_hook(self) -> Any:
        # the hub calls this after the server's token exists and before anything starts
        await self.check_project_access()
        return await maybe_future(super().run_pre_spawn_hook())  # type: ignore[misc]

    async def check_project_access(self) -> None:
        """Raise the hub's HTTP error (404 not a member or no such project; 503 Animus down) or return."""
        project = getattr(self, "name", "") or ""
        if not project or not self.animus_api_url:
            return
        template = (getattr(self, "user_options", None) or {}).get("profile") or None
        request = HTTPRequest(
            f"{self.animus_api_url.rstrip('/')}/projects/{quote(project, safe='')}/workspaces/open",
            method="POST",
            headers={
                "Authorization": f"Bearer {self.api_token}",  # type: ignore[attr-defined]
                "Content-Type": "application/json",
                "Idempotency-Key": uuid.uuid4().hex,
                "User-Agent": "animus-hub-spawner",
            },
            body=json.dumps({"template": template if isinstance(template, str) else None, "server": project}),
            request_timeout=REQUEST_TIMEOUT,
        )
        try:
            # raise_error=False returns every HTTP answer; no answer at all (refused, timed out) raises
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as e:
            self.log.error("Animus API at %s cannot be reached to open %s: %s", self.animus_api_url, project, e)
            raise web.HTTPError(503, f"Animus cannot be reached to open project {project!r}'s workspace") from None
        if response.code == 200:
            return
        try:
            message = json.loads(response.body).get("message")
        except (ValueError, AttributeError):
            message = None
        if response.code >= 500:
            self.log.error("Animus API answered %s when opening %s: %s", response.code, project, message)
            raise web.HTTPError(503, f"Animus cannot check access to project {project!r} now; try again")
        raise web.HTTPError(response.code, message or f"You may not open project {project!r}'s workspace")
