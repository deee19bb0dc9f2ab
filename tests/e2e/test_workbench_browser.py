"""Acceptance of the workbench, in Chromium against `animus up`.

A data scientist (dana, a contributor of project churn) logs in; from the Animus
panel of her first workspace she opens churn's workspace; its sidebar lists churn's
datasets and runs; comparing two runs draws their loss curves; the Models panel shows
the approval of the promotion she requested disabled, with the policy's reason (four
eyes); VS Code opens on the project's folder; a terminal's `animus whoami` shows her
and the project. Screenshots go to test-artifacts/e2e/workbench-*.png.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from e2e_helpers import ANSI, READ_TERMINAL_JS, AnimusUp, command_done, free_port, screenshot, wait_for
from playwright.sync_api import Error as PlaywrightError

import animus.datasets as ads
import animus.models as am
from animus.client import Client
from animus.tracking import Run

pytestmark = pytest.mark.e2e

API = "/services/animus/api/v1"
PROJECT = "churn"
DANA = ("dana", "dana-e2e-password-1")
COMMIT = "0123456789abcdef0123456789abcdef01234567"
POLICY = """\
version: 1
description: two people promote a model
transitions:
  validated:
    roles: [contributor, maintainer, owner]
  approved:
    roles: [contributor, maintainer, owner]
    approvers: 1
    approver_roles: [maintainer, owner]
    four_eyes: true
"""
MLMODEL = """artifact_path: model
flavors:
  python_function:
    loader_module: mlflow.sklearn
    model_path: model.pkl
"""


def hub_token(url: str, user: str, password: str) -> str:
    """Log in to the hub as a browser would (form and _xsrf cookie); a new API token of that user."""
    s = requests.Session()
    s.get(f"{url}/hub/login", timeout=30)
    xsrf = s.cookies.get("_xsrf", "")
    r = s.post(
        f"{url}/hub/login?next=/hub/home",
        data={"username": user, "password": password, "_xsrf": xsrf},
        allow_redirects=False,
        timeout=30,
    )
    assert r.status_code == 302, f"login of {user}: {r.status_code} {r.text[:300]}"
    xsrf = s.cookies.get("_xsrf", xsrf)
    r = s.post(
        f"{url}/hub/api/users/{user}/tokens",
        json={"note": "e2e workbench", "expires_in": 3600},
        headers={"X-XSRFToken": xsrf},
        timeout=30,
    )
    assert r.status_code == 201, f"token of {user}: {r.status_code} {r.text[:300]}"
    return r.json()["token"]


def seed_project(url: str, admin: str, dana: str, tmp_path: Path) -> dict:
    """Project churn with dana as contributor: a dataset, two runs with loss curves, a model version
    whose promotion to approved dana requested (pending one approval, four eyes)."""
    api = Client(url=url + API, token=admin)
    api.create_project(PROJECT, "Churn prediction")
    api.add_member(PROJECT, DANA[0], "contributor")
    api.request("PUT", f"/projects/{PROJECT}/promotion-policy", json_body={"source": POLICY})
    c = Client(url=url + API, token=dana)
    data = tmp_path / "customers"
    data.mkdir()
    (data / "customers.csv").write_text(
        "customer_id,tenure,churned\n" + "".join(f"{i},{i % 48},{int(i % 5 == 0)}\n" for i in range(200))
    )
    ads.push("customers", data, project=PROJECT, client=c, progress=False, message="first export")
    runs = {}
    for name, speed in (("baseline", 0.05), ("tuned", 0.12)):
        body = {"name": name, "code": {"repo_url": "https://git.example.com/ml/churn.git", "commit_sha": COMMIT}}
        run = Run(c, PROJECT, c.request("POST", f"/projects/{PROJECT}/runs", json_body=body))
        run.log_params({"model": "gbm", "learning_rate": speed})
        for step in range(30):
            run.log_metric("loss", 1.0 / (1.0 + speed * step), step=step)
        run.log_metric("accuracy", 0.8 + speed)
        model_dir = tmp_path / f"model-{name}"
        model_dir.mkdir()
        (model_dir / "MLmodel").write_text(MLMODEL)
        (model_dir / "model.pkl").write_bytes(name.encode() * 100)
        run.log_artifacts(model_dir, artifact_path="model")
        run.end()
        runs[name] = run.id
    am.create_model("churn-clf", PROJECT, "churn classifier", client=c)
    am.register("churn-clf", runs["tuned"], "model", PROJECT, client=c)
    am.transition("churn-clf", 1, "validated", "ready for review", PROJECT, client=c)
    outcome = am.transition("churn-clf", 1, "approved", "beats the baseline", PROJECT, client=c)
    assert outcome["outcome"] == "pending", outcome
    return runs


def open_sidebar(page) -> None:
    tab = page.locator('.jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id="animus-sidebar"]')
    tab.wait_for(state="visible", timeout=60_000)
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    page.locator("#animus-sidebar").wait_for(state="visible")


def start_workspace(page, what: str, up: AnimusUp) -> None:
    """Wait for JupyterLab, pressing Start on the template form if the hub shows one (several templates)."""
    try:
        page.wait_for_selector("#jp-main-dock-panel, #animus-profile", timeout=240_000)
        if page.locator("#animus-profile").count():
            assert page.locator("#animus-profile").input_value() == "cpu-small"  # the default, preselected
            page.click("#spawn_form button[type=submit]")
        page.wait_for_selector("#jp-main-dock-panel", timeout=240_000)
        page.wait_for_selector("#jupyterlab-splash", state="detached", timeout=120_000)
    except PlaywrightError:
        page.screenshot(path=str(up.log_path.parent / f"error-{what}.png"))
        raise AssertionError(f"{what} did not open (at {page.url})\n{up.tail()}") from None


def show_sections(page, *names: str) -> None:
    """Expand the sidebar's sections named (by their title), collapse the others."""
    for title in page.locator("#animus-sidebar .lm-AccordionPanel-title").all():
        wanted = title.text_content().strip().lower() in names
        if wanted != (title.get_attribute("aria-expanded") == "true"):
            title.click()


def section(page, name: str):
    return page.locator(f'#animus-sidebar .jp-AnimusSection[data-section="{name}"]')


def canvas_ink(page, selector: str) -> int:
    """How many pixels of the first canvas under `selector` are drawn (not transparent)."""
    return page.evaluate(
        """(sel) => {
            const c = document.querySelector(sel + ' canvas');
            if (!c) return -1;
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0;
            for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
            return n;
        }""",
        selector,
    )


@pytest.mark.timeout(1500)
def test_workbench_in_the_browser(tmp_path, browser, animus_runs, artifacts_dir):
    data_dir = (tmp_path / "animus-data").resolve()
    port = free_port()
    up = AnimusUp(data_dir, port, tmp_path / "animus-up.log")
    animus_runs.append(up)
    up.start()
    url = up.wait_up()
    admin_user, admin_password = up.admin_password()
    subprocess.run(
        [
            str(Path(sys.executable).parent / "animus-hub"),
            "users",
            "add",
            DANA[0],
            "--password-stdin",
            "--data-dir",
            str(data_dir),
        ],
        input=DANA[1] + "\n",
        text=True,
        check=True,
        capture_output=True,
    )
    admin = hub_token(url, admin_user, admin_password)
    dana = hub_token(url, *DANA)
    runs = seed_project(url, admin, dana, tmp_path)

    def shot(page, name: str) -> None:
        screenshot(page, artifacts_dir, tmp_path, f"workbench-{name}.png")

    # --- log in: dana's first workspace, not bound to a project ------------------------------
    page = browser.pages[0] if browser.pages else browser.new_page()
    page.goto(f"{url}/hub/login")
    page.fill("#username_input", DANA[0])
    page.fill("#password_input", DANA[1])
    page.click("#login_submit")
    start_workspace(page, "the first workspace", up)
    open_sidebar(page)
    projects = section(page, "project")
    link = projects.locator(f'[data-animus="project-list"] a:has-text("{PROJECT}")')
    link.wait_for(state="visible", timeout=60_000)
    shot(page, "01-first-workspace")

    # --- open project churn's workspace from the Project panel -------------------------------
    with browser.expect_page() as opened:
        link.click()
    lab = opened.value
    start_workspace(lab, "churn's workspace", up)
    assert f"/user/{DANA[0]}/{PROJECT}/lab" in lab.url, lab.url
    open_sidebar(lab)
    current = section(lab, "project").locator('[data-animus="project-name"]')
    current.wait_for(state="visible", timeout=60_000)
    assert current.text_content().strip() == "Churn prediction"
    assert "dana (contributor)" in section(lab, "project").locator('[data-animus="project-user"]').text_content()

    # --- the sidebar lists churn's datasets and runs -----------------------------------------
    datasets = section(lab, "datasets")
    datasets.locator('[data-animus="dataset"]', has_text="customers").wait_for(timeout=60_000)
    experiments = section(lab, "experiments")
    for name in ("baseline", "tuned"):
        experiments.locator('[data-animus="run-name"]', has_text=name).wait_for(timeout=60_000)
    show_sections(lab, "project", "datasets", "experiments")
    try:  # JupyterLab opens its launcher once the file browser is restored: only for the picture
        lab.locator(".jp-Launcher").first.wait_for(state="visible", timeout=30_000)
    except PlaywrightError:
        pass
    shot(lab, "02-project-sidebar")
    # a dataset's versions, schema and the loading snippet
    show_sections(lab, "datasets")
    datasets.locator('[data-animus="dataset"]', has_text="customers").click()
    version = datasets.locator('[data-animus="dataset-version"]')
    version.wait_for(timeout=30_000)
    assert "customer_id" in version.text_content() and "200 rows" in version.text_content()
    shot(lab, "03-dataset")

    # --- a filter with a mistake: the API's message, with where the mistake is ------------------
    show_sections(lab, "experiments")
    box = experiments.locator('[data-animus="run-filter"]')
    box.fill("metrics.loss <")
    box.press("Enter")
    message = experiments.locator(".jp-AnimusSection-message.jp-mod-error")
    message.wait_for(timeout=30_000)
    assert "position" in message.text_content() or "expected" in message.text_content(), message.text_content()
    box.fill("metrics.loss < 0.3")
    box.press("Enter")
    message.wait_for(state="detached", timeout=30_000)
    experiments.locator('[data-animus="run-name"]', has_text="baseline").wait_for(state="detached", timeout=30_000)
    assert experiments.locator('[data-animus="run-name"]').all_text_contents() == ["tuned"]
    box.fill("")
    box.press("Enter")
    experiments.locator('[data-animus="run-name"]', has_text="baseline").wait_for(timeout=30_000)

    # --- compare the two runs: a chart with both -----------------------------------------------
    for name in ("baseline", "tuned"):
        experiments.locator(f'[data-animus="run-select"][data-run="{runs[name]}"]').check()
    experiments.locator('[data-animus="compare"]').click()
    chart = experiments.locator('[data-animus="chart"][data-metric="loss"]')
    chart.wait_for(timeout=30_000)
    chart.scroll_into_view_if_needed()
    legend = chart.locator(".u-legend").text_content()
    assert "baseline" in legend and "tuned" in legend, legend
    ink = wait_for(
        lambda: max(canvas_ink(lab, '#animus-sidebar [data-animus="chart"][data-metric="loss"]'), 0),
        10,
        what="the loss chart to be drawn",
    )
    assert ink > 200, f"the chart canvas is (nearly) empty: {ink} pixels drawn"
    shot(lab, "04-compare")

    # --- the promotion dana requested: her approval is disabled, with the policy's reason --------
    show_sections(lab, "models")
    models = section(lab, "models")
    models.locator('[data-animus="model"]', has_text="churn-clf").click()
    approve = models.locator('[data-animus="promotion-action"][data-action="approve"]')
    approve.wait_for(timeout=30_000)
    approve.scroll_into_view_if_needed()
    assert approve.locator("button").is_disabled()
    reason = approve.locator('[data-animus="promotion-reason"]').text_content()
    assert "four eyes" in reason and "someone else" in reason, reason
    shot(lab, "05-promotion")

    # --- VS Code on the project's folder -----------------------------------------------------------
    show_sections(lab, "project")
    with browser.expect_page() as vs:
        section(lab, "project").locator("button", has_text="Open VS Code").click()
    code = vs.value
    try:
        code.wait_for_selector(".monaco-workbench", timeout=240_000)
        code.wait_for_selector(".explorer-folders-view, .pane-header", timeout=120_000)
    except PlaywrightError:
        shot(code, "error-vscode")
        raise AssertionError(f"VS Code did not open (at {code.url})\n{up.tail()}") from None
    assert code.url.startswith(f"{url}/user/{DANA[0]}/{PROJECT}/vscode/"), code.url
    wait_for(
        lambda: PROJECT in code.title().lower() or code.locator(f"text={PROJECT.upper()}").count() > 0,
        60,
        what="VS Code to show the project's folder",
        detail=code.title,
    )
    time.sleep(2)  # let the explorer settle for the picture
    shot(code, "06-vscode")
    code.close()

    # --- a terminal: animus whoami shows dana and churn --------------------------------------------
    section(lab, "project").locator("button", has_text="New terminal").click()
    terminal = lab.locator(".jp-Terminal").last
    terminal.wait_for(state="visible", timeout=60_000)
    base = f"{url}/user/{DANA[0]}/{PROJECT}"
    names = wait_for(
        lambda: [t["name"] for t in lab.request.get(f"{base}/api/terminals").json()], 30, what="a terminal"
    )
    ws_url = f"ws://127.0.0.1:{port}/user/{DANA[0]}/{PROJECT}/terminals/websocket/{names[-1]}"

    def terminal_text() -> str:
        result = lab.evaluate(READ_TERMINAL_JS, [ws_url, 1500])
        assert not result["error"], f"cannot read the terminal through {ws_url}"
        return ANSI.sub("", result["out"]).replace("\r", "")

    wait_for(lambda: terminal_text().rstrip("\n").endswith(("$", "#", "$ ", "# ")), 60, what="a shell prompt")
    terminal.click()
    lab.keyboard.type("animus whoami")
    lab.keyboard.press("Enter")
    out = wait_for(
        lambda: command_done(terminal_text(), "animus whoami"),
        60,
        interval=1,
        what="`animus whoami` to finish",
        detail=lambda: terminal_text()[-2000:],
    )
    time.sleep(1)
    shot(lab, "07-terminal")
    assert "user:    dana" in out and "project: churn" in out, out

    # --- the dark theme: the panels follow it ------------------------------------------------------
    colours = "(() => { const s = getComputedStyle(document.querySelector('#animus-sidebar .jp-AnimusSection')); return [s.color, s.backgroundColor]; })()"
    light = lab.evaluate(colours)
    lab.locator(".lm-MenuBar-item", has_text="Settings").first.click()
    lab.locator(".lm-Menu-item", has_text="Theme").first.hover()
    lab.locator(".lm-Menu-item", has_text="JupyterLab Dark").first.click()
    lab.wait_for_function("document.body.dataset.jpThemeLight === 'false'", timeout=30_000)
    open_sidebar(lab)
    show_sections(lab, "project", "experiments", "models")
    dark = wait_for(lambda: (c := lab.evaluate(colours)) != light and c, 30, what="the panels to change colours")
    assert dark[0] != light[0], (light, dark)
    time.sleep(1)
    shot(lab, "08-dark-theme")
