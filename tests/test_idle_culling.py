"""Idle culling: jupyterhub-idle-culler, a hub-managed service of the embedded profile.

With a short timeout, a workspace nobody uses is stopped; one with an open SSH
session (the gateway records activity on the hub) keeps running.
"""

from __future__ import annotations

import asyncio
import time

import asyncssh
import pytest
from stack import STACK_API_CONFIG, HubStack

pytestmark = pytest.mark.timeout(300)

IDLE_TIMEOUT = 20


@pytest.fixture(scope="module")
def culling_stack(tmp_path_factory):
    s = HubStack(
        tmp_path_factory.mktemp("culling"),
        api_config=STACK_API_CONFIG,
        env={"ANIMUS_SSH_ACTIVITY_INTERVAL": "3"},
        idle_timeout=IDLE_TIMEOUT,
        idle_cull_every=3,
    )
    s.start()
    try:
        yield s
    finally:
        s.stop()


def servers(st: HubStack, user: str) -> dict:
    return st.hub("GET", f"/users/{user}").json()["servers"]


def wait_ready(st: HubStack, user: str, server: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = servers(st, user).get(server)
        if model and model["ready"]:
            return
        time.sleep(0.5)
    raise AssertionError(f"{user}/{server} did not start:\n{st.log_tail()}")


def test_an_idle_workspace_is_culled_and_one_in_use_over_ssh_is_not(culling_stack):
    st = culling_stack
    # the idle one: started, then left alone
    ivan = st.user_token("idle-ivan")
    assert st.api("POST", "/projects", ivan, json={"slug": "lab"}).status_code == 201
    assert st.hub("POST", "/users/idle-ivan/servers/lab", json={}).status_code in (201, 202)
    # the busy one: an SSH session stays open (the gateway starts the workspace itself)
    token = st.user_token("busy-berta")
    assert st.api("POST", "/projects", token, json={"slug": "busy-proj"}).status_code == 201
    key = asyncssh.generate_private_key("ssh-ed25519")
    r = st.api("POST", "/users/me/ssh-keys", token, json={"public_key": key.export_public_key().decode()})
    assert r.status_code == 201, r.text
    wait_ready(st, "idle-ivan", "lab")

    async def hold_session() -> tuple[bool, bool]:
        async with asyncssh.connect(
            "127.0.0.1",
            st.settings.ssh_port,
            username="busy-berta+busy-proj",
            client_keys=[key],
            known_hosts=None,
            agent_path=None,
            preferred_auth="publickey",
        ) as conn:
            assert (await conn.run("true", timeout=150)).exit_status == 0
            deadline = time.monotonic() + IDLE_TIMEOUT * 4
            idle_gone = False
            while time.monotonic() < deadline:
                await asyncio.sleep(2)
                if "lab" not in servers(st, "idle-ivan") or not servers(st, "idle-ivan")["lab"]["ready"]:
                    idle_gone = True
                    # and past the timeout for the busy one too
                    await asyncio.sleep(IDLE_TIMEOUT + 6)
                    break
            busy = servers(st, "busy-berta").get("busy-proj")
            return idle_gone, bool(busy and busy["ready"])

    idle_gone, busy_running = asyncio.run(hold_session())
    assert idle_gone, f"the idle workspace was not culled:\n{st.log_tail()}"
    assert busy_running, f"the workspace in use over SSH was culled:\n{st.log_tail()}"
    log = st.log_path.read_text(errors="replace")
    assert "Culling server idle-ivan/lab" in log and "Culling server busy-berta" not in log
