""" "Who can access X and why": the principals holding a role in a project, and each one's decisions.

The decisions are the Authorizer's (``auth.rbac.Authorizer.explain``); this module
only finds the resource, the candidate principals (direct members, member groups,
groups named by role-mapping rules, service accounts, platform admins) and, for one
named principal, what the hub knows of them (groups, admin).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..auth.principal import Principal
from ..auth.rbac import PROJECT_PLACEHOLDER, Authorizer, ExplainContext
from ..errors import AnimusError
from ..orm import Dataset, Project, ProjectMember, Role, ServiceAccount
from . import datasets as datasets_svc
from . import models as models_svc
from . import promotion_policy as policy_svc
from . import secrets as secrets_svc
from . import tracking as tracking_svc

RESOURCE_RE = re.compile(r"^(?P<kind>project|dataset|run|model|secret)(?::(?P<name>[^\x00-\x1f]{1,255}))?$")
PRINCIPAL_RE = re.compile(r"^(?P<kind>user|group|service_account):(?P<name>[^\x00-\x1f/]{1,255})$")


def parse_resource(raw: str | None) -> tuple[str, str]:
    m = RESOURCE_RE.match(raw or "project")
    if not m or (m.group("kind") != "project") != bool(m.group("name")):
        raise AnimusError(
            400,
            "invalid_resource",
            "resource is 'project', or KIND:NAME with KIND one of dataset, run, model, secret (e.g. dataset:churn)",
        )
    return m.group("kind"), m.group("name") or ""


def parse_principal(raw: str) -> tuple[str, str]:
    m = PRINCIPAL_RE.match(raw)
    if not m:
        raise AnimusError(
            400, "invalid_principal", "principal is user:NAME, group:NAME or service_account:NAME (e.g. user:bob)"
        )
    return m.group("kind"), m.group("name")


def context(session: Session, project: Project, kind: str, name: str) -> ExplainContext:
    """The resource's facts an explanation needs; 404 when it does not exist."""
    if kind == "project":
        return ExplainContext("project", project.slug)
    if kind == "dataset":
        d = session.scalar(select(Dataset).where(Dataset.project_id == project.id, Dataset.name == name))
        if d is None:
            raise AnimusError(404, "dataset_not_found", f"Dataset {name!r} not found")
        groups = datasets_svc.reader_groups(session, d) if d.restricted else None
        return ExplainContext("dataset", name, dataset_reader_groups=groups)
    if kind == "run":
        run = tracking_svc.find_run(session, project, name)
        return ExplainContext("run", run.id, run_created_by=run.created_by)
    if kind == "model":
        model = models_svc.find_model(session, project, name)
        policy = policy_svc.current_policy(session, project)
        spec = policy_svc.effective_spec(policy.spec if policy is not None else None)["transitions"]["approved"]
        requested_by = None
        for v in model_versions(session, model):
            req = models_svc.open_request(session, v)
            if req is not None:
                requested_by = req.requested_by
                spec = policy_svc.effective_spec(policy.spec if policy is not None else None)["transitions"][
                    req.to_status
                ]
                break
        return ExplainContext(
            "model",
            name,
            approver_roles=spec.get("approver_roles") or ["maintainer", "owner"],
            four_eyes=bool(spec.get("four_eyes")),
            requested_by=requested_by,
        )
    secrets_svc.find(session, project, name)
    return ExplainContext("secret", name)


def model_versions(session: Session, model: Any) -> list[Any]:
    from ..orm import ModelVersion

    return list(
        session.scalars(
            select(ModelVersion).where(ModelVersion.model_id == model.id).order_by(ModelVersion.version.desc())
        )
    )


def candidates(
    session: Session, authorizer: Authorizer, project: Project, admin_users: set[str], admin_groups: set[str]
) -> list[tuple[str, Principal, str]]:
    """(label, principal, how it was found) for everyone who holds, or may hold, a role in `project`."""
    out: list[tuple[str, Principal, str]] = []
    seen: set[str] = set()

    def add(label: str, p: Principal, note: str) -> None:
        if label not in seen:
            seen.add(label)
            out.append((label, p, note))

    for kind, name in session.execute(
        select(ProjectMember.principal_kind, ProjectMember.principal_name).where(ProjectMember.project_id == project.id)
    ):
        if kind == "user":
            add(f"user:{name}", Principal(kind="user", name=name), "direct member (groups not counted)")
        else:
            add(
                f"group:{name}",
                Principal(kind="user", name=f"member of {name}", groups=frozenset({name})),
                "member group",
            )
    for rule in authorizer.rules(session):
        if PROJECT_PLACEHOLDER in rule.group_pattern:
            group = rule.group_pattern.replace(PROJECT_PLACEHOLDER, project.slug)
        elif rule.project == project.slug:
            group = rule.group_pattern
        else:
            continue
        add(
            f"group:{group}",
            Principal(kind="user", name=f"member of {group}", groups=frozenset({group})),
            "role-mapping rule",
        )
    for sa in session.scalars(
        select(ServiceAccount).where(ServiceAccount.project_id == project.id, ServiceAccount.disabled_at.is_(None))
    ):
        add(
            f"service_account:{sa.name}",
            Principal(kind="service_account", name=sa.name, project_id=project.id, role=Role[sa.role]),
            "service account",
        )
    for user in sorted(admin_users):
        add(f"user:{user}", Principal(kind="user", name=user, is_admin=True), "platform admin (configured)")
    for group in sorted(admin_groups):
        add(
            f"group:{group}",
            Principal(kind="user", name=f"member of {group}", groups=frozenset({group}), is_admin=True),
            "platform admin group (configured)",
        )
    return out


def who_can_access(
    session: Session,
    authorizer: Authorizer,
    project: Project,
    ctx: ExplainContext,
    admin_users: set[str],
    admin_groups: set[str],
) -> list[dict[str, Any]]:
    items = []
    for label, p, note in candidates(session, authorizer, project, admin_users, admin_groups):
        e = authorizer.explain(session, p, project, ctx)
        if e["role"] is None:
            continue
        e["principal"] = label
        e["found_as"] = note
        items.append(e)
    items.sort(key=lambda e: (-Role[e["role"]].value, e["principal"]))
    return items


def principal_for(
    session: Session,
    project: Project,
    kind: str,
    name: str,
    hub_user: dict[str, Any] | None,
    admin_users: set[str],
    admin_groups: set[str],
) -> tuple[Principal, list[str]]:
    """The principal to explain, and notes on what is known of it."""
    notes: list[str] = []
    if kind == "group":
        return Principal(kind="user", name=f"member of {name}", groups=frozenset({name})), [
            f"a user whose only group is {name}"
        ]
    if kind == "service_account":
        sa = session.scalar(
            select(ServiceAccount).where(ServiceAccount.project_id == project.id, ServiceAccount.name == name)
        )
        if sa is None:
            raise AnimusError(404, "service_account_not_found", f"Service account {name!r} not found")
        if sa.disabled_at is not None:
            notes.append("the service account is disabled: its tokens are refused whatever its role")
        return Principal(kind="service_account", name=name, project_id=project.id, role=Role[sa.role]), notes
    groups: frozenset[str] = frozenset()
    hub_admin = False
    if hub_user is None:
        notes.append(f"the hub has no user {name!r}: only direct memberships count")
    else:
        groups = frozenset(hub_user.get("groups") or [])
        hub_admin = bool(hub_user.get("admin"))
        notes.append(f"groups as the hub knows them: {', '.join(sorted(groups)) or 'none'}")
    is_admin = hub_admin or name in admin_users or bool(groups & admin_groups)
    return Principal(kind="user", name=name, groups=groups, is_admin=is_admin), notes
