"""Project members: users and groups holding a role."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import AnimusError
from ..orm import Project, ProjectMember, Role, utcnow
from ..schemas import MemberCreate
from .pagination import page
from .projects import ensure_active, iso

KIND_SEGMENTS = {"users": "user", "groups": "group"}


def member_json(m: ProjectMember) -> dict[str, Any]:
    return {
        "kind": m.principal_kind,
        "name": m.principal_name,
        "role": m.role,
        "created_at": iso(m.created_at),
        "created_by": m.created_by,
        "updated_at": iso(m.updated_at),
    }


def kind_from_segment(segment: str) -> str:
    try:
        return KIND_SEGMENTS[segment]
    except KeyError:
        raise AnimusError(
            404, "not_found", "Members are addressed as members/users/<name> or members/groups/<name>"
        ) from None


def list_members(session: Session, project: Project, limit: int, cursor: str | None):
    return page(
        session, select(ProjectMember).where(ProjectMember.project_id == project.id), ProjectMember.id, limit, cursor
    )


def find_member(session: Session, project: Project, kind: str, name: str) -> ProjectMember:
    m = session.scalar(
        select(ProjectMember).where(
            ProjectMember.project_id == project.id,
            ProjectMember.principal_kind == kind,
            ProjectMember.principal_name == name,
        )
    )
    if m is None:
        raise AnimusError(404, "member_not_found", f"{kind.capitalize()} {name!r} is not a member of {project.slug!r}")
    return m


def add_member(session: Session, project: Project, data: MemberCreate, by: str) -> ProjectMember:
    ensure_active(project)
    existing = session.scalar(
        select(ProjectMember).where(
            ProjectMember.project_id == project.id,
            ProjectMember.principal_kind == data.kind,
            ProjectMember.principal_name == data.name,
        )
    )
    if existing is not None:
        raise AnimusError(
            409,
            "member_exists",
            f"{data.kind.capitalize()} {data.name!r} is already a member (role {existing.role}); "
            "change the role with PUT",
            {"role": existing.role},
        )
    now = utcnow()
    m = ProjectMember(
        project_id=project.id,
        principal_kind=data.kind,
        principal_name=data.name,
        role=data.role,
        created_by=by,
        created_at=now,
        updated_at=now,
    )
    session.add(m)
    session.flush()
    return m


def _owner_count(session: Session, project: Project) -> int:
    return session.scalar(
        select(func.count()).where(ProjectMember.project_id == project.id, ProjectMember.role == Role.owner.name)
    )


def _refuse_losing_last_owner(session: Session, project: Project, m: ProjectMember) -> None:
    if m.role == Role.owner.name and _owner_count(session, project) <= 1:
        raise AnimusError(
            409, "last_owner", f"{m.principal_name!r} is the last owner of {project.slug!r}; add another owner first"
        )


def set_role(session: Session, project: Project, m: ProjectMember, role: str) -> str | None:
    """Change a member's role; returns the previous role, or None if unchanged."""
    ensure_active(project)
    if m.role == role:
        return None
    if role != Role.owner.name:
        _refuse_losing_last_owner(session, project, m)
    previous, m.role, m.updated_at = m.role, role, utcnow()
    return previous


def remove_member(session: Session, project: Project, m: ProjectMember) -> None:
    ensure_active(project)
    _refuse_losing_last_owner(session, project, m)
    session.delete(m)
