"""Workspace templates per project, filtered by groups, and what the local spawner enforces of them.

The shared rule (`animus_hub.workspaces.select_template`, used by the local spawner and
by AnimusKubeSpawner) is checked on its own; then the local spawner's form; then the
local spawner against a real hub: a template the person may not use is a 403 naming the
allowed ones, a GPU template on a machine without GPUs is a 400, and a workspace started
from a 1-CPU template runs (with what it starts) on one CPU, inside a memory cgroup of
the template's size where the machine allows one, with MEM_LIMIT, CPU_LIMIT and
ANIMUS_WORKSPACE_TEMPLATE in its environment. Pods rendered for Kubernetes from the same
configuration are in test_kube_workspaces.py.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import requests
from jupyterhub import orm
from stack import STACK_API_CONFIG, HubStack
from tornado import web
from traitlets.config import Config

from animus_hub import locallimits
from animus_hub import workspaces as ws
from animus_hub.errors import AnimusError
from animus_hub.spawner import AnimusLocalSpawner

pytestmark = pytest.mark.timeout(300)

TEMPLATES = {
    "cpu-small": {
        "display_name": "CPU small",
        "description": "1 CPU, 1 GB",
        "cpu": 1,
        "memory": "1G",
        "default": True,
        "environment": {"TEMPLATE_MARK": "small"},
    },
    "cpu-large": {"display_name": "CPU large", "description": "2 CPUs, 4 GB", "cpu": 2, "memory": "4G"},
    "gpu": {
        "display_name": "GPU",
        "cpu": 2,
        "memory": "4G",
        "gpu_count": 1,
        "groups": ["gpu-users"],
        "environment": {"TEMPLATE_MARK": "gpu"},
    },
}
PROJECT_TEMPLATES = {
    # in vision, cpu-large is for the vision team only (the entry's groups); gpu keeps its own groups
    "vision": ["cpu-small", {"template": "cpu-large", "groups": ["vision-team"]}, "gpu"],
    "*": ["cpu-small"],
}


def names(templates) -> list[str]:
    return [t.name for t in templates]


def allowed(project: str, groups: list[str], project_templates=PROJECT_TEMPLATES) -> list[str]:
    return names(ws.allowed_templates(project, groups, ws.parse_templates(TEMPLATES), project_templates))


# --- the shared rule ----------------------------------------------------------------------------


def test_projects_offer_templates_and_groups_filter_them():
    assert allowed("vision", []) == ["cpu-small"]
    assert allowed("vision", ["gpu-users"]) == ["cpu-small", "gpu"]
    assert allowed("vision", ["vision-team", "gpu-users"]) == ["cpu-small", "cpu-large", "gpu"]
    # a project not listed gets "*"; the default (unnamed) server too
    assert allowed("churn", ["vision-team", "gpu-users"]) == ["cpu-small"]
    assert allowed("", ["gpu-users"]) == ["cpu-small"]
    # no "*": a project not listed offers nothing
    assert allowed("churn", ["gpu-users"], {"vision": ["gpu"]}) == []
    # no project_templates at all: every template everywhere, each still limited to its groups
    assert allowed("anything", [], {}) == ["cpu-small", "cpu-large"]
    assert allowed("anything", ["gpu-users"], {}) == ["cpu-small", "cpu-large", "gpu"]


def test_per_project_groups_replace_the_templates_own():
    per_project = {"vision": [{"template": "gpu", "groups": ["vision-gpu"]}], "*": ["gpu"]}
    assert allowed("vision", ["gpu-users"], per_project) == []
    assert allowed("vision", ["vision-gpu"], per_project) == ["gpu"]
    assert allowed("other", ["gpu-users"], per_project) == ["gpu"]


def select(project: str, groups: list[str], requested=None):
    return ws.select_template(TEMPLATES, PROJECT_TEMPLATES, project, groups, requested)


def test_no_choice_is_the_default_template_else_the_first_allowed():
    assert select("vision", ["gpu-users"]).name == "cpu-small"
    no_default = {name: {k: v for k, v in t.items() if k != "default"} for name, t in TEMPLATES.items()}
    assert ws.select_template(no_default, {"*": ["cpu-large", "cpu-small"]}, "p", []).name == "cpu-large"
    # the default is chosen among the allowed ones only
    assert ws.select_template(TEMPLATES, {"*": ["gpu", "cpu-large"]}, "p", []).name == "cpu-large"
    assert select("vision", ["gpu-users"], "gpu").name == "gpu"


def test_a_template_not_allowed_or_unknown_is_403_naming_the_project_and_the_allowed_ones():
    for requested in ("gpu", "cpu-large", "no-such"):
        with pytest.raises(AnimusError) as e:
            select("vision", ["analysts"], requested)
        assert e.value.status == 403 and e.value.reason == "workspace_template_not_allowed"
        assert e.value.details["allowed"] == ["cpu-small"]
        assert e.value.message == (
            f"Workspace template {requested!r} is not allowed for you in project 'vision'; allowed: cpu-small"
        )


def test_no_template_allowed_is_403_and_a_non_name_is_400():
    with pytest.raises(AnimusError) as e:
        ws.select_template(TEMPLATES, {"vision": ["gpu"]}, "vision", [])
    assert e.value.status == 403 and e.value.reason == "no_workspace_template"
    assert "project 'vision'" in e.value.message and "allowed: none" in e.value.message
    with pytest.raises(AnimusError) as e:
        select("vision", [], ["gpu"])
    assert e.value.status == 400


def test_without_templates_there_is_nothing_to_choose():
    assert ws.select_template({}, {}, "vision", [], None) is None


@pytest.mark.parametrize(
    "raw, match",
    [
        ({"Big": {}}, "lower-case"),
        ({"x": {"cpus": 2}}, "unknown keys"),
        ({"x": {"cpu": -1}}, "positive"),
        ({"x": {"gpu_count": 1.5}}, "non-negative integer"),
        ({"x": {"gpu_type": "A100"}}, "needs gpu_count"),
        ({"x": {"memory": "8Gi"}}, "not a memory size"),
        ({"x": {"groups": "gpu-users"}}, "list of group names"),
        ({"x": {"environment": ["A=1"]}}, "environment is a dict"),
    ],
)
def test_bad_template_configuration_is_refused_with_its_name(raw, match):
    with pytest.raises(ValueError, match=match):
        ws.parse_templates(raw)


@pytest.mark.parametrize(
    "raw, match",
    [
        ({"vision": ["gpu-xl"]}, "not defined"),
        ({"vision": "cpu-small"}, "list of template names"),
        ({"vision": [{"template": "gpu", "group": ["x"]}]}, "template name or"),
    ],
)
def test_bad_project_templates_are_refused_naming_the_project(raw, match):
    with pytest.raises(ValueError, match=match):
        ws.check_project_templates(raw, ws.parse_templates(TEMPLATES))


def test_memory_sizes_read_as_jupyterhub_reads_them():
    assert ws.memory_bytes("2G") == 2 * 1024**3
    assert ws.memory_bytes("512M") == 512 * 1024**2
    assert ws.memory_bytes("1.5G") == int(1.5 * 1024**3)
    assert ws.memory_bytes("1000") == 1000
    assert ws.memory_bytes(4096) == 4096


# --- the local spawner, without a hub ----------------------------------------------------------


def local_spawner(project: str, groups: list[str], templates=TEMPLATES, project_templates=PROJECT_TEMPLATES):
    c = Config()
    c.AnimusLocalSpawner.workspace_templates = templates
    c.AnimusLocalSpawner.project_templates = project_templates
    user = SimpleNamespace(name="ann", id=3, url="/user/ann/", groups=[SimpleNamespace(name=g) for g in groups])
    return AnimusLocalSpawner(_mock=True, config=c, user=user, orm_spawner=orm.Spawner(name=project))


def test_the_form_offers_the_allowed_templates_with_the_default_preselected():
    s = local_spawner("vision", ["vision-team", "gpu-users"])
    form = asyncio.run(s.get_options_form())
    assert form.count("<option") == 3
    assert '<option value="cpu-small" selected>CPU small — 1 CPU, 1 GB</option>' in form
    assert 'name="profile"' in form
    if locallimits.count_nvidia_gpus() == 0:
        assert '<option value="gpu" disabled>GPU (needs 1 GPU, this machine has none;' in form
    assert s.run_options_from_form({"profile": ["cpu-large"]}) == {"profile": "cpu-large"}
    assert s.run_options_from_form({}) == {}


def test_one_allowed_template_means_no_form():
    assert asyncio.run(local_spawner("churn", ["gpu-users"]).get_options_form()) == ""
    assert asyncio.run(local_spawner("churn", [], templates={}).get_options_form()) == ""


def test_the_local_spawner_refuses_a_template_outside_the_users_groups():
    s = local_spawner("vision", [])
    with pytest.raises(web.HTTPError) as e:
        s.apply_template({"profile": "cpu-large"})
    assert e.value.status_code == 403
    assert e.value.log_message.endswith("in project 'vision'; allowed: cpu-small")


def test_a_template_sets_the_spawners_limits_capped_at_the_machines_cpus():
    s = local_spawner("vision", ["vision-team"])
    s.apply_template({"profile": "cpu-large"})
    cpus = len(locallimits.available_cpus())
    assert s.user_options == {"profile": "cpu-large"}
    # never more CPUs than the machine has
    assert (s.cpu_limit, s.cpu_guarantee) == (min(2.0, cpus), min(2.0, cpus))
    assert s.mem_limit == s.mem_guarantee == 4 * 1024**3
    s.apply_template({})
    assert s.template.name == "cpu-small" and s.cpu_limit == 1.0 and s.mem_limit == 1024**3


# --- local limits ------------------------------------------------------------------------------


def test_cpus_are_rounded_up_capped_and_spread():
    assert locallimits.cpus_for(0.5, 4) == 1
    assert locallimits.cpus_for(2.5, 4) == 3
    assert locallimits.cpus_for(16, 4) == 4
    alloc = locallimits.CPUAllocator([0, 1, 2, 3])
    assert alloc.take(1) == [0]
    assert alloc.take(2) == [1, 2]
    assert alloc.take(2) == [0, 3]
    alloc.give_back([1, 2])
    assert alloc.take(1) == [1]


def test_gpus_are_counted_from_the_driver(tmp_path):
    assert locallimits.count_nvidia_gpus(str(tmp_path)) == 0
    for bus in ("0000:3b:00.0", "0000:af:00.0"):
        (tmp_path / "driver" / "nvidia" / "gpus" / bus).mkdir(parents=True)
    assert locallimits.count_nvidia_gpus(str(tmp_path)) == 2


def test_cgroup_v2_groups_are_made_under_a_parent_with_the_memory_controller(tmp_path):
    # a stand-in for a delegated cgroup v2 group: the files the kernel would show
    parent = tmp_path / "animus"
    parent.mkdir()
    (parent / "cgroup.controllers").write_text("cpu io memory pids\n")
    (parent / "cgroup.subtree_control").write_text("\n")
    (parent / "animus-workspaces").mkdir()
    (parent / "animus-workspaces" / "cgroup.subtree_control").write_text("\n")
    groups = locallimits.MemoryCgroups(str(tmp_path), parent=str(parent))
    assert groups.setup() is None and groups.version == 2
    assert (parent / "cgroup.subtree_control").read_text() == "+memory"
    assert (parent / "animus-workspaces" / "cgroup.subtree_control").read_text() == "+memory"
    group = groups.create("ann-vision-0001", 2 * 1024**3)
    assert (group / "memory.max").read_text() == str(2 * 1024**3)
    assert (group / "memory.swap.max").read_text() == "0"


def test_without_a_memory_controller_the_reason_is_given(tmp_path):
    parent = tmp_path / "animus"
    parent.mkdir()
    (parent / "cgroup.controllers").write_text("cpu pids\n")
    reason = locallimits.MemoryCgroups(str(tmp_path), parent=str(parent)).setup()
    assert reason and "memory controller is not available" in reason
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text("0::/\n")
    reason = locallimits.MemoryCgroups(str(tmp_path / "nothing"), proc_self_cgroup=str(proc)).setup()
    assert reason and "no cgroup v2 filesystem" in reason


def machine_memory_groups() -> locallimits.MemoryCgroups | None:
    groups = locallimits.MemoryCgroups()
    return groups if groups.setup() is None else None


def test_a_memory_cgroup_stops_a_process_tree_at_its_limit():
    groups = machine_memory_groups()
    if groups is None:
        pytest.skip(f"this machine lets the hub make no memory cgroup: {locallimits.MemoryCgroups().setup()}")
    import subprocess
    import sys

    group = groups.create(locallimits.group_name("test", "oom"), 64 * 1024**2)
    procs = locallimits.MemoryCgroups.procs_file(group)
    try:
        # the child (and so its own child) joins before exec; 256 MB in a 64 MB group is killed
        hog = "import subprocess, sys; print(subprocess.call([sys.executable, '-c', 'b = bytearray(256 << 20)']))"
        r = subprocess.run(
            [sys.executable, "-c", hog],
            preexec_fn=lambda: locallimits.join_cgroup(procs),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert r.stdout.strip() == "-9", r  # the grandchild was SIGKILLed by the OOM killer
        ok = subprocess.run(
            [sys.executable, "-c", "b = bytearray(16 << 20)"],
            preexec_fn=lambda: locallimits.join_cgroup(procs),
            timeout=60,
            check=False,
        )
        assert ok.returncode == 0
    finally:
        for _ in range(50):
            if groups.remove(group):
                break
            time.sleep(0.1)
    assert not group.exists()


# --- the local spawner in a real hub --------------------------------------------------------------

HUB_CONFIG = f"""
c.AnimusLocalSpawner.workspace_templates = {TEMPLATES!r}
c.AnimusLocalSpawner.project_templates = {PROJECT_TEMPLATES!r}
c.JupyterHub.named_server_limit_per_user = 1
"""


@pytest.fixture(scope="module")
def templated_stack(tmp_path_factory):
    s = HubStack(
        tmp_path_factory.mktemp("templates"), api_config=STACK_API_CONFIG, hub_config=HUB_CONFIG, idle_timeout=0
    )
    s.start()
    try:
        yield s
    finally:
        s.stop()


def workspace_pid(st: HubStack, user: str, server: str) -> int:
    # the hub's admin sees the local spawner's state (the pid)
    return st.hub("GET", f"/users/{user}").json()["servers"][server]["state"]["pid"]


def memory_cgroup_of(pid: int) -> Path | None:
    """The group the process is in, if it is one of the spawner's workspace groups."""
    text = Path(f"/proc/{pid}/cgroup").read_text()
    groups = machine_memory_groups()
    if groups is None:
        return None
    path = locallimits.own_cgroup(text, groups.version).lstrip("/")
    root = Path("/sys/fs/cgroup") if groups.version == 2 else Path("/sys/fs/cgroup/memory")
    return root / path


def test_a_template_the_project_or_groups_do_not_allow_is_403_with_the_allowed_list(templated_stack):
    st = templated_stack
    st.user_token("tina")
    for profile in ("gpu", "cpu-large", "no-such"):
        r = st.hub("POST", "/users/tina/servers/vision", json={"profile": profile})
        assert r.status_code == 403, r.text
        assert r.json()["message"] == (
            f"Workspace template {profile!r} is not allowed for you in project 'vision'; allowed: cpu-small"
        )
    r = st.hub("POST", "/users/tina/servers/vision", json={"profile": ["cpu-small"]})
    assert r.status_code == 400, r.text
    assert "vision" not in st.hub("GET", "/users/tina").json()["servers"]


def test_a_gpu_template_on_a_machine_without_gpus_is_400(templated_stack):
    if locallimits.count_nvidia_gpus():
        pytest.skip("this machine has NVIDIA GPUs: the GPU template would start")
    st = templated_stack
    st.user_token("gina", groups=["gpu-users"])
    r = st.hub("POST", "/users/gina/servers/vision", json={"profile": "gpu"})
    assert r.status_code == 400, r.text
    assert r.json()["message"] == (
        "Workspace template 'gpu' cannot start here: needs 1 GPU, this machine has none; "
        "GPU templates need the cluster profile or a machine with NVIDIA GPUs"
    )
    assert "vision" not in st.hub("GET", "/users/gina").json()["servers"]


def test_a_one_cpu_template_pins_the_workspace_and_what_it_starts_to_one_cpu(templated_stack):
    st = templated_stack
    token = st.user_token("dora")
    for project in ("misc", "other"):  # a project's workspace opens for its members only
        assert st.api("POST", "/projects", token, json={"slug": project}).status_code == 201
    r = st.hub("POST", "/users/dora/servers/misc", json={})
    assert r.status_code in (201, 202), r.text
    st.wait_ready("dora", "misc")
    pid = workspace_pid(st, "dora", "misc")
    server = psutil.Process(pid)

    env = server.environ()
    assert env["ANIMUS_WORKSPACE_TEMPLATE"] == "cpu-small" and env["TEMPLATE_MARK"] == "small"
    assert (env["CPU_LIMIT"], env["CPU_GUARANTEE"]) == ("1.0", "1.0")
    assert (env["MEM_LIMIT"], env["MEM_GUARANTEE"]) == (str(1024**3), str(1024**3))
    assert len(server.cpu_affinity()) == 1

    # a kernel the workspace starts inherits the CPU and the memory group
    lab = f"{st.url}/user/dora/misc/api/kernels"
    headers = {"Authorization": f"token {token}"}
    r = requests.post(lab, headers=headers, json={"name": "python3"}, timeout=30)
    assert r.status_code == 201, r.text
    kernel_id = r.json()["id"]
    deadline = time.monotonic() + 30
    kernels: list[psutil.Process] = []
    while not kernels and time.monotonic() < deadline:
        kernels = [p for p in server.children(recursive=True) if "ipykernel_launcher" in " ".join(p.cmdline())]
        time.sleep(0.2)
    assert kernels, "the workspace started no kernel process"
    kernel = kernels[0]
    assert kernel.cpu_affinity() == server.cpu_affinity()
    assert kernel.environ()["MEM_LIMIT"] == str(1024**3)

    group = memory_cgroup_of(pid)
    if machine_memory_groups() is not None:
        assert group is not None and group.parent.name == locallimits.GROUP_FOLDER, group
        assert locallimits.MemoryCgroups.limit(group) == 1024**3
        assert memory_cgroup_of(kernel.pid) == group
        assert {pid, kernel.pid} <= set(locallimits.MemoryCgroups.pids(group))
    requests.delete(f"{lab}/{kernel_id}", headers=headers, timeout=30)

    # a second workspace beyond named_server_limit_per_user = 1: the hub's clear message
    r = st.hub("POST", "/users/dora/servers/other", json={})
    assert r.status_code == 400, r.text
    assert "maximum of 1 named servers" in r.json()["message"]

    r = st.hub("DELETE", "/users/dora/servers/misc")
    assert r.status_code in (202, 204), r.text
    deadline = time.monotonic() + 30
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not psutil.pid_exists(pid)
    if group is not None:
        deadline = time.monotonic() + 10
        while group.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not group.exists(), "the workspace's memory cgroup was left behind"
