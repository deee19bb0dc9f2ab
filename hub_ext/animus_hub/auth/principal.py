"""The authenticated caller of a request."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..orm import Role


@dataclass(frozen=True)
class Principal:
    """Someone or something making a request.

    ``kind`` is ``user`` (a JupyterHub user), ``service`` (a JupyterHub service),
    ``service_account`` or ``run`` (Animus-issued tokens). Service-account and run
    principals are bound to one project (``project_id``) with a fixed ``role``. A user
    calling with a workspace's token is bound to that workspace's project
    (``workspace_project``, see ``auth.identity.workspace_project``): it keeps the
    person's roles, but only inside that one project.
    """

    kind: str
    name: str
    groups: frozenset[str] = frozenset()
    is_admin: bool = False
    project_id: int | None = None
    role: Role | None = None
    token_id: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    #: for run tokens: the one run this principal may touch
    run_id: str | None = None
    #: for a user's workspace token: the slug of the one project the token is valid for
    workspace_project: str | None = None

    @property
    def key(self) -> str:
        """A stable identifier across kinds, used for idempotency records."""
        return f"{self.kind}:{self.name}"

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "name": self.name,
            "groups": sorted(self.groups),
            "admin": self.is_admin,
        }


ANONYMOUS = Principal(kind="anonymous", name="")
