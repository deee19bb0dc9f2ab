"""Service-level endpoints: health, version, whoami, the OpenAPI document."""

from __future__ import annotations

import importlib.resources

import yaml
from sqlalchemy import text

from .._version import __version__
from ..db import head_revision
from ..errors import AnimusError
from .base import APIHandler


class HealthHandler(APIHandler):
    """Liveness and readiness: answers 200 when the database answers."""

    actions = {"GET": "health:read"}

    def get(self) -> None:
        try:
            self.db.execute(text("SELECT 1"))
        except Exception:
            raise AnimusError(503, "database_unavailable", "The database does not answer") from None
        self.write_json({"status": "ok"})


class ServiceRootHandler(APIHandler):
    """The service's root: where the API is (the hub polls it while the service starts)."""

    actions = {"GET": "health:read"}

    def get(self) -> None:
        self.write_json({"service": "animus", "api": self.settings["api_url_path"]})


class VersionHandler(APIHandler):
    actions = {"GET": "version:read"}

    def get(self) -> None:
        self.write_json({"version": __version__, "api": "v1", "schema_revision": head_revision()})


class WhoAmIHandler(APIHandler):
    """Who the caller is; for a token bound to one project (a workspace's, a service account's,
    a run's) also that project (``token_project``, and ``project`` as before) and the role in it."""

    actions = {"GET": "whoami:read"}

    def get(self) -> None:
        body = self.principal.to_json()
        body["project"] = body["token_project"] = None
        if self.principal.project_id is not None and self.principal.role is not None:
            from ..orm import Project

            project = self.db.get(Project, self.principal.project_id)
            body["project"] = body["token_project"] = project.slug if project else None
            body["role"] = self.principal.role.name
        elif self.principal.workspace_project is not None:
            slug = self.principal.workspace_project
            body["project"] = body["token_project"] = slug
            _, grants = self.authorizer.resolve(self.db, self.principal, slug, for_update=False)
            body["role"] = grants[0].role.name if grants else None
        self.write_json(body)


class OpenAPIHandler(APIHandler):
    """The OpenAPI 3.1 document this service implements."""

    actions = {"GET": "api:describe"}
    _doc: dict | None = None

    def get(self) -> None:
        if OpenAPIHandler._doc is None:
            text_ = importlib.resources.files("animus_hub").joinpath("openapi.yaml").read_text()
            OpenAPIHandler._doc = yaml.safe_load(text_)
        self.write_json(OpenAPIHandler._doc)


default_handlers = [
    ("/health", HealthHandler),
    ("/version", VersionHandler),
    ("/whoami", WhoAmIHandler),
    ("/openapi.json", OpenAPIHandler),
]
