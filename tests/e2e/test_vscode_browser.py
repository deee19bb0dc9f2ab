"""VS Code in a browser: log in, open a project's workspace, the launcher's VS Code card, the workbench.

Chromium (Debian's, through Playwright) against a real embedded stack; screenshots go
to test-artifacts/e2e/.
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Error as PlaywrightError
from stack import STACK_API_CONFIG, HubStack

from animus_hub.userfile import UserFile

pytestmark = pytest.mark.timeout(600)


def shot(page, artifacts_dir, name: str) -> None:
    page.screenshot(path=str(artifacts_dir / name))


def test_vscode_opens_in_the_browser_on_the_project_folder(tmp_path, browser, artifacts_dir):
    st = HubStack(tmp_path / "stack", api_config=STACK_API_CONFIG, idle_timeout=0, ssh_port=0)
    st.start()
    try:
        UserFile(st.root / "users.json").set_user("vicky", password="vs-code-pass-1", groups=[], admin=False)
        page = browser.pages[0] if browser.pages else browser.new_page()
        page.goto(f"{st.url}/hub/login")
        page.fill("#username_input", "vicky")
        page.fill("#password_input", "vs-code-pass-1")
        page.click("#login_submit")
        # the embedded profile's two workspace templates: a plain "Start" takes the pre-selected one
        page.wait_for_selector("#animus-profile", timeout=60_000)
        page.click("#spawn_form button[type=submit]")
        page.wait_for_url("**/user/vicky/**", timeout=240_000)
        token = st.user_token("vicky")
        assert st.api("POST", "/projects", token, json={"slug": "vs-web"}).status_code == 201
        st.open_workspace("vicky", "vs-web")
        # JupyterLab of the project's workspace: the launcher has a VS Code card
        page.goto(f"{st.url}/user/vicky/vs-web/lab")
        page.wait_for_selector("#jp-main-dock-panel", timeout=240_000)
        card = page.locator(".jp-LauncherCard", has_text="VS Code").first
        try:
            card.wait_for(state="visible", timeout=60_000)
        except PlaywrightError:
            shot(page, artifacts_dir, "error-vscode-launcher.png")
            raise AssertionError("JupyterLab's launcher shows no VS Code card") from None
        shot(page, artifacts_dir, "vscode-01-launcher.png")
        # the workbench, opened on the project's folder
        page.goto(f"{st.url}/user/vicky/vs-web/vscode/")
        try:
            page.wait_for_selector(".monaco-workbench", timeout=240_000)
            page.wait_for_selector(".explorer-folders-view, .pane-header", timeout=120_000)
        except PlaywrightError:
            shot(page, artifacts_dir, "error-vscode-workbench.png")
            raise AssertionError(f"the VS Code workbench did not render\n{st.log_tail()}") from None
        time.sleep(2)  # let the explorer settle for the picture
        shot(page, artifacts_dir, "vscode-02-workbench.png")
        assert "vs-web" in page.title().lower() or page.locator("text=VS-WEB").count() > 0, page.title()
    finally:
        st.stop()
