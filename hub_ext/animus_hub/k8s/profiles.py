"""Workspace templates as KubeSpawner ``profile_list`` entries (cluster profile).

The templates, and which of them a user may start in a project, come from
``animus_hub.workspaces`` (the rule the local spawner applies too); this module only
renders the allowed ones for KubeSpawner, which then builds the pod itself. Pure
functions, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..workspaces import WorkspaceTemplate, default_template

LABEL_TEMPLATE = "animus.io/workspace-template"
LABEL_PROJECT = "animus.io/project"


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
        "mem_guarantee": t.memory_bytes,
        "mem_limit": t.memory_bytes,
        "extra_labels": {LABEL_PROJECT: project, LABEL_TEMPLATE: t.name},
        # merged into the spawner's environment by KubeSpawner (dicts merge)
        "environment": {**t.environment, "ANIMUS_WORKSPACE_TEMPLATE": t.name},
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
    """KubeSpawner's profile_list for the templates a user may start in `project`.

    Exactly one is the default: the one the shared rule starts when none is chosen.
    """
    chosen = default_template(allowed)
    profiles = [make_profile(t, project, **kwargs) for t in allowed]
    for t, p in zip(allowed, profiles, strict=True):
        p["default"] = t is chosen
    return profiles
