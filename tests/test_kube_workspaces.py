"""Workspace templates per project, rendered by KubeSpawner's own get_pod_manifest().

Two projects with CPU and GPU templates (the configuration shape and the choice rule
are the local spawner's too: tests/test_workspace_templates.py): the 403 with the
allowed list, and the pods KubeSpawner renders for them — valid against
the API schema (kubernetes-validate, 1.30) and carrying the expected resources,
labels, tolerations and volumes. No API server is contacted: rendering a pod
manifest needs none, and KubeSpawner loads its client configuration from a
kubeconfig file written by the test (pointing at an unused local port).
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import kubernetes_validate
import pytest
from jupyterhub import orm
from kubernetes_asyncio.config import kube_config
from tornado import web

from animus_hub.k8s import to_dict

CPU_IMAGE = "registry.example.com/animus/workspace-cpu:1.0@sha256:" + "aa" * 32
GPU_IMAGE = "registry.example.com/animus/workspace-gpu:1.0@sha256:" + "bb" * 32

TEMPLATES = {
    "cpu-small": {"display_name": "CPU small", "cpu": 2, "memory": "8G", "image": CPU_IMAGE, "default": True},
    "cpu-large": {"display_name": "CPU large", "cpu": 16, "memory": "64G", "image": CPU_IMAGE},
    "gpu": {
        "display_name": "GPU (1x A100)",
        "cpu": 8,
        "memory": "64G",
        "gpu_count": 1,
        "gpu_type": "NVIDIA-A100-SXM4-80GB",
        "image": GPU_IMAGE,
        "groups": ["gpu-users"],
        "environment": {"NCCL_DEBUG": "WARN"},
    },
}
PROJECT_TEMPLATES = {
    "churn": ["cpu-small", "gpu"],
    # in vision, the GPU template is for the vision team's GPU group only (replaces the template's groups)
    "vision": ["cpu-small", "cpu-large", {"template": "gpu", "groups": ["vision-gpu"]}],
    "*": ["cpu-small"],
}


# --- pods rendered by KubeSpawner --------------------------------------------------------------


@pytest.fixture
def kubeconfig(tmp_path, monkeypatch):
    path = tmp_path / "kubeconfig"
    path.write_text(
        """
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "http://127.0.0.1:9"}}]
users: [{name: nobody, user: {}}]
contexts: [{name: local, context: {cluster: local, user: nobody, namespace: animus}}]
current-context: local
"""
    )
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    return path


def render(project: str, username: str, groups: list[str], profile: str | None) -> dict:
    from traitlets.config import Config

    from animus_hub.k8s.spawner import AnimusKubeSpawner

    c = Config()
    c.AnimusKubeSpawner.workspace_templates = TEMPLATES
    c.AnimusKubeSpawner.project_templates = PROJECT_TEMPLATES
    c.AnimusKubeSpawner.namespace = "animus"
    c.AnimusKubeSpawner.tolerations = [
        {"key": "dedicated", "operator": "Equal", "value": "workspaces", "effect": "NoSchedule"}
    ]
    user = SimpleNamespace(
        name=username, id=7, url=f"/user/{username}/", groups=[SimpleNamespace(name=g) for g in groups]
    )

    async def go():
        spawner = AnimusKubeSpawner(_mock=True, config=c, user=user, orm_spawner=orm.Spawner(name=project))
        spawner.user_options = {"profile": profile} if profile else {}
        # as the hub does: apply_user_options (the template check) before start(), which loads them
        await spawner._run_apply_user_options(spawner.user_options)
        await spawner.load_user_options()
        pod = await spawner.get_pod_manifest()
        return to_dict(pod), spawner

    pod, spawner = asyncio.run(go())
    return pod, spawner


def container(pod: dict) -> dict:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "notebook")


@pytest.mark.parametrize("project", ["churn", "vision"])
def test_cpu_workspace_pod(kubeconfig, project):
    pod, spawner = render(project, "alice", [], None)
    kubernetes_validate.validate(pod, "1.30", strict=True)
    labels = pod["metadata"]["labels"]
    assert labels["animus.io/project"] == project
    assert labels["animus.io/workspace-template"] == "cpu-small"
    c = container(pod)
    assert c["image"] == CPU_IMAGE
    # KubeSpawner turns "8G" into bytes (binary units)
    assert c["resources"]["limits"] == {"cpu": 2.0, "memory": 8 * 1024**3}
    assert c["resources"]["requests"] == {"cpu": 2.0, "memory": 8 * 1024**3}
    assert "nvidia.com/gpu" not in str(pod)
    assert pod["spec"]["tolerations"][0]["key"] == "dedicated"
    assert all(t.get("key") != "nvidia.com/gpu" for t in pod["spec"]["tolerations"])
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["home"]["persistentVolumeClaim"]["claimName"] == f"animus-alice--{project}"
    assert {"name": "home", "mountPath": "/home/jovyan"} in c["volumeMounts"]
    assert "dshm" not in volumes
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["ANIMUS_PROJECT"] == project and env["ANIMUS_WORKSPACE_TEMPLATE"] == "cpu-small"


@pytest.mark.parametrize("project, groups", [("churn", ["gpu-users"]), ("vision", ["vision-gpu"])])
def test_gpu_workspace_pod(kubeconfig, project, groups):
    pod, spawner = render(project, "bob", groups, "gpu")
    kubernetes_validate.validate(pod, "1.30", strict=True)
    assert pod["metadata"]["labels"]["animus.io/workspace-template"] == "gpu"
    c = container(pod)
    assert c["image"] == GPU_IMAGE
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert c["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert c["resources"]["limits"]["cpu"] == 8.0 and c["resources"]["limits"]["memory"] == 64 * 1024**3
    tolerations = pod["spec"]["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations
    assert any(t["key"] == "dedicated" for t in tolerations)  # the spawner's own tolerations are kept
    assert pod["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}
    assert volumes["home"]["persistentVolumeClaim"]["claimName"] == f"animus-bob--{project}"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/dev/shm"] == "dshm" and mounts["/home/jovyan"] == "home"
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert (env["NCCL_DEBUG"], env["ANIMUS_WORKSPACE_TEMPLATE"], env["ANIMUS_PROJECT"]) == ("WARN", "gpu", project)


def test_spawner_refuses_a_template_outside_the_users_groups(kubeconfig):
    with pytest.raises(web.HTTPError) as e:
        render("vision", "carol", ["gpu-users"], "gpu")
    assert e.value.status_code == 403
    assert "allowed: cpu-small, cpu-large" in e.value.log_message


def test_spawner_refuses_an_unknown_template_and_starts_the_default_without_a_choice(kubeconfig):
    with pytest.raises(web.HTTPError) as e:
        render("churn", "erin", [], "no-such")
    assert e.value.status_code == 403
    assert (
        e.value.log_message
        == "Workspace template 'no-such' is not allowed for you in project 'churn'; allowed: cpu-small"
    )
    pod, spawner = render("churn", "erin", [], None)
    assert spawner.user_options == {"profile": "cpu-small"}


def kube_spawner(project: str, groups: list[str]):
    from traitlets.config import Config

    from animus_hub.k8s.spawner import AnimusKubeSpawner

    c = Config()
    c.AnimusKubeSpawner.workspace_templates = TEMPLATES
    c.AnimusKubeSpawner.project_templates = PROJECT_TEMPLATES
    user = SimpleNamespace(name="dave", id=8, url="/user/dave/", groups=[SimpleNamespace(name=g) for g in groups])
    return AnimusKubeSpawner(_mock=True, config=c, user=user, orm_spawner=orm.Spawner(name=project))


def test_the_spawn_form_is_the_local_spawners_choice_of_allowed_templates(kubeconfig):
    async def go(project, groups):
        return await kube_spawner(project, groups).get_options_form()

    form = asyncio.run(go("churn", ["gpu-users"]))
    assert '<select id="animus-profile" name="profile"' in form
    assert '<option value="cpu-small" selected>' in form and '<option value="gpu">' in form
    assert asyncio.run(go("churn", [])) == ""  # one template allowed: no form, start at once


def test_profile_list_offered_to_a_user_is_the_filtered_one(kubeconfig):
    from traitlets.config import Config

    from animus_hub.k8s.spawner import AnimusKubeSpawner

    c = Config()
    c.AnimusKubeSpawner.workspace_templates = TEMPLATES
    c.AnimusKubeSpawner.project_templates = PROJECT_TEMPLATES
    user = SimpleNamespace(name="dave", id=8, url="/user/dave/", groups=[SimpleNamespace(name="gpu-users")])

    async def go():
        s = AnimusKubeSpawner(_mock=True, config=c, user=user, orm_spawner=orm.Spawner(name="churn"))
        return s.profile_list(s)

    profiles = asyncio.run(go())
    assert [p["slug"] for p in profiles] == ["cpu-small", "gpu"]
    assert [p["default"] for p in profiles] == [True, False]
