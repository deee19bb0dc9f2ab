"""/role-mappings: group → project-role rules (platform admins)."""

from __future__ import annotations

from ..auth.rbac import RuleSpec
from ..orm import Role
from ..schemas import RoleMappingCreate
from ..services import rolemappings as svc
from .base import APIHandler


class RoleMappingListAPIHandler(APIHandler):
    actions = {"GET": "role_mappings:read", "POST": "role_mappings:write"}

    def get(self) -> None:
        rules = self.authorizer.rules(self.db)
        self.write_json({"items": [svc.rule_json(r) for r in rules], "next_cursor": None})

    def post(self) -> None:
        data = self.json_body(RoleMappingCreate)
        rule = svc.create_rule(self.db, data, self.principal.name)
        body = svc.rule_json(RuleSpec(rule.group_pattern, Role[rule.role], data.project, source="api", id=rule.id))
        self.commit_and_write(
            body, 201, audit_action="role_mapping.create", resource=f"role-mappings/{rule.id}", details=body
        )
        self.authorizer.invalidate_rules()


class RoleMappingAPIHandler(APIHandler):
    actions = {"DELETE": "role_mappings:write"}

    def delete(self, rule_id: str) -> None:
        rule = svc.find_rule(self.db, rule_id)
        details = {"group_pattern": rule.group_pattern, "role": rule.role}
        self.db.delete(rule)
        self.commit_and_write(
            None, 204, audit_action="role_mapping.delete", resource=f"role-mappings/{rule_id}", details=details
        )
        self.authorizer.invalidate_rules()


default_handlers = [
    ("/role-mappings", RoleMappingListAPIHandler),
    (r"/role-mappings/(?P<rule_id>[^/]+)", RoleMappingAPIHandler),
]
