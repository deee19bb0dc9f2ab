"""Login sessions on a real hub: TTL, the concurrent-session limit, logout, forced logout, cookie flags.

People log in through the hub's login form (the embedded users.json authenticator)
with cookie-carrying HTTP clients, one per "browser"; OAuth tokens bound to a
browser session come from the hub's own OAuth provider, as a workspace's do.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
import sqlalchemy as sa
from hubbrowser import HubBrowser, token_status
from stack import STACK_API_CONFIG, TEST_OAUTH_GROUP, HubStack

from animus_hub.userfile import UserFile

PASSWORD = "correct horse battery"  # noqa: S105 (a test user's password)

# the hub re-checks a browser's session at most this often per user (Authenticator.auth_refresh_age)
REFRESH = 1
TTL = 8


def start_stack(root, hub_config: str) -> HubStack:
    s = HubStack(root, api_config=STACK_API_CONFIG, hub_config=hub_config)
    s.start()
    return s


@pytest.fixture(scope="module")
def evicting_stack(tmp_path_factory) -> Iterator[HubStack]:
    """Sessions last TTL seconds; at most 2 per person, the oldest evicted."""
    s = start_stack(
        tmp_path_factory.mktemp("sessions-evict"),
        f"""
c.SessionControl.ttl = {TTL}
c.SessionControl.max_sessions = 2
c.SessionControl.on_limit = "evict_oldest"
c.SessionControl.sweep_interval = 1
c.Authenticator.auth_refresh_age = {REFRESH}
""",
    )
    yield s
    s.stop()


@pytest.fixture(scope="module")
def refusing_stack(tmp_path_factory) -> Iterator[HubStack]:
    """At most 1 session per person; a second login is refused."""
    s = start_stack(
        tmp_path_factory.mktemp("sessions-refuse"),
        f"""
c.SessionControl.max_sessions = 1
c.SessionControl.on_limit = "refuse"
c.Authenticator.auth_refresh_age = {REFRESH}
""",
    )
    yield s
    s.stop()


def person(stack: HubStack, unique) -> str:
    """A person who can log in with PASSWORD, and may get OAuth tokens from the test client."""
    name = unique("u")
    UserFile(stack.root / "users.json").set_user(name, password=PASSWORD, groups=[], admin=False)
    assert stack.hub("POST", f"/users/{name}").status_code == 201
    assert stack.hub("POST", f"/groups/{TEST_OAUTH_GROUP}/users", json={"users": [name]}).status_code == 200
    return name


def logged_in(stack: HubStack, name: str) -> HubBrowser:
    b = HubBrowser(stack)
    r = b.login(name, PASSWORD)
    assert r.status_code == 302, (r.status_code, r.text[:500])
    assert b.whoami_status() == 200
    return b


def sessions_of(stack: HubStack, name: str) -> list[dict]:
    engine = sa.create_engine(stack.db_url)
    try:
        with engine.connect() as c:
            rows = c.execute(
                sa.text(
                    "SELECT hub_session_id, end_reason, ended_at FROM user_session WHERE user_name = :u ORDER BY id"
                ),
                {"u": name},
            ).mappings()
            return [dict(r) for r in rows]
    finally:
        engine.dispose()


def audit_actions(stack: HubStack, name: str) -> list[tuple[str, str]]:
    """(action, outcome) of the audit events about person `name`, in order."""
    engine = sa.create_engine(stack.db_url)
    try:
        with engine.connect() as c:
            rows = c.execute(
                sa.text(
                    "SELECT action, outcome FROM audit_event WHERE resource LIKE :r OR resource = :exact ORDER BY seq"
                ),
                {"r": f"user/{name}/%", "exact": f"user/{name}"},
            ).all()
            return [(a, o) for a, o in rows]
    finally:
        engine.dispose()


def past_refresh() -> None:
    time.sleep(REFRESH + 0.2)


# --- login, logout, cookies ----------------------------------------------------------------


def test_a_login_starts_an_audited_session_with_httponly_samesite_cookies(evicting_stack, unique):
    name = person(evicting_stack, unique)
    b = HubBrowser(evicting_stack)
    r = b.login(name, PASSWORD)
    assert r.status_code == 302
    set_cookies = r.raw.headers.getlist("Set-Cookie")
    login_cookie = next(c for c in set_cookies if c.startswith("jupyterhub-hub-login="))
    assert "HttpOnly" in login_cookie and "SameSite=Lax" in login_cookie
    assert "Secure" not in login_cookie  # plain http here
    [s] = sessions_of(evicting_stack, name)
    assert s["hub_session_id"] == b.session_id and s["end_reason"] == ""
    assert ("session.login", "success") in audit_actions(evicting_stack, name)


def test_cookies_are_secure_when_served_over_tls(evicting_stack, unique):
    # a TLS-terminating proxy in front of the hub says so with X-Forwarded-Proto (asked of
    # the hub directly: configurable-http-proxy would overwrite the header with its own)
    name = person(evicting_stack, unique)
    b = HubBrowser(evicting_stack)
    b.base_url = f"http://127.0.0.1:{evicting_stack.settings.hub_port}"
    b.http.headers["X-Forwarded-Proto"] = "https"
    r = b.login(name, PASSWORD)
    assert r.status_code == 302, r.text[:300]
    login_cookie = next(c for c in r.raw.headers.getlist("Set-Cookie") if c.startswith("jupyterhub-hub-login="))
    assert "Secure" in login_cookie and "HttpOnly" in login_cookie and "SameSite=Lax" in login_cookie


def test_a_wrong_password_is_refused_and_audited_without_a_session(evicting_stack, unique):
    name = person(evicting_stack, unique)
    b = HubBrowser(evicting_stack)
    r = b.login(name, "not the password")
    assert r.status_code == 403
    assert "jupyterhub-hub-login" not in b.http.cookies
    assert sessions_of(evicting_stack, name) == []
    engine = sa.create_engine(evicting_stack.db_url)
    try:
        with engine.connect() as c:
            details = c.execute(
                sa.text("SELECT details FROM audit_event WHERE action = 'session.login' AND outcome = 'denied'")
            ).all()
    finally:
        engine.dispose()
    assert any(name in str(d[0]) for d in details), "the failed login is audited with the name tried"


def test_logout_ends_the_session_and_revokes_its_tokens(evicting_stack, unique):
    name = person(evicting_stack, unique)
    b = logged_in(evicting_stack, name)
    token = b.oauth_token()
    assert token_status(evicting_stack, token) == 200
    old_cookies = b.copy_cookies()
    b.logout()
    assert token_status(evicting_stack, token) == 403
    replay = HubBrowser(evicting_stack)
    replay.http.cookies = old_cookies
    past_refresh()
    assert replay.whoami_status() == 403, "the logged-out session's cookies must not work again"
    assert [s["end_reason"] for s in sessions_of(evicting_stack, name)] == ["logout"]
    assert ("session.logout", "success") in audit_actions(evicting_stack, name)


# --- TTL -------------------------------------------------------------------------------------


def test_a_session_expires_after_its_ttl_and_its_tokens_with_it(evicting_stack, unique):
    name = person(evicting_stack, unique)
    b = logged_in(evicting_stack, name)
    token = b.oauth_token()
    past_refresh()
    assert b.whoami_status() == 200 and token_status(evicting_stack, token) == 200
    time.sleep(TTL + 1.5)  # past the TTL and one sweep (every second here)
    assert b.whoami_status() == 403
    r = b.home()
    assert r.status_code == 302 and "/hub/login" in r.headers["Location"], "the person must log in again"
    assert token_status(evicting_stack, token) == 403, "the session's OAuth token ends with it"
    assert [s["end_reason"] for s in sessions_of(evicting_stack, name)] == ["expired"]
    assert ("session.expired", "success") in audit_actions(evicting_stack, name)
    # logging in again starts a new session in the same browser
    r = b.login(name, PASSWORD)
    assert r.status_code == 302 and b.whoami_status() == 200
    assert [s["end_reason"] for s in sessions_of(evicting_stack, name)] == ["expired", ""]


# --- the concurrent-session limit ----------------------------------------------------------


def test_a_login_beyond_the_limit_evicts_the_oldest_session(evicting_stack, unique):
    name = person(evicting_stack, unique)
    first = logged_in(evicting_stack, name)
    first_token = first.oauth_token()
    second = logged_in(evicting_stack, name)
    third = logged_in(evicting_stack, name)  # the limit is 2: the first session goes
    assert token_status(evicting_stack, first_token) == 403, "the evicted session's tokens are revoked at once"
    past_refresh()
    assert first.whoami_status() == 403
    assert second.whoami_status() == 200 and third.whoami_status() == 200
    reasons = [s["end_reason"] for s in sessions_of(evicting_stack, name)]
    assert reasons == ["evicted", "", ""]
    assert ("session.evicted", "success") in audit_actions(evicting_stack, name)


def test_logging_in_again_in_the_same_browser_replaces_its_session(evicting_stack, unique):
    name = person(evicting_stack, unique)
    b = logged_in(evicting_stack, name)
    other = logged_in(evicting_stack, name)
    before = b.session_id
    b.login(name, PASSWORD)  # same browser: not a third session, so `other` survives
    assert b.session_id != before
    past_refresh()
    assert other.whoami_status() == 200 and b.whoami_status() == 200
    assert [s["end_reason"] for s in sessions_of(evicting_stack, name)] == ["replaced", "", ""]


def test_a_login_beyond_the_limit_can_be_refused_instead(refusing_stack, unique):
    name = person(refusing_stack, unique)
    first = logged_in(refusing_stack, name)
    second = HubBrowser(refusing_stack)
    r = second.login(name, PASSWORD)
    assert r.status_code == 403
    assert "active session" in r.text
    assert "jupyterhub-hub-login" not in second.http.cookies
    assert first.whoami_status() == 200, "the existing session is untouched"
    assert ("session.login", "denied") in audit_actions(refusing_stack, name)
    first.logout()
    r = second.login(name, PASSWORD)
    assert r.status_code == 302 and second.whoami_status() == 200


# --- forced logout -------------------------------------------------------------------------


def test_forced_logout_revokes_every_cookie_and_token_of_the_person(stack, unique):
    name = person(stack, unique)
    admin = stack.user_token(unique("admin"), admin=True)
    laptop, desktop = logged_in(stack, name), logged_in(stack, name)
    oauth = laptop.oauth_token()
    api_token = stack.user_token(name)  # a personal API token, as from the hub's Token page
    assert stack.api("GET", "/whoami", api_token).status_code == 200
    # a service account the person made: its token belongs to the project, not to the person
    project = unique("p")
    assert stack.api("POST", "/projects", api_token, json={"slug": project}).status_code == 201
    r = stack.api("POST", f"/projects/{project}/service-accounts", api_token, json={"name": "ci", "role": "viewer"})
    assert r.status_code == 201, r.text
    r = stack.api("POST", f"/projects/{project}/service-accounts/ci/tokens", api_token, json={"expires_in": 3600})
    sa_token = r.json()["token"]
    r = stack.api("GET", f"/users/{name}/sessions", admin)
    assert r.status_code == 200 and len(r.json()["items"]) == 2

    r = stack.api("POST", f"/users/{name}/logout", admin, json={"stop_servers": True, "reason": "laptop stolen"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["sessions_ended"] == 2 and body["hub_tokens_revoked"] >= 2

    assert laptop.whoami_status() == 403 and desktop.whoami_status() == 403, "old cookies answer 403 at once"
    assert token_status(stack, oauth) == 403 and token_status(stack, api_token) == 403
    r = stack.api("GET", "/whoami", api_token)
    assert r.status_code == 401 and r.json()["reason"] == "invalid_token"
    assert stack.api("GET", f"/projects/{project}", sa_token).status_code == 200
    assert {s["end_reason"] for s in sessions_of(stack, name)} == {"forced_logout"}
    assert stack.api("GET", f"/users/{name}/sessions", admin).json()["items"] == []
    events = stack.api("GET", "/audit/events", admin, params={"action": "user.logout_forced", "limit": 5000}).json()[
        "items"
    ]
    mine = [e for e in events if e["resource"] == f"user/{name}"]
    assert mine and mine[-1]["actor_kind"] == "user" and mine[-1]["details"]["reason"] == "laptop stolen"
    # the person can log in again
    again = logged_in(stack, name)
    assert again.whoami_status() == 200


def test_forced_logout_is_for_platform_admins_and_checks_its_input(stack, unique):
    name = person(stack, unique)
    someone = stack.user_token(unique("u"))
    admin = stack.user_token(unique("admin"), admin=True)
    logged_in(stack, name)
    r = stack.api("POST", f"/users/{name}/logout", someone, json={})
    assert r.status_code == 403
    assert stack.api("GET", f"/users/{name}/sessions", someone).status_code == 403
    r = stack.api("POST", f"/users/{name}/logout", admin, json={"stop_servers": "yes"})
    assert r.status_code == 422
    r = stack.api("POST", f"/users/{name}/logout", admin, json={"unknown": 1})
    assert r.status_code == 422
    r = stack.api("POST", "/users/nobody-like-this/logout", admin, json={})
    assert r.status_code == 404 and r.json()["reason"] == "user_not_found"
    assert stack.api("POST", "/users/%20bad/logout", admin, json={}).status_code == 400
    assert [s["end_reason"] for s in sessions_of(stack, name)] == [""], "refused requests change nothing"


def test_the_hub_side_of_forced_logout_answers_only_the_animus_service(stack, unique):
    # not an ordinary user, and not even a hub admin: only tokens with custom:animus:sessions:revoke
    name = person(stack, unique)
    browser = logged_in(stack, name)
    for token in (stack.user_token(unique("u")), stack.admin_token):
        r = requests.post(
            f"{stack.url}/hub/api/animus/users/{name}/logout",
            json={"stop_servers": True},
            headers={"Authorization": f"token {token}"},
            timeout=30,
        )
        assert r.status_code == 403, r.text
    assert browser.whoami_status() == 200


def _server_running(stack: HubStack, name: str) -> bool:
    model = stack.hub("GET", f"/users/{name}").json()
    return bool(model.get("servers", {}).get("", {}).get("ready"))


def _spawn(stack: HubStack, name: str) -> None:
    r = stack.hub("POST", f"/users/{name}/server")
    assert r.status_code in (201, 202), r.text
    deadline = time.monotonic() + 120
    while not _server_running(stack, name):
        assert time.monotonic() < deadline, "the workspace did not start"
        time.sleep(0.5)


def test_forced_logout_keeps_or_stops_running_workspaces(stack, unique):
    name = person(stack, unique)
    admin = stack.user_token(unique("admin"), admin=True)
    stack.hub("POST", f"/users/{name}")
    _spawn(stack, name)
    r = stack.api("POST", f"/users/{name}/logout", admin, json={"stop_servers": False})
    assert r.status_code == 200 and r.json()["servers_kept"] == [""], r.text
    assert _server_running(stack, name), "a kept workspace keeps running"
    r = stack.api("POST", f"/users/{name}/logout", admin, json={"stop_servers": True})
    assert r.status_code == 200 and r.json()["servers_stopped"] == [""], r.text
    deadline = time.monotonic() + 30
    while stack.hub("GET", f"/users/{name}").json().get("servers"):
        assert time.monotonic() < deadline, "the workspace was not stopped"
        time.sleep(0.5)


def test_an_admin_logs_a_person_out_from_the_cli(stack, unique, tmp_path):
    import json
    import os
    import subprocess
    import sys

    name = person(stack, unique)
    browser = logged_in(stack, name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANIMUS_", "JUPYTERHUB_"))}
    env.update(
        ANIMUS_CONFIG_DIR=str(tmp_path / "config"),
        ANIMUS_API_URL=stack.api_url,
        JUPYTERHUB_API_TOKEN=stack.user_token(unique("admin"), admin=True),
    )

    def animus(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "animus.cli.main", *args], env=env, capture_output=True, text=True, timeout=120
        )

    listed = json.loads(animus("users", "sessions", name, "--json").stdout)
    assert len(listed) == 1 and listed[0]["active"]
    r = animus("users", "logout", name, "--keep-servers", "--reason", "offboarding")
    assert r.returncode == 0 and f"{name} logged out: 1 session(s) ended" in r.stdout, r.stderr
    assert browser.whoami_status() == 403
    r = animus("users", "sessions", name, "--ended")
    assert "forced_logout" in r.stdout
    r = animus("users", "logout", "no-such-person-here")
    assert r.returncode == 1 and "user_not_found" in r.stderr
