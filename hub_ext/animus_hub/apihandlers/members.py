"""/projects/{project}/members: who holds which role."""

from __future__ import annotations

from ..schemas import MemberCreate, MemberUpdate
from ..services import members as svc
from .base import APIHandler
from .projects import PROJECT

KIND = r"(?P<kind>users|groups)"
NAME = r"(?P<name>[^/]+)"


class MemberListAPIHandler(APIHandler):
    actions = {"GET": "members:read", "POST": "members:write"}

    def get(self, project: str) -> None:
        rows, next_cursor = svc.list_members(
            self.db, self.project, self.limit_arg(), self.get_query_argument("cursor", None)
        )
        self.write_json({"items": [svc.member_json(m) for m in rows], "next_cursor": next_cursor})

    def post(self, project: str) -> None:
        data = self.json_body(MemberCreate)
        m = svc.add_member(self.db, self.project, data, self.principal.name)
        self.commit_and_write(
            svc.member_json(m),
            201,
            audit_action="member.add",
            resource=f"project/{project}/members/{m.principal_kind}s/{m.principal_name}",
            details={"kind": m.principal_kind, "name": m.principal_name, "role": m.role},
        )


class MemberAPIHandler(APIHandler):
    actions = {"GET": "members:read", "PUT": "members:write", "DELETE": "members:write"}

    def _member(self, kind: str, name: str):
        return svc.find_member(self.db, self.project, svc.kind_from_segment(kind), name)

    def get(self, project: str, kind: str, name: str) -> None:
        self.write_json(svc.member_json(self._member(kind, name)))

    def put(self, project: str, kind: str, name: str) -> None:
        data = self.json_body(MemberUpdate)
        m = self._member(kind, name)
        previous = svc.set_role(self.db, self.project, m, data.role)
        self.commit_and_write(
            svc.member_json(m),
            audit_action="member.update",
            resource=f"project/{project}/members/{kind}/{name}",
            details={"role": data.role, "previous_role": previous or data.role, "changed": previous is not None},
        )

    def delete(self, project: str, kind: str, name: str) -> None:
        m = self._member(kind, name)
        role = m.role
        svc.remove_member(self.db, self.project, m)
        self.commit_and_write(
            None,
            204,
            audit_action="member.remove",
            resource=f"project/{project}/members/{kind}/{name}",
            details={"role": role},
        )


default_handlers = [
    (f"/projects/{PROJECT}/members", MemberListAPIHandler),
    (f"/projects/{PROJECT}/members/{KIND}/{NAME}", MemberAPIHandler),
]
