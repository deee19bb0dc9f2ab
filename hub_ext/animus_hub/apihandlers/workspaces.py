"""Opening a project's workspace: the hub asks before it starts one.

The spawner calls ``POST /projects/{project}/workspaces/open`` with the new server's
own token (bound to that project) before the workspace starts. A person who is not a
member gets the 404 every non-member gets (audited as a denial), and the hub starts
nothing; a member's opening is audited as ``workspace.open``.
"""

from __future__ import annotations

from ..schemas import WorkspaceOpen
from .base import APIHandler
from .projects import PROJECT


class WorkspaceOpenAPIHandler(APIHandler):
    actions = {"POST": "workspaces:open"}

    def post(self, project: str) -> None:
        data = self.json_body(WorkspaceOpen)
        body = {
            "project": self.project.slug,
            "user": self.principal.name,
            "role": self.role.name if self.role is not None else None,
            "template": data.template,
        }
        self.commit_and_write(
            body,
            200,
            audit_action="workspace.open",
            resource=f"project/{project}/workspaces/{self.principal.name}",
            details={"template": data.template, "server": data.server},
        )


default_handlers = [
    (f"/projects/{PROJECT}/workspaces/open", WorkspaceOpenAPIHandler),
]
