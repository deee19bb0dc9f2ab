"""Acceptance: `animus up` brings Animus up; logging in through the browser offers
the workspace templates with the small one pre-selected, and a plain "Start" opens
JupyterLab with the Animus panel; `animus projects create demo` typed in that
JupyterLab's terminal works with no configuration and the audit export shows it;
Ctrl-C stops everything; a restart keeps the data and does not print the admin
password again.

Screenshots go to test-artifacts/e2e/ at the repository root.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import requests
from e2e_helpers import (
    ANSI,
    READ_TERMINAL_JS,
    AnimusUp,
    command_done,
    describe,
    free_port,
    processes_of,
    screenshot,
    wait_for,
)
from playwright.sync_api import Error as PlaywrightError

pytestmark = pytest.mark.e2e

API = "/services/animus/api/v1"
LABEXTENSION = "@animus-datalab/labextension"


def audit_lines(path: Path) -> list[dict]:
    try:
        text = path.read_text()
    except OSError:
        return []
    events = []
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            return []  # still being written
    return events


def assert_stops_cleanly(run: AnimusUp, data_dir: Path) -> None:
    started = time.monotonic()
    code = run.interrupt(timeout=60)
    elapsed = time.monotonic() - started
    assert code is not None, f"`animus up` still running 60 s after SIGINT\n{run.tail()}"
    assert code == 0, f"`animus up` exited {code} after SIGINT\n{run.tail()}"
    left = processes_of(data_dir)
    assert not left, (
        f"processes left behind after `animus up` stopped ({elapsed:.1f} s):\n{describe(left)}\n{run.tail()}"
    )


@pytest.mark.timeout(1200)
def test_up_login_terminal_audit_restart(tmp_path, browser, animus_runs, artifacts_dir):
    data_dir = (tmp_path / "animus-data").resolve()
    port = free_port()

    # --- 1. the first start prints the admin's password, then "Animus is up" -----------
    run1 = AnimusUp(data_dir, port, tmp_path / "animus-up-1.log")
    animus_runs.append(run1)

    run1.start()
    url = run1.wait_up()
    assert url == f"http://127.0.0.1:{port}", run1.tail()
    creds = run1.admin_password()
    assert creds, f"no 'First start: ... password' line in the output of the first start:\n{run1.tail()}"
    user, password = creds
    assert user == "admin"

    # --- 2. log in through the browser: JupyterLab with the Animus panel -------------
    page = browser.pages[0] if browser.pages else browser.new_page()
    page.goto(f"{url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", password)
    screenshot(page, artifacts_dir, tmp_path, "01-login.png")
    page.click("#login_submit")
    # the embedded profile offers two workspace templates: the spawn form pre-selects the
    # default one, so a plain "Start" starts it
    try:
        page.wait_for_selector("#animus-profile", timeout=60_000)
    except PlaywrightError:
        screenshot(page, artifacts_dir, tmp_path, "error-spawn-form.png")
        raise AssertionError(f"no workspace template choice after login (at {page.url})\n{run1.tail()}") from None
    assert page.locator("#animus-profile").input_value() == "cpu-small"
    screenshot(page, artifacts_dir, tmp_path, "01b-workspace-template.png")
    page.click("#spawn_form button[type=submit]")
    try:
        page.wait_for_selector("#jp-main-dock-panel", timeout=240_000)
        page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=120_000)
    except PlaywrightError:
        screenshot(page, artifacts_dir, tmp_path, "error-login.png")
        raise AssertionError(f"JupyterLab did not open after login (at {page.url})\n{run1.tail()}") from None
    lab = f"{url}/user/{user}"
    assert page.url.startswith(lab + "/lab"), page.url

    config = json.loads(page.locator("#jupyter-config-data").text_content())
    federated = [e.get("name") for e in config.get("federated_extensions", [])]
    if LABEXTENSION not in federated:
        pytest.fail(
            f"the JupyterLab extension {LABEXTENSION} is not installed in this environment "
            f"(`jupyter labextension list`; it is built into the wheel from labextension/); "
            f"JupyterLab loaded: {federated}",
            pytrace=False,
        )
    tab = page.locator('.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="animus-sidebar"]')
    try:
        tab.wait_for(state="visible", timeout=30_000)
    except PlaywrightError:
        screenshot(page, artifacts_dir, tmp_path, "error-sidebar.png")
        raise AssertionError("JupyterLab's left sidebar has no Animus tab (data-id=animus-sidebar)") from None
    tab.click()
    panel = page.locator("#animus-sidebar")
    panel.wait_for(state="visible")
    assert panel.locator("h2").first.text_content().strip() == "Animus"
    try:
        page.locator(".jp-Launcher").first.wait_for(state="visible", timeout=15_000)
    except PlaywrightError:
        pass  # the launcher is only for the picture
    screenshot(page, artifacts_dir, tmp_path, "02-jupyterlab.png")

    # --- 3. the terminal: `animus projects create demo`, then the audit export -------
    page.locator(".lm-MenuBar-item", has_text="File").first.click()
    page.locator(".lm-Menu-item", has_text="New").first.hover()
    page.locator('.lm-Menu-item[data-command="terminal:create-new"]').click()
    terminal = page.locator(".jp-Terminal").last
    terminal.wait_for(state="visible")
    names = wait_for(
        lambda: [t["name"] for t in page.request.get(f"{lab}/api/terminals").json()],
        30,
        what="the terminal session",
    )
    ws_url = f"ws://127.0.0.1:{port}/user/{user}/terminals/websocket/{names[-1]}"

    def terminal_text(ms: int = 1500) -> str:
        result = page.evaluate(READ_TERMINAL_JS, [ws_url, ms])
        assert not result["error"], f"cannot read the terminal through {ws_url}"
        return ANSI.sub("", result["out"]).replace("\r", "")

    wait_for(
        lambda: re.search(r"[#$] ?$", terminal_text().rstrip("\n")),
        60,
        what="a shell prompt",
    )
    try:
        terminal.click()
        page.keyboard.type("animus projects create demo")
        page.keyboard.press("Enter")

        text = wait_for(
            lambda: command_done(terminal_text(), "animus projects create demo"),
            90,
            interval=1,
            what="`animus projects create demo` to finish",
            detail=lambda: f"terminal shows:\n{terminal_text()[-2000:]}",
        )
        assert "created project demo" in text, (
            f"`animus projects create demo` failed in the JupyterLab terminal; it printed:\n{text[-2000:]}"
        )

        export_cmd = "animus audit export --project demo > audit-demo.jsonl"
        page.keyboard.type(export_cmd)
        page.keyboard.press("Enter")
        export = data_dir / "workspaces" / user / "audit-demo.jsonl"

        def created_event():
            return next(
                (e for e in audit_lines(export) if e.get("action") == "project.create" and e.get("project") == "demo"),
                None,
            )

        event = wait_for(
            created_event,
            90,
            interval=1,
            what=f"a project.create event for demo in {export}",
        )
        export_out = wait_for(
            lambda: command_done(terminal_text(), export_cmd),
            30,
            what="`animus audit export` to finish",
        )
    finally:
        time.sleep(1)  # let the canvas catch up for the screenshot
        screenshot(page, artifacts_dir, tmp_path, "03-terminal.png")
    assert event["actor"] == user, event
    assert export_out.strip() == "", f"`animus audit export` printed:\n{export_out}"

    # an API token through the hub's REST API, with the browser's login (for after the restart)
    xsrf = next((c["value"] for c in browser.cookies(f"{url}/hub/api/") if c["name"] == "_xsrf"), "")
    r = page.request.post(
        f"{url}/hub/api/users/{user}/tokens",
        data={"note": "e2e", "expires_in": 3600},
        headers={"X-XSRFToken": xsrf},
    )
    assert r.status == 201, f"creating a token: {r.status} {r.text()}"
    token = r.json()["token"]
    auth = {"Authorization": f"token {token}"}
    r = requests.get(f"{url}{API}/projects/demo", headers=auth, timeout=30)
    assert r.status_code == 200 and r.json().get("slug") == "demo", (
        r.status_code,
        r.text[:500],
    )

    # --- 4. Ctrl-C stops everything ----------------------------------------------------
    assert_stops_cleanly(run1, data_dir)
    assert "Animus stopped." in run1.output()

    # --- 5. a restart keeps the data and does not print the password again -------------
    run2 = AnimusUp(data_dir, port, tmp_path / "animus-up-2.log")
    animus_runs.append(run2)
    run2.start()
    assert run2.wait_up() == url
    out2 = run2.output()
    assert "First start" not in out2 and password not in out2, f"the restart printed the admin password:\n{run2.tail()}"
    r = requests.get(f"{url}{API}/projects/demo", headers=auth, timeout=30)
    assert r.status_code == 200 and r.json().get("slug") == "demo", (
        r.status_code,
        r.text[:500],
    )
    assert_stops_cleanly(run2, data_dir)
