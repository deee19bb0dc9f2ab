"""OIDC single sign-on against a real provider (node oidc-provider): groups → project roles, and bad input.

Logins are driven with cookie-carrying HTTP clients through the provider's login form
(the browser version is tests/e2e/test_oidc_login.py). Token answers pass through a
proxy that can break the id_token's signature or swap it for another valid token.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
import sqlalchemy as sa
from oidc_idp import OIDCStack, jwt_claims, other_client_id_token, sso_login
from stack import HubStack

from animus_hub.auth.oidc import OIDCDiscoveryError, fetch_discovery


@pytest.fixture(scope="module")
def oidc(tmp_path_factory) -> Iterator[OIDCStack]:
    env = OIDCStack(
        tmp_path_factory.mktemp("oidc"),
        hub_config="c.Authenticator.auth_refresh_age = 1\nc.AnimusOIDCAuthenticator.identity_refresh_age = 2\n",
    )
    env.start()
    yield env
    env.stop()


@pytest.fixture(autouse=True)
def _untampered(oidc) -> Iterator[None]:
    oidc.tamper.mode = "pass"
    yield
    oidc.tamper.mode = "pass"


def hub_login(oidc: OIDCStack, login: str) -> requests.Session:
    http = requests.Session()
    r = sso_login(http, oidc.stack.url + "/hub/oauth_login?next=%2Fhub%2Fhome", login)
    assert isinstance(r, requests.Response) and r.status_code == 200 and r.url.endswith("/hub/home"), (
        getattr(r, "status_code", r),
        getattr(r, "text", "")[:500],
    )
    return http


def token_for(stack: HubStack, name: str) -> str:
    r = stack.hub("POST", f"/users/{name}/tokens", json={"note": "test", "expires_in": 600})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def hub_groups(stack: HubStack, name: str) -> list[str]:
    return sorted(stack.hub("GET", f"/users/{name}").json()["groups"])


def denied_logins(stack: HubStack) -> list[dict]:
    engine = sa.create_engine(stack.db_url)
    try:
        with engine.connect() as c:
            rows = c.execute(
                sa.text(
                    "SELECT details FROM audit_event WHERE action = 'session.login' AND outcome = 'denied' ORDER BY seq"
                )
            ).all()
    finally:
        engine.dispose()
    import json

    return [r[0] if isinstance(r[0], dict) else json.loads(r[0]) for r in rows]


def test_idp_groups_map_to_project_roles_and_a_lost_group_loses_the_role_at_next_login(oidc):
    stack = oidc.stack
    admin = stack.user_token("platform-admin", admin=True)
    assert stack.api("POST", "/projects", admin, json={"slug": "fraud"}).status_code in (201, 409)
    oidc.provider.set_user("fiona", ["ml-fraud-admins", "staff"])
    http = hub_login(oidc, "fiona")
    assert http.get(stack.url + "/hub/api/user", timeout=30).json()["name"] == "fiona"
    assert hub_groups(stack, "fiona") == ["ml-fraud-admins", "staff"]
    token = token_for(stack, "fiona")
    r = stack.api("GET", "/projects/fraud", token)
    assert r.status_code == 200 and r.json()["role"] == "owner", r.text

    # the IdP drops the group; at the next login the hub's groups follow, and the role is gone
    oidc.provider.set_user("fiona", ["staff"])
    http.get(stack.url + "/hub/logout", timeout=30)
    hub_login(oidc, "fiona")
    assert hub_groups(stack, "fiona") == ["staff"]
    r = stack.api("GET", "/projects/fraud", token_for(stack, "fiona"))
    assert r.status_code == 404 and r.json()["reason"] == "project_not_found"


def test_a_lost_group_is_also_noticed_at_the_next_identity_refresh_without_a_new_login(oidc):
    stack = oidc.stack
    admin = stack.user_token("platform-admin", admin=True)
    assert stack.api("POST", "/projects", admin, json={"slug": "fraud"}).status_code in (201, 409)
    oidc.provider.set_user("kim", ["ml-fraud-admins"])
    http = hub_login(oidc, "kim")
    assert hub_groups(stack, "kim") == ["ml-fraud-admins"]
    oidc.provider.set_user("kim", [])
    time.sleep(2.5)  # past identity_refresh_age: the next request re-reads userinfo with the stored access token
    assert http.get(stack.url + "/hub/api/user", timeout=30).status_code == 200
    assert hub_groups(stack, "kim") == []
    r = stack.api("GET", "/projects/fraud", token_for(stack, "kim"))
    assert r.status_code == 404


def test_the_login_uses_pkce_a_nonce_and_a_verified_id_token(oidc):
    oidc.provider.set_user("gus", [])
    http = requests.Session()
    authorize = sso_login(http, oidc.stack.url + "/hub/oauth_login", "gus", stop_at=oidc.provider.issuer + "/auth")
    params = requests.utils.urlparse(authorize).query
    assert "code_challenge_method=S256" in params and "nonce=" in params and "state=" in params
    hub_login(oidc, "gus")
    claims = jwt_claims(oidc.tamper.seen[-1])
    assert claims["aud"] == "animus-hub" and claims["nonce"]


def test_a_state_mismatch_in_the_callback_is_refused_and_audited(oidc):
    oidc.provider.set_user("hana", [])
    first, second = requests.Session(), requests.Session()
    cb_first = sso_login(first, oidc.stack.url + "/hub/oauth_login", "hana", stop_at=oidc.callback)
    cb_second = sso_login(second, oidc.stack.url + "/hub/oauth_login", "hana", stop_at=oidc.callback)
    assert isinstance(cb_first, str) and isinstance(cb_second, str)
    # browser 1 is handed the callback of browser 2's login (an injected code): its state cookie differs
    r = first.get(cb_second, allow_redirects=False, timeout=30)
    assert r.status_code == 400 and "state" in r.text.lower()
    assert "jupyterhub-hub-login" not in first.cookies
    assert any("state mismatch" in d.get("reason", "") for d in denied_logins(oidc.stack))


@pytest.mark.parametrize(
    "attack,message",
    [
        ("bad_signature", "bad id_token signature"),
        ("replayed", "nonce does not match"),
        ("other_audience", "another client"),
    ],
)
def test_a_bad_id_token_refuses_the_login(oidc, attack, message):
    oidc.provider.set_user("ivan", ["ml-fraud-admins"])
    if attack == "bad_signature":
        oidc.tamper.mode = "bad_signature"
    elif attack == "replayed":
        hub_login(oidc, "ivan")  # a valid id_token of an earlier login, replayed into a new one
        oidc.tamper.mode, oidc.tamper.swap_with = "swap", oidc.tamper.seen[-1]
    else:
        oidc.tamper.mode, oidc.tamper.swap_with = "swap", other_client_id_token(oidc.provider, "ivan")
    http = requests.Session()
    r = sso_login(http, oidc.stack.url + "/hub/oauth_login", "ivan")
    assert isinstance(r, requests.Response)
    assert r.status_code == 403 and message in r.text, (r.status_code, r.text[-800:])
    assert "jupyterhub-hub-login" not in http.cookies
    assert any(message in d.get("reason", "") for d in denied_logins(oidc.stack))


def test_sessions_apply_to_sso_logins_too(oidc):
    stack = oidc.stack
    admin = stack.user_token("platform-admin", admin=True)
    oidc.provider.set_user("jo", [])
    http = hub_login(oidc, "jo")
    assert http.get(stack.url + "/hub/api/user", timeout=30).status_code == 200
    r = stack.api("GET", "/users/jo/sessions", admin)
    assert [s["authenticator"] for s in r.json()["items"]] == ["AnimusOIDCAuthenticator"]
    assert stack.api("POST", "/users/jo/logout", admin, json={}).status_code == 200
    assert http.get(stack.url + "/hub/api/user", timeout=30).status_code == 403


def test_discovery_refuses_a_document_naming_another_issuer(oidc):
    doc = fetch_discovery(oidc.provider.issuer)
    assert doc["jwks_uri"].startswith(oidc.provider.issuer)
    with pytest.raises(OIDCDiscoveryError, match="names the issuer"):
        fetch_discovery(oidc.provider.issuer.replace("127.0.0.1", "localhost"), attempts=1)
