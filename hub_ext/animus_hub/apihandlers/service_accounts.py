"""/projects/{project}/service-accounts: non-human principals of a project and their tokens."""

from __future__ import annotations

from ..schemas import ServiceAccountCreate, ServiceAccountTokenCreate, ServiceAccountUpdate
from ..services import service_accounts as svc
from .base import APIHandler
from .projects import PROJECT

NAME = r"(?P<name>[^/]+)"
PREFIX = r"(?P<prefix>[^/]+)"
# the default of AnimusAPI.service_account_token_max_expires_in: 365 days
DEFAULT_MAX_EXPIRES_IN = 365 * 24 * 3600


def _resource(project: str, name: str, prefix: str | None = None) -> str:
    base = f"project/{project}/service-accounts/{name}"
    return f"{base}/tokens/{prefix}" if prefix else base


class ServiceAccountListAPIHandler(APIHandler):
    actions = {"GET": "service_accounts:read", "POST": "service_accounts:write"}

    def get(self, project: str) -> None:
        rows, next_cursor = svc.list_service_accounts(
            self.db,
            self.project,
            self.limit_arg(),
            self.get_query_argument("cursor", None),
            include_disabled=self.bool_arg("disabled"),
        )
        self.write_json({"items": [svc.service_account_json(sa) for sa in rows], "next_cursor": next_cursor})

    def post(self, project: str) -> None:
        data = self.json_body(ServiceAccountCreate)
        sa = svc.create_service_account(self.db, self.project, data, self.principal.name, self.role)
        self.commit_and_write(
            svc.service_account_json(sa),
            201,
            audit_action="service_account.create",
            resource=_resource(project, sa.name),
            details={"name": sa.name, "role": sa.role},
        )


class ServiceAccountAPIHandler(APIHandler):
    actions = {"GET": "service_accounts:read", "PATCH": "service_accounts:write", "DELETE": "service_accounts:write"}

    def get(self, project: str, name: str) -> None:
        self.write_json(svc.service_account_json(svc.find_service_account(self.db, self.project, name)))

    def patch(self, project: str, name: str) -> None:
        data = self.json_body(ServiceAccountUpdate)
        sa = svc.find_service_account(self.db, self.project, name)
        changes = svc.update_service_account(self.project, sa, data, self.role)
        self.commit_and_write(
            svc.service_account_json(sa),
            audit_action="service_account.update",
            resource=_resource(project, name),
            details={"changes": changes, "changed": bool(changes)},
        )

    def delete(self, project: str, name: str) -> None:
        sa = svc.find_service_account(self.db, self.project, name)
        revoked = svc.disable_service_account(self.db, self.project, sa)
        self.commit_and_write(
            None,
            204,
            audit_action="service_account.disable",
            resource=_resource(project, name),
            details={"role": sa.role, "revoked_count": revoked},
        )


class ServiceAccountTokenListAPIHandler(APIHandler):
    actions = {"GET": "service_account_tokens:read", "POST": "service_account_tokens:write"}

    def get(self, project: str, name: str) -> None:
        sa = svc.find_service_account(self.db, self.project, name)
        rows, next_cursor = svc.list_tokens(self.db, sa, self.limit_arg(), self.get_query_argument("cursor", None))
        self.write_json({"items": [svc.token_json(t) for t in rows], "next_cursor": next_cursor})

    def post(self, project: str, name: str) -> None:
        data = self.json_body(ServiceAccountTokenCreate)
        sa = svc.find_service_account(self.db, self.project, name)
        maximum = self.settings.get("service_account_token_max_expires_in", DEFAULT_MAX_EXPIRES_IN)
        token, value = svc.create_token(self.db, self.project, sa, data, self.principal.name, self.role, maximum)
        meta = svc.token_json(token)
        self.commit_and_write(
            {**meta, "token": value},
            201,
            audit_action="service_account.token.create",
            resource=_resource(project, name, token.prefix),
            details={"prefix": token.prefix, "scopes": meta["scopes"], "expires_at": meta["expires_at"]},
            # a retry with the same Idempotency-Key gets the metadata, never the value again
            replay_body={**meta, "token": None},
        )


class ServiceAccountTokenAPIHandler(APIHandler):
    actions = {"DELETE": "service_account_tokens:write"}

    def delete(self, project: str, name: str, prefix: str) -> None:
        sa = svc.find_service_account(self.db, self.project, name)
        token = svc.find_token(self.db, sa, prefix)
        changed = svc.revoke_token(self.project, token)
        self.commit_and_write(
            None,
            204,
            audit_action="service_account.token.revoke",
            resource=_resource(project, name, prefix),
            details={"prefix": prefix, "changed": changed},
        )


default_handlers = [
    (f"/projects/{PROJECT}/service-accounts", ServiceAccountListAPIHandler),
    (f"/projects/{PROJECT}/service-accounts/{NAME}", ServiceAccountAPIHandler),
    (f"/projects/{PROJECT}/service-accounts/{NAME}/tokens", ServiceAccountTokenListAPIHandler),
    (f"/projects/{PROJECT}/service-accounts/{NAME}/tokens/{PREFIX}", ServiceAccountTokenAPIHandler),
]
