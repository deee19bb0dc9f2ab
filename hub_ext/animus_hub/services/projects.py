"""Projects: create, list, read, update, archive."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..auth.principal import Principal
from ..auth.rbac import Authorizer
from ..errors import AnimusError
from ..events import record_event
from ..orm import Project, ProjectMember, Role, utcnow
from ..schemas import ProjectCreate, ProjectUpdate
from .pagination import page


def iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def project_json(project: Project, role: Role | None = None) -> dict[str, Any]:
    body = {
        "slug": project.slug,
        "display_name": project.display_name,
        "description": project.description,
        "created_at": iso(project.created_at),
        "created_by": project.created_by,
        "updated_at": iso(project.updated_at),
        "archived": project.archived_at is not None,
        "archived_at": iso(project.archived_at),
    }
    if role is not None:
        body["role"] = role.name
    return body


def find_project(session: Session, slug: str) -> Project | None:
    return session.scalar(select(Project).where(Project.slug == slug))


def ensure_active(project: Project) -> None:
    if project.archived_at is not None:
        raise AnimusError(409, "project_archived", f"Project {project.slug!r} is archived; unarchive it to change it")


def create_project(session: Session, principal: Principal, data: ProjectCreate) -> Project:
    if find_project(session, data.slug) is not None:
        raise AnimusError(409, "project_exists", f"A project named {data.slug!r} already exists")
    now = utcnow()
    project = Project(
        slug=data.slug,
        display_name=data.display_name or data.slug,
        description=data.description,
        created_at=now,
        updated_at=now,
        created_by=principal.name,
    )
    session.add(project)
    session.flush()
    session.add(
        ProjectMember(
            project_id=project.id,
            principal_kind="user",
            principal_name=principal.name,
            role=Role.owner.name,
            created_by=principal.name,
            created_at=now,
            updated_at=now,
        )
    )
    record_event(session, "ProjectCreated", {"created_by": principal.name}, project)
    return project


def list_projects(
    session: Session,
    authorizer: Authorizer,
    principal: Principal,
    *,
    include_archived: bool,
    limit: int,
    cursor: str | None,
) -> tuple[list[Project], str | None]:
    stmt = select(Project).where(authorizer.visible_projects_filter(session, principal))
    if not include_archived:
        stmt = stmt.where(Project.archived_at.is_(None))
    return page(session, stmt, Project.id, limit, cursor)


def update_project(session: Session, project: Project, data: ProjectUpdate) -> dict[str, Any]:
    ensure_active(project)
    changes: dict[str, Any] = {}
    for field in ("display_name", "description"):
        value = getattr(data, field)
        if value is not None and value != getattr(project, field):
            changes[field] = {"from": getattr(project, field), "to": value}
            setattr(project, field, value)
    if changes:
        project.updated_at = utcnow()
    return changes


def set_archived(session: Session, principal: Principal, project: Project, archived: bool) -> bool:
    """Archive or unarchive; returns False when nothing changed (idempotent)."""
    if (project.archived_at is not None) == archived:
        return False
    now = utcnow()
    project.archived_at = now if archived else None
    project.updated_at = now
    record_event(session, "ProjectArchived" if archived else "ProjectUnarchived", {"by": principal.name}, project)
    return True
