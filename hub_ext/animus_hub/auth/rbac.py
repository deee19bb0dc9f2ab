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

A workspace's token (``Principal.workspace_project``) carries its person's roles
into that one project only: in any other project it gets the same 404 as a
non-member, and outside projects it may do only what WORKSPACE_TOKEN_PLATFORM_ACTIONS
lists.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import and_, bindparam, or_, select
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
    "datasets:read": Role.viewer,
    "datasets:write": Role.contributor,
    "datasets:admin": Role.maintainer,
    "datasets:delete": Role.owner,
    # service accounts: anyone in the project may see which exist; managing them and
    # their tokens needs maintainer (and a role at least the account's: services.service_accounts)
    "service_accounts:read": Role.viewer,
    "service_accounts:write": Role.maintainer,
    "service_account_tokens:read": Role.maintainer,
    "service_account_tokens:write": Role.maintainer,
    # webhooks: maintainers and up see and manage them (URLs may name internal receivers)
    "webhooks:read": Role.maintainer,
    "webhooks:write": Role.maintainer,
    # model registry: contributors register versions and request promotions; who may move a
    # version to which status, and whose approvals count, is the promotion policy's
    # decision (services.models); the policy itself is the owners'
    "models:read": Role.viewer,
    "models:write": Role.contributor,
    "models:promote": Role.contributor,
    "models:export": Role.contributor,
    "promotion_policy:read": Role.viewer,
    "promotion_policy:write": Role.owner,
    "lineage:read": Role.viewer,
    # batch runs: environments are project definitions anyone may read and contributors
    # add to; "runs:report" is what a runner does with its run token (status, logs)
    "environments:read": Role.viewer,
    "environments:write": Role.contributor,
    "runs:report": Role.contributor,
    # a person's own workspace of the project (opened in the browser or through the SSH gateway)
    "workspaces:open": Role.viewer,
    # secrets: contributors see names and metadata (they can already use a secret in a run);
    # maintainers set, rotate and delete; "runs:secrets" is a runner fetching its values
    "secrets:read": Role.contributor,
    "secrets:write": Role.maintainer,
    "runs:secrets": Role.contributor,
    # "who can access X and why": anyone in the project about themselves, maintainers about anyone
    "access:read": Role.viewer,
}

# project actions only a run token may perform (a person cannot fake a runner's report)
RUN_TOKEN_ONLY_ACTIONS = frozenset({"runs:report", "runs:secrets"})
# what a run token may do at all: read its project's data and environments, and read and
# write its own run (``check_run_scope`` compares the run in the path)
RUN_TOKEN_ACTIONS = frozenset(
    {
        "project:read",
        "datasets:read",
        "environments:read",
        "experiments:read",
        "runs:read",
        "runs:write",
        "runs:report",
        "runs:secrets",
    }
)
# the least role that may cancel someone else's run (one's own needs only runs:write)
CANCEL_OTHERS_ROLE = Role.maintainer
# the least role that may ask who else can access something (anyone may ask about themselves)
EXPLAIN_OTHERS_ROLE = Role.maintainer

# what "who can access X and why" checks for each kind of resource
RESOURCE_ACTIONS: dict[str, tuple[str, ...]] = {
    "project": (
        "project:read",
        "project:update",
        "members:write",
        "runs:write",
        "datasets:write",
        "secrets:read",
        "secrets:write",
    ),
    "dataset": ("datasets:read", "datasets:write", "datasets:admin", "datasets:delete"),
    "run": ("runs:read", "runs:cancel"),
    "model": ("models:read", "models:write", "models:promote", "models:approve"),
    "secret": ("secrets:read", "secrets:write", "runs:write"),
}

# project actions only a human may perform: a token cannot create service accounts or
# mint tokens (a leaked token could otherwise outlive its own expiry)
HUMAN_ONLY_ACTIONS = frozenset({"service_accounts:write", "service_account_tokens:write", "workspaces:open"})

# the scopes an Animus token may carry; a token without scopes may do what its role allows
#   "read": only actions that read (named '…:read', plus the listings below)
#   "write": everything its role allows (the same as no scopes)
TOKEN_SCOPES = ("read", "write")
READ_ONLY_ACTIONS = frozenset({"api:describe", "projects:list"})

# actions outside any project → who may perform them
#   "public": anyone, even without a token (health probes)
#   "authenticated": any identified principal
#   "user": a human user (not a service account or run token)
#   "admin": platform admins only
#   "ssh_gateway": only the SSH gateway service (JupyterHub service SSH_GATEWAY_SERVICE)
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
    "event_types:read": "authenticated",
    "user_sessions:read": "admin",
    "users:logout": "admin",
    # a person's own public SSH keys
    "ssh_keys:read": "user",
    "ssh_keys:write": "user",
    # the SSH gateway asks whether a key may log in, and reports logins and session ends
    "ssh:authorize": "ssh_gateway",
    "ssh:report": "ssh_gateway",
}

SSH_GATEWAY_SERVICE = "animus-ssh"

# what a workspace's token (bound to its project) may do outside any project: say who it is,
# describe the API, list the person's projects (to switch to another one's workspace), and
# manage the person's own SSH keys. Not create projects (it could not act in the new one) nor
# administer the platform (an admin's workspace token would reach every project's audit trail).
WORKSPACE_TOKEN_PLATFORM_ACTIONS = frozenset(
    {
        "health:read",
        "version:read",
        "whoami:read",
        "api:describe",
        "projects:list",
        "event_types:read",
        "ssh_keys:read",
        "ssh_keys:write",
    }
)

ALL_ACTIONS = frozenset(PROJECT_ACTIONS) | frozenset(PLATFORM_ACTIONS)

# actions whose changes can alter a later decision: after one commits, this process
# forgets its cached read decisions (other writes leave them, so logging does not
# make every following read query memberships again)
ACCESS_CHANGING_ACTIONS = frozenset(
    {
        "projects:create",
        "project:update",
        "project:archive",
        "members:write",
        "service_accounts:write",
        "service_account_tokens:write",
        "role_mappings:write",
    }
)


def is_read_action(action: str) -> bool:
    return action.endswith(":read") or action in READ_ONLY_ACTIONS


def scope_allows(principal: Principal, action: str) -> bool:
    """Whether the scopes of an Animus token (service account, run) allow `action`.

    JupyterHub tokens carry JupyterHub scopes, which are not ours to interpret here.
    """
    if principal.kind not in ("service_account", "run") or not principal.scopes:
        return True
    return "write" in principal.scopes or ("read" in principal.scopes and is_read_action(action))


def insufficient_scope(principal: Principal, action: str) -> AnimusError:
    return AnimusError(
        403,
        "insufficient_scope",
        f"This token's scopes ({', '.join(sorted(principal.scopes))}) do not allow {action}",
        {"action": action, "scopes": sorted(principal.scopes)},
    )


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


# a user's direct and group memberships of one project, built once (hot path of every request)
_MEMBERSHIP = or_(
    and_(ProjectMember.principal_kind == "user", ProjectMember.principal_name == bindparam("user")),
    and_(
        ProjectMember.principal_kind == "group", ProjectMember.principal_name.in_(bindparam("groups", expanding=True))
    ),
)
# Core (not ORM) statements: on the read path an ORM query costs more than the query itself
_PROJECT_COLUMNS = [c.name for c in Project.__table__.columns]
_PROJECT_AND_MEMBERSHIPS = (
    select(
        *Project.__table__.columns,
        ProjectMember.__table__.c.principal_kind.label("m_kind"),
        ProjectMember.__table__.c.principal_name.label("m_name"),
        ProjectMember.__table__.c.role.label("m_role"),
    )
    .select_from(Project.__table__)
    .outerjoin(
        ProjectMember.__table__, and_(ProjectMember.__table__.c.project_id == Project.__table__.c.id, _MEMBERSHIP)
    )
    .where(Project.__table__.c.slug == bindparam("slug"))
)
_MEMBERSHIPS = select(ProjectMember.principal_kind, ProjectMember.principal_name, ProjectMember.role).where(
    ProjectMember.project_id == bindparam("project_id"), _MEMBERSHIP
)
_PROJECT_BY_SLUG = select(Project).where(Project.slug == bindparam("slug"))
_DB_RULES = select(RoleMappingRule, Project.slug).outerjoin(Project, RoleMappingRule.project_id == Project.id)


class Authorizer:
    """Resolves roles and makes every authorisation decision."""

    def __init__(self, config_rules: list[RuleSpec], rules_cache_seconds: float = 5.0, read_cache_seconds: float = 1.0):
        self.config_rules = list(config_rules)
        # reads (GET) may reuse a project snapshot and the caller's grants for this long;
        # every change in this process clears it, and writes always check the database
        self.read_cache_seconds = read_cache_seconds
        self._read_cache: dict[tuple, tuple[float, Project | None, list[Grant]]] = {}
        # rules stored through the API change rarely: read them at most this often per
        # process (another replica's change takes effect within this time)
        self.rules_cache_seconds = rules_cache_seconds
        self._db_rules: list[RuleSpec] | None = None
        self._db_rules_read = 0.0

    # --- rules -------------------------------------------------------------

    def rules(self, session: Session) -> list[RuleSpec]:
        now = time.monotonic()
        if self._db_rules is None or now - self._db_rules_read > self.rules_cache_seconds:
            self._db_rules = [
                RuleSpec(r.group_pattern, Role[r.role], slug, source="api", id=r.id)
                for r, slug in session.execute(_DB_RULES).all()
            ]
            self._db_rules_read = now
        return self.config_rules + self._db_rules

    def invalidate_rules(self) -> None:
        """Forget cached API rules (called after this process changes them)."""
        self._db_rules = None
        self._read_cache.clear()

    def invalidate_reads(self) -> None:
        """Forget cached read decisions (called after this process commits a change of access)."""
        self._read_cache.clear()

    def resolve(
        self, session: Session, principal: Principal, slug: str, for_update: bool = True
    ) -> tuple[Project | None, list[Grant]]:
        """The project named `slug` and the principal's grants in it.

        Writes (`for_update`) load the project into the session and read memberships
        afresh. Reads get a detached snapshot from one Core query (an ORM query costs
        more than the query itself), reused for `read_cache_seconds`.
        """
        if for_update:
            project = session.scalar(_PROJECT_BY_SLUG, {"slug": slug})
            return project, (self.grants(session, principal, project) if project is not None else [])
        key = (
            principal.kind,
            principal.name,
            principal.groups,
            principal.is_admin,
            principal.project_id,
            principal.role,
            principal.workspace_project,
            slug,
        )
        now = time.monotonic()
        hit = self._read_cache.get(key)
        if hit is not None and now - hit[0] < self.read_cache_seconds:
            return hit[1], hit[2]
        is_user = principal.kind == "user"
        rows = (
            session.connection()
            .execute(
                _PROJECT_AND_MEMBERSHIPS,
                {
                    "slug": slug,
                    "user": principal.name if is_user else "",
                    "groups": sorted(principal.groups) if is_user else [],
                },
            )
            .all()
        )
        if rows:
            row = rows[0]._mapping
            project: Project | None = Project(**{c: row[c] for c in _PROJECT_COLUMNS})
            memberships = [(r.m_kind, r.m_name, r.m_role) for r in rows if r.m_kind is not None]
            grants = self.grants(session, principal, project, memberships)
        else:
            project, grants = None, []
        if self.read_cache_seconds > 0:
            if len(self._read_cache) > 10_000:
                self._read_cache.clear()
            self._read_cache[key] = (now, project, grants)
        return project, grants

    def grants(
        self,
        session: Session,
        principal: Principal,
        project: Project,
        memberships: list[tuple[str, str, str]] | None = None,
    ) -> list[Grant]:
        """Every grant the principal holds in `project`, strongest first.

        `memberships` — (kind, name, role) rows already read for this principal — saves a query.
        """
        grants: list[Grant] = []
        if principal.is_admin:
            grants.append(Grant(Role.owner, "admin", "platform admin"))
        if principal.kind in ("service_account", "run"):
            if principal.project_id == project.id and principal.role is not None:
                grants.append(Grant(principal.role, "token", f"{principal.kind} {principal.name}"))
            return sorted(grants, key=lambda g: g.role, reverse=True)
        if principal.kind != "user":
            return grants
        if memberships is None:
            memberships = [
                tuple(r)
                for r in session.execute(
                    _MEMBERSHIPS, {"project_id": project.id, "user": principal.name, "groups": sorted(principal.groups)}
                )
            ]
        for kind, name, role in memberships:
            grants.append(Grant(Role[role], kind, name))
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
        grants: list[Grant] | None = None,
    ) -> Role | None:
        """Allow `action` or raise AnimusError (401, 403 or 404).

        For project actions, `project` is the project named in the request or None
        when no such project exists; non-members get the same 404 as for a project
        that does not exist, and so does a workspace's token in any project but its
        own. Returns the caller's role in the project, if any.
        """
        if action in PLATFORM_ACTIONS:
            who = PLATFORM_ACTIONS[action]
            if who == "public":
                return None
            if principal.kind == "anonymous":
                raise unauthenticated()
            if not scope_allows(principal, action):
                raise insufficient_scope(principal, action)
            allowed = (
                who == "authenticated"
                or (who == "user" and principal.kind == "user")
                or (who == "admin" and principal.is_admin)
                or (who == "ssh_gateway" and principal.kind == "service" and principal.name == SSH_GATEWAY_SERVICE)
            )
            if not allowed:
                raise AnimusError(403, "forbidden", f"Not allowed to {action.replace(':', ' ')}", {"action": action})
            if principal.workspace_project is not None and action not in WORKSPACE_TOKEN_PLATFORM_ACTIONS:
                raise workspace_token_refused(principal, action)
            return None
        if action not in PROJECT_ACTIONS:
            raise AnimusError(500, "unknown_action", f"No authorisation rule for action {action!r}")
        if principal.kind == "anonymous":
            raise unauthenticated()
        name = project.slug if project is not None else (project_slug or "")
        if project is None:
            raise project_not_found(name)
        if principal.workspace_project is not None and project.slug != principal.workspace_project:
            # exactly the answer a non-member gets; the audit trail records which project the token is for
            # (under a key without "token" in it: audit details redact such keys)
            err = project_not_found(name, denied=True)
            err.audit_details = {"workspace_project": principal.workspace_project}  # type: ignore[attr-defined]
            raise err
        if grants is None:
            grants = self.grants(session, principal, project)
        role = grants[0].role if grants else None
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
        if action in HUMAN_ONLY_ACTIONS and principal.kind != "user":
            raise AnimusError(
                403,
                "forbidden",
                f"Only people may {action.replace(':', ' ')}, not {principal.kind} tokens",
                {"action": action},
            )
        if action in RUN_TOKEN_ONLY_ACTIONS and principal.kind != "run":
            raise AnimusError(
                403, "forbidden", f"Only a run's own runner may {action.replace(':', ' ')}", {"action": action}
            )
        if principal.kind == "run" and action not in RUN_TOKEN_ACTIONS:
            raise AnimusError(403, "forbidden", f"A run token may not {action.replace(':', ' ')}", {"action": action})
        if not scope_allows(principal, action):
            raise insufficient_scope(principal, action)
        return role

    def explain(self, session: Session, principal: Principal, project: Project, ctx: ExplainContext) -> dict:
        """Why `principal` may or may not act on a resource (see ``_explain``)."""
        return _explain(self, session, principal, project, ctx)

    @staticmethod
    def check_run_scope(principal: Principal, action: str, run_id: str | None) -> None:
        """A run token touches runs only through its own run's paths: any other run is 404, a
        run listing or a new run is refused."""
        if principal.kind != "run" or not action.startswith("runs:"):
            return
        if run_id is None:
            raise AnimusError(403, "forbidden", "A run token may act only on its own run", {"action": action})
        if run_id != principal.run_id:
            raise AnimusError(404, "run_not_found", f"Run {run_id!r} not found")


class ExplainContext:
    """What an explanation needs to know about the resource (loaded by the caller, no lookups here).

    ``dataset_reader_groups`` is None for an unrestricted dataset; ``run_created_by`` is the
    run's creator; ``approver_roles``/``four_eyes``/``requested_by`` describe the promotion
    policy's approval rule for the model's next open request, if any.
    """

    def __init__(
        self,
        kind: str,
        name: str = "",
        dataset_reader_groups: list[str] | None = None,
        run_created_by: str | None = None,
        approver_roles: list[str] | None = None,
        four_eyes: bool = True,
        requested_by: str | None = None,
    ):
        self.kind = kind
        self.name = name
        self.dataset_reader_groups = dataset_reader_groups
        self.run_created_by = run_created_by
        self.approver_roles = approver_roles or ["maintainer", "owner"]
        self.four_eyes = four_eyes
        self.requested_by = requested_by


def may_cancel_run(principal: Principal, role: Role | None, run_created_by: str, run_id: str) -> tuple[bool, str]:
    """The one rule for cancelling runs: one's own with runs:write, anyone's from maintainer up."""
    if principal.is_admin:
        return True, "platform admins may cancel any run"
    if role is not None and role >= CANCEL_OTHERS_ROLE:
        return True, f"{role.name}s may cancel any run of the project"
    if principal.kind == "run" and principal.run_id == run_id:
        return True, "a run may cancel itself"
    if principal.kind in ("user", "service_account") and principal.name == run_created_by:
        return True, "the run's creator may cancel it"
    return False, (
        f"run {run_id} was created by {run_created_by!r}; a {role.name if role else 'non-member'} may cancel "
        f"only their own runs ({CANCEL_OTHERS_ROLE.name} or above cancels anyone's)"
    )


def authorize_run_cancel(principal: Principal, role: Role | None, run_created_by: str, run_id: str) -> None:
    ok, why = may_cancel_run(principal, role, run_created_by, run_id)
    if not ok:
        raise AnimusError(
            403,
            "forbidden",
            f"You may not cancel this run: {why}",
            {"action": "runs:cancel", "created_by": run_created_by},
        )


def _grant_json(g: Grant) -> dict:
    return {"role": g.role.name, "via": g.via, "detail": g.detail}


def _explain(
    authorizer: Authorizer, session: Session, principal: Principal, project: Project, ctx: ExplainContext
) -> dict:
    """Why `principal` may or may not act on the resource: its grants and one decision per action.

    Every decision is the Authorizer's own (``authorize``) refined by the object rule
    the handlers apply (dataset readers, run cancellation, promotion-policy approval):
    nothing here decides differently from a real request.
    """
    from ..services.datasets import sees_every_dataset  # the restricted-dataset rule (services → no cycle)

    grants = authorizer.grants(session, principal, project)
    role = grants[0].role if grants else None
    decisions = []
    for action in RESOURCE_ACTIONS[ctx.kind]:
        base = "runs:write" if action == "runs:cancel" else "models:promote" if action == "models:approve" else action
        try:
            authorizer.authorize(session, principal, base, project, project.slug, grants)
            allowed, reason = (
                True,
                (
                    f"role {role.name} (via {grants[0].via}: {grants[0].detail}) meets {PROJECT_ACTIONS[base].name}"
                    if role is not None
                    else "allowed"
                ),
            )
        except AnimusError as e:
            allowed = False
            if e.reason == "project_not_found":
                groups = ", ".join(sorted(principal.groups)) or "none"
                reason = (
                    f"no role in project {project.slug!r}: no direct membership, no membership of its groups "
                    f"({groups}), and no role-mapping rule matches them"
                )
            else:
                reason = e.message
        if allowed and ctx.kind == "dataset" and ctx.dataset_reader_groups is not None:
            if sees_every_dataset(principal, role):
                reason += (
                    f"; dataset {ctx.name!r} is restricted, and {role.name if role else 'admin'}s see every dataset"
                )
            elif set(principal.groups) & set(ctx.dataset_reader_groups):
                match = sorted(set(principal.groups) & set(ctx.dataset_reader_groups))
                reason += f"; dataset {ctx.name!r} is restricted and group {match[0]} is one of its readers"
            else:
                allowed = False
                reason = (
                    f"dataset {ctx.name!r} is restricted to the groups {', '.join(ctx.dataset_reader_groups) or '(none)'} "
                    f"(and maintainers); {principal.name} is in none of them"
                )
        if allowed and action == "runs:cancel" and ctx.run_created_by is not None:
            allowed, why = may_cancel_run(principal, role, ctx.run_created_by, ctx.name)
            reason = why
        if allowed and action == "models:approve":
            if principal.kind != "user":
                allowed, reason = False, "only people approve promotions, not tokens"
            elif role is None or role.name not in ctx.approver_roles:
                allowed = False
                reason = (
                    f"the promotion policy counts approvals of {', '.join(ctx.approver_roles)}; "
                    f"the role here is {role.name if role else 'none'}"
                )
            elif ctx.four_eyes and ctx.requested_by == principal.name:
                allowed, reason = False, "four eyes: the requester of the open promotion may not approve it"
            else:
                reason = f"the promotion policy counts approvals of {', '.join(ctx.approver_roles)} (four eyes: " + (
                    "on)" if ctx.four_eyes else "off)"
                )
        decisions.append({"action": action, "allowed": allowed, "reason": reason})
    return {
        "principal": f"{principal.kind}:{principal.name}",
        "role": role.name if role else None,
        "grants": [_grant_json(g) for g in grants],
        "decisions": decisions,
    }


def unauthenticated() -> AnimusError:
    return AnimusError(
        401,
        "unauthenticated",
        "Authentication required: send 'Authorization: Bearer <token>' (see `animus login`)",
        headers={"WWW-Authenticate": 'Bearer realm="animus"'},
    )


def workspace_token_refused(principal: Principal, action: str) -> AnimusError:
    return AnimusError(
        403,
        "token_bound_to_project",
        f"This is the token of your workspace for project {principal.workspace_project!r}: it is valid only "
        f"in that project and may not do {action}. Use a token of your own for that: one from the hub's "
        "token page (in a workspace terminal, set it as ANIMUS_TOKEN), or your default server's terminal.",
        {"action": action, "token_project": principal.workspace_project},
    )


def project_not_found(slug: str, denied: bool = False) -> AnimusError:
    err = AnimusError(404, "project_not_found", f"Project {slug!r} not found")
    # the client sees the same answer either way; the audit log sees the difference
    err.denied = denied  # type: ignore[attr-defined]
    return err
