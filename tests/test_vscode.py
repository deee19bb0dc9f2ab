"""VS Code in the browser: code-server behind jupyter-server-proxy, in a workspace started through the hub.

./dev setup installs code-server into .venv/code-server (linked into .venv/bin, which
leads a workspace's PATH); the test fails when it is missing, since then workspaces
have no VS Code.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import psutil
import pytest
from stack import STACK_API_CONFIG, HubStack

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
def vscode_stack(tmp_path_factory):
    s = HubStack(tmp_path_factory.mktemp("vscode"), api_config=STACK_API_CONFIG, idle_timeout=0, ssh_port=0)
    s.start()
    try:
        yield s
    finally:
        s.stop()


def test_code_server_is_installed_beside_the_workspace_python():
    found = shutil.which("code-server", path=str(Path(sys.executable).parent))
    assert found, "code-server is not in .venv/bin: run ./dev setup (or unset ANIMUS_SKIP_CODE_SERVER)"


def test_vscode_opens_on_the_project_folder_with_a_launcher_card(vscode_stack):
    st = vscode_stack
    token = st.user_token("vera")
    assert st.api("POST", "/projects", token, json={"slug": "vs-proj"}).status_code == 201
    st.open_workspace("vera", "vs-proj")
    base = f"{st.url}/user/vera/vs-proj"
    headers = {"Authorization": f"token {token}"}
    # the launcher card: jupyter-server-proxy announces VS Code to JupyterLab's launcher
    info = st.http.get(f"{base}/server-proxy/servers-info", headers=headers, timeout=30)
    assert info.status_code == 200, info.text
    vscode = next(s for s in info.json()["server_processes"] if s["name"] == "vscode")
    assert vscode["launcher_entry"]["enabled"] and vscode["launcher_entry"]["title"]
    # the workbench itself (code-server starts on the first request)
    page = st.http.get(f"{base}/vscode/", headers=headers, timeout=300)
    assert page.status_code == 200, page.text[:500]
    assert "code/didStartRenderer" in page.text and "workbench" in page.text
    # code-server runs in the project's folder, with the workspace's home for its files
    procs = [p for p in psutil.process_iter(["cmdline"]) if any("code-server" in a for a in (p.info["cmdline"] or []))]
    mine = [p for p in procs if p.environ().get("JUPYTERHUB_USER") == "vera"]
    assert mine, "no code-server process for vera"
    env = mine[0].environ()
    folder = str(st.root / "workspaces" / "vera" / "vs-proj")
    assert env["CODE_WORKINGDIR"] == folder and folder in mine[0].cmdline()
    assert env["XDG_DATA_HOME"].startswith(str(st.root / "workspaces" / "vera"))
    # stopping the workspace stops code-server and its helpers too
    pids = [p.pid for p in mine]
    assert st.hub("DELETE", "/users/vera/servers/vs-proj").status_code in (202, 204)
    deadline = time.monotonic() + 60
    while any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids):
        assert time.monotonic() < deadline, "code-server outlived its workspace"
        time.sleep(0.5)
