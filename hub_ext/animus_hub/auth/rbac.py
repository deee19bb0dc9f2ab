"""Project RBAC: the one place that decides who may do what.

Roles per project are viewer < contributor < maintainer < owner; platform admins
may do everything. A principal's role in a project is the highest of:

- a direct user membership,
- a membership of one of its groups,
- a role-mapping rule matching one of its groups (from configuration or the
  database), e.g. ``ml-{project}-admins`` → owner,
- for service accounts and run tokens, the role bound to the token's project.

Inside a project, a caller with no role gets 404 (the project's existence does
not leak); a member whose role is too low gets 403. Handlers declare an action
per HTTP method and never decide on their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..errors import AnimusError
from ..orm import Project, ProjectMember, Role, RoleMappingRule
from .principal import Principal

PROJECT_PLACEHOLDER = "{project}"
SLUG_RE = r"[a-z][a-z0-9-]{1,61}[a-z0-9]"

# action → the least project role that may perform it
PROJECT_ACTIONS: dict[str, Role] = {
    "project:read": Role.viewer,
    "project:update": Role.maintainer,
    "project:archive": Role.owner,
    "members:read": Role.viewer,
    "members:write": Role.owner,
    "audit:read": Role.owner,
    "experiments:read": Role.viewer,
    "experiments:write": Role.contributor,
    "runs:read": Role.viewer,
    "runs:write": Role.contributor,
}

# actions outside any project → who may perform them
#   "public": anyone, even without a token (health probes)
#   "authenticated": any identified principal
#   "user": a human user (not a service account or run token)
#   "admin": platform admins only
PLATFORM_ACTIONS: dict[str, str] = {
    "health:read": "public",
    "version:read": "authenticated",
    "whoami:read": "authenticated",
    "api:describe": "authenticated",
    "projects:list": "authenticated",
    "projects:create": "user",
    "audit:read_all": "admin",
    "role_mappings:read": "admin",
    "role_mappings:write": "admin",
}

ALL_ACTIONS = frozenset(PROJECT_ACTIONS) | frozenset(PLATFORM_ACTIONS)


@dataclass(frozen=True)
class RuleSpec:
    """A group → role rule; ``project`` is None when the pattern has ``{project}``."""

    group_pattern: str
    role: Role
    project: str | None = None
    source: str = "config"
    id: int | None = None


@dataclass(frozen=True)
class Grant:
    """Why a principal holds a role: which membership or rule gave it."""

    role: Role
    via: str  # "admin", "user", "group", "rule", "token"
    detail: str


def validate_group_pattern(pattern: str) -> None:
    if pattern.count(PROJECT_PLACEHOLDER) > 1 or ("{" in pattern.replace(PROJECT_PLACEHOLDER, "")):
        raise AnimusError(
            422,
            "invalid_group_pattern",
            "A group pattern is an exact group name, or contains {project} once",
            {"group_pattern": pattern},
        )


@lru_cache(maxsize=1024)
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    before, _, after = pattern.partition(PROJECT_PLACEHOLDER)
    return re.compile(f"^{re.escape(before)}(?P<project>{SLUG_RE}){re.escape(after)}$")


def projects_named_by(rule: RuleSpec, groups: frozenset[str]) -> set[str]:
    """The project slugs a {project} rule grants through any of `groups`."""
    rx = _pattern_regex(rule.group_pattern)
    found = set()
    for group in groups:
        m = rx.match(group)
        if m:
            found.add(m.group("project"))
    return found


class Authorizer:
    """Resolves roles and makes every authorisation decision."""

    def __init__(self, config_rules: list[RuleSpec]):
        self.config_rules = list(config_rules)

    # --- rules -------------------------------------------------------------

    def rules(self, session: Session) -> list[RuleSpec]:
        db_rules = session.execute(
            select(RoleMappingRule, Project.slug).outerjoin(Project, RoleMappingRule.project_id == Project.id)
        ).all()
        return self.config_rules + [
            RuleSpec(r.group_pattern, Role[r.role], slug, source="api", id=r.id) for r, slug in db_rules
        ]

    # --- roles -------------------------------------------------------------

    def grants(self, session: Session, principal: Principal, project: Project) -> list[Grant]:
        """Every grant the principal holds in `project`, strongest first."""
        grants: list[Grant] = []
        if principal.is_admin:
            grants.append(Grant(Role.owner, "admin", "platform admin"))
        if principal.kind in ("service_account", "run"):
            if principal.project_id == project.id and principal.role is not None:
                grants.append(Grant(principal.role, "token", f"{principal.kind} {principal.name}"))
            return sorted(grants, key=lambda g: g.role, reverse=True)
        if principal.kind != "user":
            return grants
        conditions = [(ProjectMember.principal_kind == "user") & (ProjectMember.principal_name == principal.name)]
        if principal.groups:
            conditions.append(
                (ProjectMember.principal_kind == "group") & (ProjectMember.principal_name.in_(sorted(principal.groups)))
            )
        for m in session.scalars(select(ProjectMember).where(ProjectMember.project_id == project.id, or_(*conditions))):
            grants.append(Grant(Role[m.role], m.principal_kind, m.principal_name))
        if principal.groups:
            for rule in self.rules(session):
                if PROJECT_PLACEHOLDER in rule.group_pattern:
                    matched = [
                        g
                        for g in principal.groups
                        if (m := _pattern_regex(rule.group_pattern).match(g)) and m.group("project") == project.slug
                    ]
                elif rule.project == project.slug:
                    matched = [g for g in principal.groups if g == rule.group_pattern]
                else:
                    matched = []
                for g in matched:
                    grants.append(
                        Grant(rule.role, "rule", f"group {g} matches rule {rule.group_pattern!r} ({rule.source})")
                    )
        return sorted(grants, key=lambda g: g.role, reverse=True)

    def role_in(self, session: Session, principal: Principal, project: Project) -> Role | None:
        grants = self.grants(session, principal, project)
        return grants[0].role if grants else None

    def visible_projects_filter(self, session: Session, principal: Principal):
        """A SQL condition selecting the projects in which the principal has any role."""
        if principal.is_admin:
            return True
        if principal.kind in ("service_account", "run"):
            return Project.id == principal.project_id
        if principal.kind != "user":
            return False
        member_kinds = [(ProjectMember.principal_kind == "user") & (ProjectMember.principal_name == principal.name)]
        if principal.groups:
            member_kinds.append(
                (ProjectMember.principal_kind == "group") & ProjectMember.principal_name.in_(sorted(principal.groups))
            )
        conditions = [Project.id.in_(select(ProjectMember.project_id).where(or_(*member_kinds)))]
        slugs: set[str] = set()
        for rule in self.rules(session):
            if PROJECT_PLACEHOLDER in rule.group_pattern:
                slugs |= projects_named_by(rule, principal.groups)
            elif rule.project and rule.group_pattern in principal.groups:
                slugs.add(rule.project)
        if slugs:
            conditions.append(Project.slug.in_(sorted(slugs)))
        return or_(*conditions)

    # --- decisions ---------------------------------------------------------

    def authorize(
        self,
        session: Session,
        principal: Principal,
        action: str,
        project: Project | None = None,
        project_slug: str | None = None,
    ) -> Role | None:
        """Allow `action` or raise AnimusError (401, 403 or 404).

        For project actions, `project` is the project named in the request or None
        when no such project exists; non-members get the same 404 as for a project
        that does not exist. Returns the caller's role in the project, if any.
        """
        if action in PLATFORM_ACTIONS:
            who = PLATFORM_ACTIONS[action]
            if who == "public":
                return None
            if principal.kind == "anonymous":
                raise unauthenticated()
            if who == "authenticated":
                return None
            if who == "user" and principal.kind == "user":
                return None
            if who == "admin" and principal.is_admin:
                return None
            raise AnimusError(403, "forbidden", f"Not allowed to {action.replace(':', ' ')}", {"action": action})
        if action not in PROJECT_ACTIONS:
            raise AnimusError(500, "unknown_action", f"No authorisation rule for action {action!r}")
        if principal.kind == "anonymous":
            raise unauthenticated()
        name = project.slug if project is not None else (project_slug or "")
        if project is None:
            raise project_not_found(name)
        role = self.role_in(session, principal, project)
        if role is None:
            raise project_not_found(name, denied=True)
        needed = PROJECT_ACTIONS[action]
        if role < needed:
            raise AnimusError(
                403,
                "forbidden",
                f"Your role in project {name!r} is {role.name}; {action} needs {needed.name} or above",
                {"action": action, "role": role.name, "required_role": needed.name},
            )
        return role


def unauthenticated() -> AnimusError:
    return AnimusError(
        401,
        "unauthenticated",
        "Authentication required: send 'Authorization: Bearer <token>' (see `animus login`)",
        headers={"WWW-Authenticate": 'Bearer realm="animus"'},
    )


def project_not_found(slug: str, denied: bool = False) -> AnimusError:
    err = AnimusError(404, "project_not_found", f"Project {slug!r} not found")
    # the client sees the same answer either way; the audit log sees the difference
    err.denied = denied  # type: ignore[attr-defined]
    return err
