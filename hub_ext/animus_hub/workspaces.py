"""Workspace templates per project: which CPU/GPU templates a user may start a project's workspace from.

One configuration shape for both spawners (the local one of the embedded profile and
KubeSpawner in a cluster). An operator defines templates once (size, image, GPUs,
environment) and lists per project which of them the project offers; a template may
be limited to IdP/JupyterHub groups (on the template, or per project)::

    workspace_templates = {
        "cpu-small": {"display_name": "CPU small", "cpu": 2, "memory": "8G", "default": True},
        "gpu": {"display_name": "GPU", "cpu": 8, "memory": "64G", "gpu_count": 1,
                "gpu_type": "NVIDIA-A100-SXM4-80GB", "image": "…", "groups": ["gpu-users"]},
    }
    project_templates = {
        "churn": ["cpu-small", "gpu"],
        "vision": ["cpu-small", {"template": "gpu", "groups": ["vision-gpu"]}],
        "*": ["cpu-small"],          # projects not listed
    }

``select_template`` is the rule both spawners use: parse, filter by project and
groups, pick the requested or default template, or refuse with 403 naming the
allowed ones. Pure functions, no I/O; how a template becomes a pod lives in
``k8s/profiles.py``, how it becomes limits on one machine in ``spawner.py``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import AnimusError

TEMPLATE_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
TEMPLATE_KEYS = {
    "display_name",
    "description",
    "cpu",
    "memory",
    "gpu_count",
    "gpu_type",
    "image",
    "groups",
    "tolerations",
    "node_selector",
    "environment",
    "default",
}
#: memory as KubeSpawner's and JupyterHub's mem_limit take it: bytes, or a number with K, M, G or T (powers of 1024)
MEMORY_RE = re.compile(r"^(\d+(?:\.\d+)?)([KMGT])$")
MEMORY_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}

TEMPLATES_HELP = (
    "Workspace templates by name: {name: {display_name, description, cpu, memory, gpu_count, gpu_type, "
    "image, groups, tolerations, node_selector, environment, default}}. `cpu` is a number of CPUs, `memory` "
    "bytes or a number with K, M, G or T; `groups` limits a template to members of those JupyterHub/IdP "
    "groups (empty: everyone the project offers it to); `environment` is added to the workspace's "
    "environment; `default` marks the one started when none is chosen (else the first allowed). `image`, "
    "`gpu_type`, `tolerations` and `node_selector` only mean something on Kubernetes. Empty: no templates, "
    "every workspace starts the same."
)
PROJECT_TEMPLATES_HELP = (
    "Templates each project offers: {project slug: [template name, or {template, groups}]}; the key '*' "
    "applies to projects not listed (and to the default, unnamed server). Per-project `groups` replace the "
    "template's own. Empty: every template is offered everywhere (still filtered by each template's groups)."
)


@dataclass(frozen=True)
class WorkspaceTemplate:
    name: str
    display_name: str
    description: str = ""
    cpu: float = 1.0
    memory: str = "4G"
    gpu_count: int = 0
    gpu_type: str = ""
    image: str = ""
    #: groups allowed to use it; empty: every member of a project that offers it
    groups: tuple[str, ...] = ()
    tolerations: tuple[dict[str, Any], ...] = ()
    node_selector: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    default: bool = False

    @property
    def memory_bytes(self) -> int:
        return memory_bytes(self.memory)


def memory_bytes(spec: str | float) -> int:
    """Bytes of a memory specification (``"2G"`` → 2 GiB, as JupyterHub's ByteSpecification reads it)."""
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        return int(spec)
    if not isinstance(spec, str):
        raise ValueError(f"{spec!r} is not a memory size: bytes, or a number with K, M, G or T (e.g. '8G')")
    if spec.isdigit():
        return int(spec)
    m = MEMORY_RE.match(spec)
    if not m:
        raise ValueError(f"{spec!r} is not a memory size: bytes, or a number with K, M, G or T (e.g. '8G')")
    return int(float(m.group(1)) * MEMORY_UNITS[m.group(2)])


def _strings(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


def parse_templates(raw: dict[str, Any]) -> dict[str, WorkspaceTemplate]:
    """Templates from configuration; ValueError naming the template and the key on anything wrong."""
    if not isinstance(raw, dict):
        raise ValueError("workspace_templates is a dict {name: {settings}}")
    out = {}
    for name, spec in raw.items():
        if not isinstance(name, str) or not TEMPLATE_NAME_RE.match(name):
            raise ValueError(f"workspace template {name!r}: a name is lower-case letters, digits and '-'")
        if not isinstance(spec, dict):
            raise ValueError(f"workspace template {name!r}: expected a dict of settings")
        unknown = sorted(set(spec) - TEMPLATE_KEYS)
        if unknown:
            raise ValueError(f"workspace template {name!r}: unknown keys {unknown} (known: {sorted(TEMPLATE_KEYS)})")
        cpu = spec.get("cpu", 1.0)
        gpus = spec.get("gpu_count", 0)
        if not isinstance(cpu, int | float) or isinstance(cpu, bool) or cpu <= 0:
            raise ValueError(f"workspace template {name!r}: cpu must be a positive number")
        if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0:
            raise ValueError(f"workspace template {name!r}: gpu_count must be a non-negative integer")
        if spec.get("gpu_type") and not gpus:
            raise ValueError(f"workspace template {name!r}: gpu_type needs gpu_count of at least 1")
        memory = spec.get("memory", "4G")
        try:
            if isinstance(memory, bool) or memory_bytes(memory) <= 0:
                raise ValueError("memory must be positive")
        except (ValueError, TypeError, AttributeError) as e:
            raise ValueError(f"workspace template {name!r}: {e}") from None
        if not _strings(spec.get("groups", [])):
            raise ValueError(f"workspace template {name!r}: groups is a list of group names")
        environment = spec.get("environment", {})
        if not isinstance(environment, dict) or not all(isinstance(k, str) for k in environment):
            raise ValueError(f"workspace template {name!r}: environment is a dict of variable names to values")
        if not isinstance(spec.get("tolerations", []), list | tuple) or not isinstance(
            spec.get("node_selector", {}), dict
        ):
            raise ValueError(f"workspace template {name!r}: tolerations is a list, node_selector a dict")
        out[name] = WorkspaceTemplate(
            name=name,
            display_name=str(spec.get("display_name") or name),
            description=str(spec.get("description", "")),
            cpu=float(cpu),
            memory=memory if isinstance(memory, str) else str(int(memory)),
            gpu_count=gpus,
            gpu_type=str(spec.get("gpu_type", "")),
            image=str(spec.get("image", "")),
            groups=tuple(spec.get("groups", ())),
            tolerations=tuple(spec.get("tolerations", ())),
            node_selector=dict(spec.get("node_selector", {})),
            environment={k: str(v) for k, v in environment.items()},
            default=bool(spec.get("default", False)),
        )
    return out


def check_project_templates(raw: dict[str, Any], templates: dict[str, WorkspaceTemplate] | None = None) -> None:
    """ValueError naming the project on a malformed entry, or on a template that is not defined."""
    if not isinstance(raw, dict):
        raise ValueError("project_templates is a dict {project: [template name or {template, groups}]}")
    for project, entries in raw.items():
        if not isinstance(entries, list | tuple):
            raise ValueError(f"project_templates[{project!r}] is a list of template names")
        for entry in entries:
            if isinstance(entry, dict):
                name, groups = entry.get("template"), entry.get("groups", [])
                if set(entry) - {"template", "groups"} or not _strings(groups):
                    raise ValueError(
                        f"project {project!r}: an entry is a template name or {{'template': name, 'groups': [...]}}"
                    )
            else:
                name = entry
            if not isinstance(name, str):
                raise ValueError(f"project {project!r}: {entry!r} does not name a template")
            if templates is not None and name not in templates:
                raise ValueError(f"project {project!r} offers workspace template {name!r}, which is not defined")


def project_offer(
    project: str, templates: dict[str, WorkspaceTemplate], project_templates: dict[str, list[Any]]
) -> list[tuple[WorkspaceTemplate, tuple[str, ...]]]:
    """The templates a project offers, each with the groups allowed to use it there (empty: all members)."""
    if not project_templates:
        return [(t, t.groups) for t in templates.values()]
    entries = project_templates.get(project, project_templates.get("*", []))
    out = []
    for entry in entries:
        name, groups = (entry, None) if isinstance(entry, str) else (entry.get("template"), entry.get("groups"))
        if name not in templates:
            raise ValueError(f"project {project!r} offers workspace template {name!r}, which is not defined")
        t = templates[name]
        out.append((t, tuple(groups) if groups is not None else t.groups))
    return out


def allowed_templates(
    project: str,
    user_groups: Iterable[str],
    templates: dict[str, WorkspaceTemplate],
    project_templates: dict[str, list[Any]],
) -> list[WorkspaceTemplate]:
    """The templates of `project` this user may start, in configured order (platform admins included:
    a GPU quota is a quota)."""
    mine = set(user_groups)
    return [t for t, groups in project_offer(project, templates, project_templates) if not groups or mine & set(groups)]


def default_template(allowed: list[WorkspaceTemplate]) -> WorkspaceTemplate | None:
    """The template started when none is chosen: the one marked default, else the first allowed."""
    return next((t for t in allowed if t.default), allowed[0] if allowed else None)


def _where(project: str) -> str:
    return f"project {project!r}" if project else "your default server"


def choose_template(project: str, requested: str | None, allowed: list[WorkspaceTemplate]) -> WorkspaceTemplate:
    """The template to start: the requested one if allowed, else the default; 403 with the allowed list."""
    names = [t.name for t in allowed]
    if not allowed:
        raise AnimusError(
            403,
            "no_workspace_template",
            f"No workspace template of {_where(project)} is open to your groups; allowed: none",
            {"project": project, "allowed": []},
        )
    if not requested:
        return default_template(allowed)  # type: ignore[return-value]
    for t in allowed:
        if t.name == requested:
            return t
    # an unknown name and a forbidden one answer alike: the list says what is possible
    raise AnimusError(
        403,
        "workspace_template_not_allowed",
        f"Workspace template {requested[:64]!r} is not allowed for you in {_where(project)}; "
        f"allowed: {', '.join(names)}",
        {"project": project, "requested": requested[:64], "allowed": names},
    )


def select_template(
    raw_templates: dict[str, Any],
    raw_project_templates: dict[str, Any],
    project: str,
    user_groups: Iterable[str],
    requested: Any = None,
) -> WorkspaceTemplate | None:
    """The one rule both spawners apply at spawn time.

    None when no templates are configured (every workspace starts the same);
    otherwise the requested template if the project offers it to one of the
    user's groups, or the default one. AnimusError 400 for a requested value
    that is not a name, 403 naming the allowed templates when it is not allowed
    (or nothing is); ValueError for a configuration mistake.
    """
    if not raw_templates:
        return None
    if requested is not None and not isinstance(requested, str):
        raise AnimusError(400, "invalid_workspace_template", "The workspace template ('profile') is a template name")
    templates = parse_templates(raw_templates)
    check_project_templates(raw_project_templates, templates)
    allowed = allowed_templates(project, user_groups, templates, raw_project_templates)
    return choose_template(project, requested or None, allowed)
