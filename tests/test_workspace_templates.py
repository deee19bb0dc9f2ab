"""Workspace templates per project, filtered by groups; the per-user workspace limit.

The rule (`templates_for`) is checked on its own, then the local spawner against a
real hub: a template the person may not use is a 403 naming the allowed ones, a
chosen template reaches the workspace's environment, a workspace beyond the limit
is refused with the hub's message.
"""

from __future__ import annotations

import time

import psutil
import pytest
from stack import STACK_API_CONFIG, HubStack

from animus_hub.spawner import TemplateNotAllowed, check_templates, pick_template, profile_list_for, templates_for

pytestmark = pytest.mark.timeout(300)

TEMPLATES = [
    {
        "slug": "cpu-small",
        "display_name": "CPU small",
        "description": "1 CPU, 1 GB",
        "default": True,
        "kubespawner_override": {"cpu_limit": 1, "mem_limit": "1G", "environment": {"TEMPLATE_MARK": "small"}},
    },
    {"slug": "cpu-large", "display_name": "CPU large", "kubespawner_override": {"cpu_limit": 4, "mem_limit": "8G"}},
    {
        "slug": "gpu",
        "display_name": "GPU",
        "allowed_groups": ["gpu-users"],
        "kubespawner_override": {
            "cpu_limit": 8,
            "extra_resource_limits": {"nvidia.com/gpu": "1"},
            "environment": {"TEMPLATE_MARK": "gpu"},
        },
    },
]


def slugs(templates):
    return [t["slug"] for t in templates]


def test_projects_allow_templates_and_groups_filter_them():
    per_project = {"vision": ["cpu-small", "cpu-large", "gpu"], "*": ["cpu-small"]}
    assert slugs(templates_for(TEMPLATES, per_project, "vision", ["gpu-users"])) == ["cpu-small", "cpu-large", "gpu"]
    assert slugs(templates_for(TEMPLATES, per_project, "vision", ["others"])) == ["cpu-small", "cpu-large"]
    assert slugs(templates_for(TEMPLATES, per_project, "elsewhere", ["gpu-users"])) == ["cpu-small"]
    # no per-project list: every template, still filtered by groups
    assert slugs(templates_for(TEMPLATES, {}, "any", [])) == ["cpu-small", "cpu-large"]
    # a project missing from the list without "*": nothing
    assert templates_for(TEMPLATES, {"vision": ["gpu"]}, "other", ["gpu-users"]) == []


def test_the_choice_is_the_default_or_an_allowed_slug():
    allowed = templates_for(TEMPLATES, {}, "p", [])
    assert pick_template(allowed, None)["slug"] == "cpu-small"
    assert pick_template(allowed, "cpu-large")["slug"] == "cpu-large"
    with pytest.raises(TemplateNotAllowed) as e:
        pick_template(allowed, "gpu")
    assert e.value.allowed == ["cpu-small", "cpu-large"]


def test_the_kubespawner_profile_list_shape_drops_only_allowed_groups():
    profiles = profile_list_for(TEMPLATES, {"*": ["cpu-small", "gpu"]}, "p", ["gpu-users"])
    assert [p["slug"] for p in profiles] == ["cpu-small", "gpu"]
    assert all("allowed_groups" not in p for p in profiles)
    assert profiles[1]["kubespawner_override"]["extra_resource_limits"] == {"nvidia.com/gpu": "1"}


@pytest.mark.parametrize(
    "bad", [[{"display_name": "no slug"}], [{"slug": "a"}, {"slug": "a"}], [{"slug": "a", "allowed_groups": "g"}]]
)
def test_bad_template_definitions_are_refused(bad):
    with pytest.raises(ValueError):
        check_templates(bad)


HUB_CONFIG = f"""
c.AnimusLocalSpawner.workspace_templates = {TEMPLATES!r}
c.AnimusLocalSpawner.project_templates = {{"vision": ["cpu-small", "gpu"], "*": ["cpu-small"]}}
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


def wait_ready(st: HubStack, user: str, server: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = st.hub("GET", f"/users/{user}").json()["servers"].get(server)
        if model and model["ready"]:
            return model
        time.sleep(0.5)
    raise AssertionError(f"{user}/{server} did not start:\n{st.log_tail()}")


def workspace_env(st: HubStack, user: str, server: str) -> dict[str, str]:
    r = st.hub("GET", f"/users/{user}", params={"include_stopped_servers": "0"})
    # the hub's admin sees the local spawner's state (the pid)
    pid = r.json()["servers"][server]["state"]["pid"]
    return psutil.Process(pid).environ()


def test_a_template_the_project_or_groups_do_not_allow_is_403_with_the_allowed_list(templated_stack):
    st = templated_stack
    st.user_token("tina")
    for profile in ("gpu", "cpu-large"):
        r = st.hub("POST", "/users/tina/servers/vision", json={"profile": profile})
        assert r.status_code == 403, r.text
        message = r.json()["message"]
        assert f"{profile!r} is not allowed" in message and "allowed: cpu-small" in message, message
    assert "vision" not in st.hub("GET", "/users/tina").json()["servers"]


def test_an_allowed_template_reaches_the_workspace_and_the_limit_refuses_a_second(templated_stack):
    st = templated_stack
    st.user_token("gina", groups=["gpu-users"])
    r = st.hub("POST", "/users/gina/servers/vision", json={"profile": "gpu"})
    assert r.status_code in (201, 202), r.text
    wait_ready(st, "gina", "vision")
    env = workspace_env(st, "gina", "vision")
    assert (env["ANIMUS_WORKSPACE_TEMPLATE"], env["TEMPLATE_MARK"], env["CPU_LIMIT"]) == ("gpu", "gpu", "8.0")
    assert env["ANIMUS_WORKSPACE_DIR"].endswith("/workspaces/gina/vision")
    # a second workspace beyond named_server_limit_per_user = 1: the hub's clear message
    r = st.hub("POST", "/users/gina/servers/other", json={})
    assert r.status_code == 400, r.text
    assert "maximum of 1 named servers" in r.json()["message"]
    assert st.hub("DELETE", "/users/gina/servers/vision").status_code in (202, 204)


def test_no_choice_starts_the_default_template(templated_stack):
    st = templated_stack
    st.user_token("dora")
    r = st.hub("POST", "/users/dora/servers/misc", json={})
    assert r.status_code in (201, 202), r.text
    wait_ready(st, "dora", "misc")
    env = workspace_env(st, "dora", "misc")
    assert (env["ANIMUS_WORKSPACE_TEMPLATE"], env["TEMPLATE_MARK"], env["MEM_LIMIT"]) == (
        "cpu-small",
        "small",
        str(1024**3),
    )
    assert st.hub("DELETE", "/users/dora/servers/misc").status_code in (202, 204)
