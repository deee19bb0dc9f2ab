"""Workspace templates per project: which CPU/GPU templates a user may start a project's workspace from.

An operator defines templates once (size, image, GPUs) and lists per project which
of them the project offers; a template may be limited to IdP/JupyterHub groups
(on the template, or per project). ``allowed_templates`` is the filter, and
``profile_list`` turns the allowed templates into KubeSpawner ``profile_list``
entries, so KubeSpawner itself renders the pod. Pure functions, no I/O.

Configuration shape (see docs/operations/kubernetes.md)::

    templates = {
        "cpu-small": {"display_name": "CPU small", "cpu": 2, "memory": "8G", "image": "…"},
        "gpu": {"display_name": "GPU", "cpu": 8, "memory": "64G", "gpu_count": 1,
                "gpu_type": "NVIDIA-A100-SXM4-80GB", "image": "…", "groups": ["gpu-users"]},
    }
    project_templates = {
        "churn": ["cpu-small", "gpu"],
        "vision": ["cpu-small", {"template": "gpu", "groups": ["vision-gpu"]}],
        "*": ["cpu-small"],          # projects not listed
    }
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import AnimusError

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
    "default",
}
LABEL_TEMPLATE = "animus.io/workspace-template"
LABEL_PROJECT = "animus.io/project"


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
    default: bool = False


def parse_templates(raw: dict[str, dict[str, Any]]) -> dict[str, WorkspaceTemplate]:
    """Templates from configuration; ValueError naming the template and the key on anything wrong."""
    out = {}
    for name, spec in raw.items():
        if not TEMPLATE_NAME_RE.match(name):
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
        out[name] = WorkspaceTemplate(
            name=name,
            display_name=str(spec.get("display_name") or name),
            description=str(spec.get("description", "")),
            cpu=float(cpu),
            memory=str(spec.get("memory", "4G")),
            gpu_count=gpus,
            gpu_type=str(spec.get("gpu_type", "")),
            image=str(spec.get("image", "")),
            groups=tuple(spec.get("groups", ())),
            tolerations=tuple(spec.get("tolerations", ())),
            node_selector=dict(spec.get("node_selector", {})),
            default=bool(spec.get("default", False)),
        )
    return out


def project_offer(
    project: str, templates: dict[str, WorkspaceTemplate], project_templates: dict[str, list[Any]]
) -> list[tuple[WorkspaceTemplate, tuple[str, ...]]]:
    """The templates a project offers, each with the groups allowed to use it there (empty: all members)."""
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
    user_groups: list[str] | set[str],
    templates: dict[str, WorkspaceTemplate],
    project_templates: dict[str, list[Any]],
) -> list[WorkspaceTemplate]:
    """The templates of `project` this user may start, in configured order."""
    mine = set(user_groups)
    return [t for t, groups in project_offer(project, templates, project_templates) if not groups or mine & set(groups)]


def choose_template(project: str, requested: str | None, allowed: list[WorkspaceTemplate]) -> WorkspaceTemplate:
    """The template to start: the requested one if allowed, else the default; 403 with the allowed list."""
    names = [t.name for t in allowed]
    if not allowed:
        raise AnimusError(
            403,
            "no_workspace_template",
            f"No workspace template of project {project!r} is open to your groups",
            {"project": project, "allowed": []},
        )
    if not requested:
        return next((t for t in allowed if t.default), allowed[0])
    for t in allowed:
        if t.name == requested:
            return t
    # an unknown name and a forbidden one answer alike: the list says what is possible
    raise AnimusError(
        403,
        "workspace_template_not_allowed",
        f"Workspace template {requested[:64]!r} is not allowed for you in project {project!r}; "
        f"allowed: {', '.join(names)}",
        {"project": project, "requested": requested[:64], "allowed": names},
    )


@dataclass
class GPUSettings:
    resource_name: str = "nvidia.com/gpu"
    type_label: str = "nvidia.com/gpu.product"
    tolerations: list[dict[str, Any]] = field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    )
    #: size of the in-memory /dev/shm of GPU workspaces (data loaders share tensors through it)
    shm_size: str = "8Gi"


def make_profile(
    t: WorkspaceTemplate,
    project: str,
    *,
    base_tolerations: list[dict[str, Any]] | None = None,
    base_volumes: list[dict[str, Any]] | None = None,
    base_volume_mounts: list[dict[str, Any]] | None = None,
    gpu: GPUSettings | None = None,
) -> dict[str, Any]:
    """One KubeSpawner profile_list entry for template `t` in `project`.

    Lists replace the spawner's in a kubespawner_override (dicts merge), so the
    spawner's own tolerations and volumes come in as `base_*` and are kept.
    """
    gpu = gpu or GPUSettings()
    override: dict[str, Any] = {
        "cpu_guarantee": t.cpu,
        "cpu_limit": t.cpu,
        "mem_guarantee": t.memory,
        "mem_limit": t.memory,
        "extra_labels": {LABEL_PROJECT: project, LABEL_TEMPLATE: t.name},
        "tolerations": list(base_tolerations or []) + list(t.tolerations),
    }
    if t.image:
        override["image"] = t.image
    node_selector = dict(t.node_selector)
    if t.gpu_count:
        count = str(t.gpu_count)
        override["extra_resource_guarantees"] = {gpu.resource_name: count}
        override["extra_resource_limits"] = {gpu.resource_name: count}
        override["tolerations"] += list(gpu.tolerations)
        if t.gpu_type:
            node_selector[gpu.type_label] = t.gpu_type
        override["volumes"] = list(base_volumes or []) + [
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": gpu.shm_size}}
        ]
        override["volume_mounts"] = list(base_volume_mounts or []) + [
            {"name": "dshm", "mountPath": "/dev/shm"}  # noqa: S108 (a mount path in the pod)
        ]
    if node_selector:
        override["node_selector"] = node_selector
    return {
        "display_name": t.display_name,
        "slug": t.name,
        "description": t.description,
        "default": t.default,
        "kubespawner_override": override,
    }


def profile_list(allowed: list[WorkspaceTemplate], project: str, **kwargs: Any) -> list[dict[str, Any]]:
    """KubeSpawner's profile_list for the templates a user may start in `project` (one default)."""
    profiles = [make_profile(t, project, **kwargs) for t in allowed]
    if profiles and not any(p["default"] for p in profiles):
        profiles[0]["default"] = True
    return profiles
