"""GET /projects/{project}/access: who can access the project or one of its objects, and why."""

from __future__ import annotations

from ..errors import AnimusError
from ..orm import Role
from ..services import access as access_svc
from .base import APIHandler
from .projects import PROJECT


class AccessAPIHandler(APIHandler):
    """?resource=project|dataset:NAME|run:ID|model:NAME|secret:NAME; ?principal=user:NAME|group:NAME|service_account:NAME.

    Without `principal`: every principal with a role, and its decisions (maintainers and up).
    With it: that principal's grants and decisions, including why something is refused
    (anyone may ask about themselves; others need maintainer).
    """

    actions = {"GET": "access:read"}

    async def get(self, project: str) -> None:
        kind, name = access_svc.parse_resource(self.get_query_argument("resource", None))
        raw_principal = self.get_query_argument("principal", None)
        asked = access_svc.parse_principal(raw_principal) if raw_principal is not None else None
        about_self = asked is not None and asked == (self.principal.kind, self.principal.name)
        if not about_self and not self.principal.is_admin and (self.role is None or self.role < Role.maintainer):
            raise AnimusError(
                403,
                "forbidden",
                "Only maintainers and owners may see who else can access this project; "
                f"ask about yourself with principal={self.principal.kind}:{self.principal.name}",
                {"action": "access:read", "role": self.role.name if self.role else None, "required_role": "maintainer"},
            )
        ctx = access_svc.context(self.db, self.project, kind, name)
        identifier = self.settings["identifier"]
        admin_users, admin_groups = set(identifier.admin_users), set(identifier.admin_groups)
        resource = "project" if kind == "project" else f"{kind}:{name}"
        if asked is None:
            items = access_svc.who_can_access(self.db, self.authorizer, self.project, ctx, admin_users, admin_groups)
            self.write_json(
                {
                    "project": self.project.slug,
                    "resource": resource,
                    "items": items,
                    "notes": [
                        "users are listed by their direct memberships; their groups may give them more",
                        "JupyterHub admins are platform admins too and are not listed here",
                    ],
                }
            )
            return
        if about_self:
            who, notes = self.principal, ["you, as this request identified you"]
        else:
            hub_user = await self.settings["hub_api"].user(asked[1]) if asked[0] == "user" else None
            who, notes = access_svc.principal_for(
                self.db, self.project, asked[0], asked[1], hub_user, admin_users, admin_groups
            )
        body = self.authorizer.explain(self.db, who, self.project, ctx)
        body["principal"] = f"{asked[0]}:{asked[1]}"
        self.write_json({"project": self.project.slug, "resource": resource, **body, "notes": notes})


default_handlers = [(f"/projects/{PROJECT}/access", AccessAPIHandler)]
