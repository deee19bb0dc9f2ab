"""Environments of batch runs: named, with immutable versions.

An EnvironmentVersion records an image reference (pinned when it names a digest,
``registry/name@sha256:<64 hex>``), the Python lock file the runner installs (its
content and sha256; empty when there is none) and a resource template. Nothing of a
version changes after it is created: a new image or lock file is a new version.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..errors import AnimusError
from ..orm import Environment, EnvironmentVersion, Project, utcnow
from .pagination import page
from .projects import ensure_active, iso

ENVIRONMENT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# [registry[:port]/]path[:tag][@sha256:digest], lower-case path components as OCI wants them
IMAGE_RE = re.compile(
    r"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
DIGEST_RE = re.compile(r"@sha256:[0-9a-f]{64}$")
LOCK_MAX_BYTES = 512 * 1024

# the resource template: what a run may ask for; more than this is a typo, not a request
RESOURCE_LIMITS = {"cpu": 256.0, "memory_mb": 4 * 1024 * 1024, "gpu_count": 16}
GPU_TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$")


def image_is_pinned(image: str) -> bool:
    return bool(DIGEST_RE.search(image))


def lock_digest(content: str) -> str:
    return "sha256:" + hashlib.sha256(content.encode("utf-8")).hexdigest() if content else ""


def validate_resources(raw: dict[str, Any] | None) -> dict[str, Any]:
    """The resource template, or 422 naming each bad value (negative, zero where it makes no sense, absurd)."""
    raw = dict(raw or {})
    problems: list[dict[str, Any]] = []
    unknown = sorted(set(raw) - {"cpu", "memory_mb", "gpu_count", "gpu_type"})
    for key in unknown:
        problems.append({"field": key, "message": "unknown resource (cpu, memory_mb, gpu_count, gpu_type)"})
    out: dict[str, Any] = {}
    for key, limit in RESOURCE_LIMITS.items():
        if key not in raw or raw[key] is None:
            continue
        value = raw[key]
        integral = key != "cpu"
        ok_type = (
            isinstance(value, int | float) and not isinstance(value, bool) and (not integral or isinstance(value, int))
        )
        if not ok_type:
            problems.append({"field": key, "message": "must be an integer" if integral else "must be a number"})
            continue
        low = 0 if key == "gpu_count" else 0.001
        if value < low or value != value:
            problems.append({"field": key, "message": f"must be at least {low:g}"})
        elif value > limit:
            problems.append(
                {"field": key, "message": f"{value:g} is more than the most one run may ask for ({limit:g})"}
            )
        else:
            out[key] = value
    gpu_type = raw.get("gpu_type")
    if gpu_type is not None:
        if not isinstance(gpu_type, str) or not GPU_TYPE_RE.match(gpu_type):
            problems.append({"field": "gpu_type", "message": "a GPU model name such as nvidia-a100-80gb"})
        elif not out.get("gpu_count"):
            problems.append({"field": "gpu_type", "message": "a GPU type needs gpu_count of at least 1"})
        else:
            out["gpu_type"] = gpu_type
    if problems:
        first = problems[0]
        raise AnimusError(
            422, "invalid_resources", f"Invalid resources: {first['field']}: {first['message']}", {"errors": problems}
        )
    return out


def validate_image(image: str) -> str:
    if not isinstance(image, str) or len(image) > 512 or not IMAGE_RE.match(image):
        raise AnimusError(
            422,
            "invalid_image",
            "image must be an image reference such as registry.example.com/team/train:1.4@sha256:<64 hex>",
            {"image": image[:200] if isinstance(image, str) else None},
        )
    return image


def environment_json(e: Environment, latest: EnvironmentVersion | None = None) -> dict[str, Any]:
    return {
        "name": e.name,
        "description": e.description,
        "created_at": iso(e.created_at),
        "created_by": e.created_by,
        "latest_version": latest.version if latest is not None else None,
    }


def version_json(v: EnvironmentVersion, e: Environment, with_lock: bool = False) -> dict[str, Any]:
    body = {
        "environment": e.name,
        "version": v.version,
        "ref": f"{e.name}:{v.version}",
        "image": v.image,
        "image_pinned": image_is_pinned(v.image),
        "lock_digest": v.lock_digest or None,
        "resources": v.resources or {},
        "description": v.description,
        "created_at": iso(v.created_at),
        "created_by": v.created_by,
    }
    if with_lock:
        body["lock_content"] = v.lock_content
    return body


def find_environment(session: Session, project: Project, name: str) -> Environment:
    e = session.scalar(select(Environment).where(Environment.project_id == project.id, Environment.name == name))
    if e is None:
        raise AnimusError(404, "environment_not_found", f"Environment {name!r} not found in project {project.slug!r}")
    return e


def latest_version(session: Session, e: Environment) -> EnvironmentVersion | None:
    return session.scalar(
        select(EnvironmentVersion)
        .where(EnvironmentVersion.environment_id == e.id)
        .order_by(EnvironmentVersion.version.desc())
        .limit(1)
    )


def find_version(session: Session, e: Environment, ref: str) -> EnvironmentVersion:
    if ref == "latest":
        v = latest_version(session, e)
    elif ref.isdigit() and len(ref) < 10:
        v = session.scalar(
            select(EnvironmentVersion).where(
                EnvironmentVersion.environment_id == e.id, EnvironmentVersion.version == int(ref)
            )
        )
    else:
        raise AnimusError(422, "invalid_version", f"An environment version is a number or 'latest', not {ref[:20]!r}")
    if v is None:
        raise AnimusError(404, "environment_version_not_found", f"Environment {e.name!r} has no version {ref!r}")
    return v


def create_environment(session: Session, project: Project, name: str, by: str, description: str = "") -> Environment:
    ensure_active(project)
    if not ENVIRONMENT_NAME_RE.match(name):
        raise AnimusError(
            422, "invalid_environment_name", "An environment name is 1–128 letters, digits, '.', '_' or '-'"
        )
    exists = session.scalar(
        select(Environment.id).where(Environment.project_id == project.id, Environment.name == name)
    )
    if exists is not None:
        raise AnimusError(
            409, "environment_exists", f"An environment named {name!r} already exists in {project.slug!r}"
        )
    e = Environment(project_id=project.id, name=name, description=description, created_by=by, created_at=utcnow())
    session.add(e)
    session.flush()
    return e


def add_version(
    session: Session,
    e: Environment,
    *,
    image: str,
    lock_content: str,
    resources: dict[str, Any] | None,
    by: str,
    description: str = "",
) -> EnvironmentVersion:
    validate_image(image)
    if len(lock_content.encode("utf-8")) > LOCK_MAX_BYTES:
        raise AnimusError(422, "lock_file_too_large", f"A lock file is at most {LOCK_MAX_BYTES} bytes")
    template = validate_resources(resources)
    number = (
        session.scalar(select(func.max(EnvironmentVersion.version)).where(EnvironmentVersion.environment_id == e.id))
        or 0
    ) + 1
    v = EnvironmentVersion(
        environment_id=e.id,
        version=number,
        image=image,
        lock_content=lock_content,
        lock_digest=lock_digest(lock_content),
        resources=template,
        description=description,
        created_by=by,
        created_at=utcnow(),
    )
    session.add(v)
    session.flush()
    return v


def list_environments(session: Session, project: Project, limit: int, cursor: str | None):
    return page(session, select(Environment).where(Environment.project_id == project.id), Environment.id, limit, cursor)


def list_versions(session: Session, e: Environment, limit: int, cursor: str | None):
    return page(
        session,
        select(EnvironmentVersion).where(EnvironmentVersion.environment_id == e.id),
        EnvironmentVersion.id,
        limit,
        cursor,
    )


def parse_env_ref(ref: str) -> tuple[str, str | None]:
    """``NAME:VERSION`` → (name, version); ``NAME`` alone → (name, None) (the latest, never for production)."""
    name, sep, version = ref.rpartition(":")
    if not sep:
        return ref, None
    return name, version
