"""AnimusKubeSpawner: KubeSpawner with workspace templates per project (cluster profile).

A named server is a project's workspace (its name is the project's slug, as in the
embedded profile). Its ``profile_list`` is computed per spawn from
``workspace_templates`` and ``project_templates``, filtered by the user's
JupyterHub groups (which the OIDC authenticator keeps in step with the IdP). A
template the user may not start is refused with 403 and the allowed list before
anything is created in the cluster. KubeSpawner renders the pod itself.

Configure in the hub's configuration::

    c.JupyterHub.spawner_class = "animus_hub.k8s.spawner.AnimusKubeSpawner"
    c.AnimusKubeSpawner.workspace_templates = {...}
    c.AnimusKubeSpawner.project_templates = {...}
"""

from __future__ import annotations

from typing import Any

from jupyterhub.utils import maybe_future
from kubespawner import KubeSpawner
from tornado import web
from traitlets import Dict, List, Unicode, default, validate

from ..errors import AnimusError
from ..workspace_access import ProjectWorkspaceAccess
from . import workspaces as ws


class AnimusKubeSpawner(ProjectWorkspaceAccess, KubeSpawner):
    workspace_templates = Dict(
        help="Workspace templates by name: {name: {display_name, description, cpu, memory, gpu_count, gpu_type, "
        "image, groups, tolerations, node_selector, default}}. `groups` limits a template to members of those "
        "JupyterHub/IdP groups (empty: everyone the project offers it to).",
    ).tag(config=True)

    @validate("workspace_templates")
    def _check_templates(self, proposal):
        ws.parse_templates(proposal["value"])  # fails start-up with the template and key that is wrong
        return proposal["value"]

    project_templates = Dict(
        help="Templates each project offers: {project slug: [template name, or {template, groups}]}; the key "
        "'*' applies to projects not listed. Per-project `groups` replace the template's own.",
    ).tag(config=True)

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

    # --- templates -----------------------------------------------------------------------------

    @property
    def project(self) -> str:
        return self.name or ""

    def user_groups(self) -> list[str]:
        return [g.name for g in getattr(self.user, "groups", None) or []]

    def allowed_templates(self) -> list[ws.WorkspaceTemplate]:
        templates = ws.parse_templates(self.workspace_templates)
        return ws.allowed_templates(self.project, self.user_groups(), templates, self.project_templates)

    def animus_profile_list(self) -> list[dict[str, Any]]:
        return ws.profile_list(
            self.allowed_templates(),
            self.project,
            base_tolerations=list(self.tolerations),
            base_volumes=list(self.volumes),
            base_volume_mounts=list(self.volume_mounts),
            gpu=ws.GPUSettings(
                resource_name=self.gpu_resource_name,
                type_label=self.gpu_type_label,
                tolerations=list(self.gpu_tolerations),
                shm_size=self.gpu_shm_size,
            ),
        )

    def check_template(self) -> ws.WorkspaceTemplate:
        """The template this spawn uses; HTTP 403 (relayed by the hub) naming the allowed ones."""
        try:
            return ws.choose_template(self.project, self.user_options.get("profile"), self.allowed_templates())
        except AnimusError as e:
            raise web.HTTPError(e.status, e.message) from None

    async def run_pre_spawn_hook(self):
        # a project's workspace opens only for the project's members (asked of Animus, audited)
        await self.check_project_access()
        return await maybe_future(super().run_pre_spawn_hook())

    async def load_user_options(self):
        chosen = self.check_template()
        if not self.user_options.get("profile"):
            self.user_options = {**self.user_options, "profile": chosen.name}
        await super().load_user_options()
        self.environment = {
            **self.environment,
            "ANIMUS_PROJECT": self.project,
            "ANIMUS_WORKSPACE_TEMPLATE": chosen.name,
        }
