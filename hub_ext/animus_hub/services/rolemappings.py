"""Role-mapping rules stored in the database (configuration rules are read-only)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..auth.rbac import PROJECT_PLACEHOLDER, RuleSpec, validate_group_pattern
from ..errors import AnimusError
from ..orm import RoleMappingRule, utcnow
from ..schemas import RoleMappingCreate
from .projects import find_project


def rule_json(rule: RuleSpec) -> dict[str, Any]:
    return {
        "id": rule.id,
        "group_pattern": rule.group_pattern,
        "role": rule.role.name,
        "project": rule.project,
        "source": rule.source,
    }


def create_rule(session: Session, data: RoleMappingCreate, by: str) -> RoleMappingRule:
    validate_group_pattern(data.group_pattern)
    has_placeholder = PROJECT_PLACEHOLDER in data.group_pattern
    if has_placeholder and data.project:
        raise AnimusError(
            422, "invalid_rule", "A rule with {project} in its pattern applies to every project: omit 'project'"
        )
    if not has_placeholder and not data.project:
        raise AnimusError(422, "invalid_rule", "A rule for an exact group name must name its 'project'")
    project_id = None
    if data.project:
        project = find_project(session, data.project)
        if project is None:
            raise AnimusError(
                422, "project_not_found", f"Project {data.project!r} does not exist", {"project": data.project}
            )
        project_id = project.id
    exists = session.scalar(
        select(RoleMappingRule).where(
            RoleMappingRule.group_pattern == data.group_pattern,
            RoleMappingRule.project_id.is_(None) if project_id is None else RoleMappingRule.project_id == project_id,
        )
    )
    if exists is not None:
        raise AnimusError(409, "rule_exists", "An identical group pattern already has a rule", {"id": exists.id})
    rule = RoleMappingRule(
        group_pattern=data.group_pattern, project_id=project_id, role=data.role, created_by=by, created_at=utcnow()
    )
    session.add(rule)
    session.flush()
    return rule


def find_rule(session: Session, rule_id: str) -> RoleMappingRule:
    rule = session.get(RoleMappingRule, int(rule_id)) if rule_id.isdigit() and len(rule_id) < 12 else None
    if rule is None:
        raise AnimusError(404, "role_mapping_not_found", f"Role mapping {rule_id!r} not found")
    return rule
