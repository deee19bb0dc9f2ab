"""Acceptance: a person logs in through a real OpenID Connect provider in a browser
(Chromium driven by Playwright) as a member of the IdP group ``ml-fraud-admins`` and
lands as owner of project ``fraud``; the same person without the group loses the role
at the next login.

The provider is node ``oidc-provider`` (tests/oidc/idp.mjs); the Animus stack is the
embedded one with its OIDC profile selected (EmbeddedSettings.oidc_*). The API token is
requested on the hub's Token page, as a person would. Screenshots go to
test-artifacts/e2e/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests
from oidc_idp import OIDCStack

pytestmark = pytest.mark.e2e

PROJECT = "fraud"


@pytest.fixture
def oidc(tmp_path) -> Iterator[OIDCStack]:
    env = OIDCStack(tmp_path / "oidc")
    env.start()
    yield env
    env.stop()


def sso_login_in_browser(page, oidc: OIDCStack, login: str, next_path: str) -> None:
    """From a hub page that needs a login, through the provider's form, back to `next_path`."""
    page.goto(oidc.stack.url + next_path)
    page.wait_for_url(re.compile(r".*/hub/login.*"))
    page.get_by_text("Sign in with single sign-on").click()
    page.wait_for_url(re.compile(rf"({re.escape(oidc.provider.issuer)}/interaction/.*|.*{re.escape(next_path)}.*)"))
    if page.url.startswith(oidc.provider.issuer):
        page.fill("input[name=login]", login)
        page.fill("input[name=password]", "any password")
        page.click("button[type=submit]")
    page.wait_for_url(re.compile(rf".*{re.escape(next_path)}$"))


def token_from_token_page(page) -> str:
    page.click("#request-token-form button[type=submit]")
    page.wait_for_selector("#token-result:not(:empty)")
    return page.inner_text("#token-result").strip()


def role_in(oidc: OIDCStack, token: str, project: str) -> str | None:
    r = requests.get(
        f"{oidc.stack.api_url}/projects/{project}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return r.json()["role"]


def test_an_idp_group_makes_a_person_owner_of_fraud_and_losing_it_removes_the_role(
    oidc, browser, artifacts_dir, tmp_path
):
    admin = oidc.stack.user_token("platform-admin", admin=True)
    assert oidc.stack.api("POST", "/projects", admin, json={"slug": PROJECT}).status_code == 201
    oidc.provider.set_user("fiona", ["ml-fraud-admins", "staff"])

    page = browser.new_page()
    sso_login_in_browser(page, oidc, "fiona", "/hub/token")
    page.screenshot(path=str(artifacts_dir / "oidc-token-page.png"))
    token = token_from_token_page(page)
    assert role_in(oidc, token, PROJECT) == "owner"
    groups = oidc.stack.hub("GET", "/users/fiona").json()["groups"]
    assert sorted(groups) == ["ml-fraud-admins", "staff"]

    # the IdP no longer lists the group: at the next login the role is gone
    oidc.provider.set_user("fiona", ["staff"])
    page.goto(oidc.stack.url + "/hub/logout")
    sso_login_in_browser(page, oidc, "fiona", "/hub/token")
    assert oidc.stack.hub("GET", "/users/fiona").json()["groups"] == ["staff"]
    fresh = token_from_token_page(page)
    page.screenshot(path=str(artifacts_dir / "oidc-relogin.png"))
    assert role_in(oidc, fresh, PROJECT) is None
    r = requests.get(f"{oidc.stack.api_url}/whoami", headers={"Authorization": f"Bearer {fresh}"}, timeout=30)
    assert r.json()["groups"] == ["staff"]
