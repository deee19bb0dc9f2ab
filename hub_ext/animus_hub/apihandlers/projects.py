"""/projects: create, list, read, update, archive and unarchive."""

from __future__ import annotations

from ..schemas import ProjectCreate, ProjectUpdate
from ..services import projects as svc
from .base import APIHandler

PROJECT = r"(?P<project>[^/]+)"


class ProjectListAPIHandler(APIHandler):
    actions = {"GET": "projects:list", "POST": "projects:create"}

    def get(self) -> None:
        rows, next_cursor = svc.list_projects(
            self.db,
            self.authorizer,
            self.principal,
            include_archived=self.bool_arg("archived"),
            limit=self.limit_arg(),
            cursor=self.get_query_argument("cursor", None),
        )
        items = [svc.project_json(p, self.authorizer.role_in(self.db, self.principal, p)) for p in rows]
        self.write_json({"items": items, "next_cursor": next_cursor})

    def post(self) -> None:
        data = self.json_body(ProjectCreate)
        self.project = svc.create_project(self.db, self.principal, data)
        self.commit_and_write(
            svc.project_json(self.project, self.authorizer.role_in(self.db, self.principal, self.project)),
            201,
            audit_action="project.create",
            resource=f"project/{self.project.slug}",
            details={"display_name": self.project.display_name},
        )


class ProjectAPIHandler(APIHandler):
    actions = {"GET": "project:read", "PATCH": "project:update"}

    def get(self, project: str) -> None:
        self.write_json(svc.project_json(self.project, self.role))

    def patch(self, project: str) -> None:
        data = self.json_body(ProjectUpdate)
        changes = svc.update_project(self.db, self.project, data)
        self.commit_and_write(
            svc.project_json(self.project, self.role),
            audit_action="project.update",
            resource=f"project/{project}",
            details={"changes": changes},
        )


class ProjectArchiveAPIHandler(APIHandler):
    actions = {"POST": "project:archive"}
    archive = True

    def post(self, project: str) -> None:
        changed = svc.set_archived(self.db, self.principal, self.project, self.archive)
        self.commit_and_write(
            svc.project_json(self.project, self.role),
            audit_action="project.archive" if self.archive else "project.unarchive",
            resource=f"project/{project}",
            details={"changed": changed},
        )


class ProjectUnarchiveAPIHandler(ProjectArchiveAPIHandler):
    archive = False


default_handlers = [
    ("/projects", ProjectListAPIHandler),
    (f"/projects/{PROJECT}", ProjectAPIHandler),
    (f"/projects/{PROJECT}/archive", ProjectArchiveAPIHandler),
    (f"/projects/{PROJECT}/unarchive", ProjectUnarchiveAPIHandler),
]
