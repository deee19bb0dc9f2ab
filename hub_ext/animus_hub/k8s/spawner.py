"""AnimusKubeSpawner: KubeSpawner with workspace templates per project (cluster profile).

A named server is a project's workspace (its name is the project's slug, as in the
embedded profile). The templates, the spawn form and the choice are the
``WorkspaceTemplates`` mixin's, the same as the local spawner's: a template the user
may not start is refused with 403 and the allowed list before anything is created
in the cluster. Its ``profile_list`` is computed per spawn from the allowed
templates (``k8s/profiles.py``), and KubeSpawner renders the pod itself.

Configure in the hub's configuration::

    c.JupyterHub.spawner_class = "animus_hub.k8s.spawner.AnimusKubeSpawner"
    c.AnimusKubeSpawner.workspace_templates = {...}
    c.AnimusKubeSpawner.project_templates = {...}
"""

from __future__ import annotations

from typing import Any

from kubespawner import KubeSpawner
from traitlets import Dict, List, Unicode, default

from ..spawner import WorkspaceTemplates
from ..workspace_access import ProjectWorkspaceAccess
from . import profiles


class AnimusKubeSpawner(ProjectWorkspaceAccess, WorkspaceTemplates, KubeSpawner):
    gpu_tolerations = List(
        Dict(),
        [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        help="Tolerations added to workspaces of templates with GPUs.",
    ).tag(config=True)
    gpu_resource_name = Unicode("nvidia.com/gpu", help="Extended resource that counts GPUs.").tag(config=True)
    gpu_type_label = Unicode("nvidia.com/gpu.product", help="Node label selected with a template's gpu_type.").tag(
        config=True
    )
    gpu_shm_size = Unicode("8Gi", help="Size of the in-memory /dev/shm of GPU workspaces.").tag(config=True)

    @default("profile_list")
    def _profile_list_default(self):
        return lambda spawner: spawner.animus_profile_list()

    @default("pvc_name_template")
    def _pvc_name_default(self) -> str:
        # one volume per (user, project): a project's files stay in that project's workspace
        return "animus-{user_server}"

    @default("storage_pvc_ensure")
    def _storage_pvc_ensure_default(self) -> bool:
        return True

    @default("volumes")
    def _volumes_default(self) -> list[dict[str, Any]]:
        return [{"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}]

    @default("volume_mounts")
    def _volume_mounts_default(self) -> list[dict[str, Any]]:
        return [{"name": "home", "mountPath": "/home/jovyan"}]

    def animus_profile_list(self) -> list[dict[str, Any]]:
        """KubeSpawner profiles of the templates this user may start in this project."""
        return profiles.profile_list(
            self.allowed_templates(),
            self.name or "",
            base_tolerations=list(self.tolerations),
            base_volumes=list(self.volumes),
            base_volume_mounts=list(self.volume_mounts),
            gpu=profiles.GPUSettings(
                resource_name=self.gpu_resource_name,
                type_label=self.gpu_type_label,
                tolerations=list(self.gpu_tolerations),
                shm_size=self.gpu_shm_size,
            ),
        )

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        env.setdefault("ANIMUS_PROJECT", self.name or "")
        return env

    async def load_user_options(self):
        # the hub ran apply_user_options (the template check) before start(); KubeSpawner
        # now applies the chosen profile: resources, image, labels, tolerations, volumes
        if self.workspace_templates and not self.user_options.get("profile"):
            self.apply_template(self.user_options)
        await super().load_user_options()
