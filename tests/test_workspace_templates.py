"""Workspace templates per project, rendered by KubeSpawner's own get_pod_manifest().

Two projects with CPU and GPU templates: the filter by the user's groups, the 403
with the allowed list, and the pods KubeSpawner renders for them — valid against
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

from animus_hub.errors import AnimusError
from animus_hub.k8s import to_dict
from animus_hub.k8s import workspaces as ws

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
    },
}
PROJECT_TEMPLATES = {
    "churn": ["cpu-small", "gpu"],
    # in vision, the GPU template is for the vision team's GPU group only (replaces the template's groups)
    "vision": ["cpu-small", "cpu-large", {"template": "gpu", "groups": ["vision-gpu"]}],
    "*": ["cpu-small"],
}


def parsed():
    return ws.parse_templates(TEMPLATES)


def names(templates) -> list[str]:
    return [t.name for t in templates]


def test_templates_are_filtered_by_project_and_groups():
    t = parsed()
    assert names(ws.allowed_templates("churn", [], t, PROJECT_TEMPLATES)) == ["cpu-small"]
    assert names(ws.allowed_templates("churn", ["gpu-users"], t, PROJECT_TEMPLATES)) == ["cpu-small", "gpu"]
    # the project's own groups replace the template's: gpu-users is not enough in vision
    assert names(ws.allowed_templates("vision", ["gpu-users"], t, PROJECT_TEMPLATES)) == ["cpu-small", "cpu-large"]
    assert names(ws.allowed_templates("vision", ["vision-gpu"], t, PROJECT_TEMPLATES)) == [
        "cpu-small",
        "cpu-large",
        "gpu",
    ]
    assert names(ws.allowed_templates("other", ["gpu-users"], t, PROJECT_TEMPLATES)) == ["cpu-small"]
    assert ws.allowed_templates("other", [], t, {"churn": ["gpu"]}) == []


def test_a_template_the_groups_do_not_allow_is_403_with_the_allowed_list():
    allowed = ws.allowed_templates("churn", ["analysts"], parsed(), PROJECT_TEMPLATES)
    with pytest.raises(AnimusError) as e:
        ws.choose_template("churn", "gpu", allowed)
    assert e.value.status == 403
    assert e.value.reason == "workspace_template_not_allowed"
    assert e.value.details["allowed"] == ["cpu-small"]
    assert "allowed: cpu-small" in e.value.message
    # an unknown name answers the same way
    with pytest.raises(AnimusError) as e:
        ws.choose_template("churn", "no-such", allowed)
    assert e.value.status == 403 and e.value.details["allowed"] == ["cpu-small"]
    with pytest.raises(AnimusError) as e:
        ws.choose_template("other", None, [])
    assert e.value.status == 403 and e.value.reason == "no_workspace_template"
    assert ws.choose_template("churn", None, allowed).name == "cpu-small"
    assert ws.choose_template("churn", "cpu-small", allowed).name == "cpu-small"


@pytest.mark.parametrize(
    "raw, match",
    [
        ({"Big": {}}, "lower-case"),
        ({"x": {"cpus": 2}}, "unknown keys"),
        ({"x": {"cpu": -1}}, "positive"),
        ({"x": {"gpu_count": 1.5}}, "non-negative integer"),
        ({"x": {"gpu_type": "A100"}}, "needs gpu_count"),
    ],
)
def test_bad_template_configuration_is_refused_with_its_name(raw, match):
    with pytest.raises(ValueError, match=match):
        ws.parse_templates(raw)


def test_a_project_offering_an_undefined_template_is_a_configuration_error():
    with pytest.raises(ValueError, match="not defined"):
        ws.allowed_templates("churn", [], parsed(), {"churn": ["gpu-xl"]})


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

    from animus_hub.spawner import AnimusKubeSpawner

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


def test_spawner_refuses_a_template_outside_the_users_groups(kubeconfig):
    with pytest.raises(web.HTTPError) as e:
        render("vision", "carol", ["gpu-users"], "gpu")
    assert e.value.status_code == 403
    assert "allowed: cpu-small, cpu-large" in e.value.log_message


def test_profile_list_offered_to_a_user_is_the_filtered_one(kubeconfig):
    from traitlets.config import Config

    from animus_hub.spawner import AnimusKubeSpawner

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
