"""The server extension behind the JupyterLab panels, in a real workspace started through the hub.

Every handler the extension serves (``animus.serverext.handlers.ROUTES``) is called
without a login, as another person, and as someone the owner shared the workspace
with: each is refused. The owner's calls reach animus-api as the owner; only the
calls the panels make are forwarded, and only into the workspace's own project.
"""

from __future__ import annotations

import re

import pytest
from stack import STACK_API_CONFIG, HubStack
from tornado.web import RequestHandler

from animus.serverext import handlers as ext

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    st = HubStack(tmp_path_factory.mktemp("panels"), api_config=STACK_API_CONFIG, idle_timeout=0, ssh_port=0)
    st.start()
    try:
        alice = st.user_token("alice")
        bob = st.user_token("bob")
        for slug in ("pan", "pan-other"):
            assert st.api("POST", "/projects", alice, json={"slug": slug}).status_code == 201
        assert st.api("POST", "/projects", bob, json={"slug": "bobs-proj"}).status_code == 201
        st.open_workspace("alice", "pan")
        yield {"st": st, "alice": alice, "bob": bob, "base": f"{st.url}/user/alice/pan/animus"}
    finally:
        st.stop()


def call(ws, method, path, token=None, **kw):
    headers = dict(kw.pop("headers", {}))
    if token:
        headers["Authorization"] = f"token {token}"
    return ws["st"].http.request(
        method, f"{ws['base']}/{path}", headers=headers, allow_redirects=False, timeout=60, **kw
    )


def example_path(route: str) -> str:
    """A concrete path for a route pattern (its groups filled in with a harmless value)."""
    return re.sub(r"\([^)]*\)", "whoami", route)


def routes_and_methods():
    """Every (route, HTTP method) the extension serves."""
    for route, handler in ext.ROUTES:
        for method in ("get", "post", "put", "patch", "delete"):
            if getattr(handler, method) is not getattr(RequestHandler, method):
                yield route, method.upper()


def test_every_handler_refuses_anonymous_callers_and_other_people(ws):
    checked = list(routes_and_methods())
    assert {r for r, _ in checked} == {r for r, _ in ext.ROUTES}, "a route without a method"
    assert ("context", "GET") in checked and ("api/(.*)", "POST") in checked
    for route, method in checked:
        path = example_path(route)
        body = {"data": "{}"} if method == "POST" else {}
        anonymous = call(ws, method, path, **body)
        assert anonymous.status_code in (302, 401, 403), (route, method, anonymous.status_code)
        if anonymous.status_code == 302:  # to the hub's login, never to the handler
            assert "/hub/" in anonymous.headers["Location"], anonymous.headers
        other = call(ws, method, path, ws["bob"], **body)
        assert other.status_code in (403, 404), (route, method, other.status_code, other.text[:200])
        forged = call(ws, method, path, "not-a-token", **body)
        assert forged.status_code in (302, 401, 403), (route, method, forged.status_code)


def test_a_person_the_workspace_is_shared_with_cannot_act_as_its_owner(ws):
    st = ws["st"]
    shared = st.hub("POST", "/shares/alice/pan", json={"user": "bob"})
    assert shared.status_code in (200, 201), shared.text
    # a new token: the workspace caches what it learnt of bob's first one (no access) for a while
    bob = st.user_token("bob")
    try:
        for route, method in routes_and_methods():
            path = example_path(route)
            r = call(ws, method, path, bob, **({"data": "{}"} if method == "POST" else {}))
            assert r.status_code == 403, (route, method, r.status_code, r.text[:200])
            assert r.json()["reason"] == "not_workspace_owner" and "alice" in r.json()["message"]
    finally:
        st.hub("DELETE", "/shares/alice/pan", json={"user": "bob"})


def test_context_says_who_and_where(ws):
    r = call(ws, "GET", "context", ws["alice"])
    assert r.status_code == 200, r.text
    ctx = r.json()
    assert (ctx["user"], ctx["project"], ctx["role"], ctx["api_error"]) == ("alice", "pan", "owner", None)
    assert ctx["me"]["name"] == "alice"
    assert {p["slug"] for p in ctx["projects"]} >= {"pan", "pan-other"} and "bobs-proj" not in {
        p["slug"] for p in ctx["projects"]
    }
    assert ctx["hub"]["spawn_url"].endswith("/hub/spawn/alice/")
    assert ctx["workspace"]["folder"].endswith("/alice/pan")
    # the workspace's token (32 hex digits, as JupyterHub makes them) never reaches the browser
    assert not re.search(r"[0-9a-f]{32}", r.text), r.text
    assert ctx["me"]["token_project"] == "pan"


def test_the_owners_calls_reach_the_api_as_the_owner(ws):
    st, alice = ws["st"], ws["alice"]
    run = st.api("POST", "/projects/pan/runs", alice, json={"name": "from-the-api"})
    assert run.status_code == 201, run.text
    r = call(ws, "GET", "api/projects/pan/runs", alice, params={"filter": "attributes.name = 'from-the-api'"})
    assert r.status_code == 200, r.text
    assert [x["name"] for x in r.json()["items"]] == ["from-the-api"]
    assert r.json()["items"][0]["user"] == "alice"
    # the API's own errors come through unchanged (DESIGN §5)
    bad = call(ws, "GET", "api/projects/pan/runs", alice, params={"filter": "metrics.acc >"})
    assert bad.status_code == 400 and bad.json()["reason"] == "invalid_filter" and "position" in bad.json()["details"]
    # a POST the panels make: cancelling an interactive run is not a batch action → the API's 4xx
    cancel = call(ws, "POST", f"api/projects/pan/runs/{run.json()['id']}/cancel", alice, json={})
    assert 400 <= cancel.status_code < 500 and cancel.json()["message"], cancel.text


def test_only_the_panels_calls_are_forwarded_and_only_into_the_workspaces_project(ws):
    alice = ws["alice"]
    for method, path in (
        ("GET", "api/projects/pan/secrets"),
        ("POST", "api/projects"),
        ("GET", "api/projects/pan/../pan-other/datasets"),
        ("GET", "api/projects/pan/service-accounts"),
        ("POST", "api/projects/pan/models/m/versions/1/exports"),
        ("GET", "api/audit/events"),
    ):
        r = call(ws, method, path, alice, json={})
        assert r.status_code in (400, 404), (method, path, r.status_code)
        if r.status_code == 404 and "application/json" in r.headers.get("Content-Type", ""):
            assert r.json()["reason"] in ("not_forwarded", "project_not_found"), r.text
    other = call(ws, "GET", "api/projects/pan-other/datasets", alice)
    assert other.status_code == 404 and other.json()["reason"] == "project_not_found"
    assert "pan-other" in other.json()["message"]
    assert call(ws, "DELETE", "api/projects/pan", alice).status_code == 405
    # an encoded "?" stays inside its segment: the run named "<id>?x=1" (none), not run <id>
    run_id = ws["st"].api("POST", "/projects/pan/runs", alice, json={"name": "odd"}).json()["id"]
    assert call(ws, "GET", f"api/projects/pan/runs/{run_id}", alice).status_code == 200
    odd = call(ws, "GET", f"api/projects/pan/runs/{run_id}%3Fx=1", alice)
    assert odd.status_code == 404 and odd.json()["reason"] == "run_not_found", odd.text
    bad_json = call(ws, "POST", "api/projects/pan/runs/x/cancel", alice, data="{not json")
    assert bad_json.status_code == 400 and bad_json.json()["reason"] == "invalid_json"
    huge = call(ws, "POST", "api/projects/pan/runs/x/cancel", alice, data="[" + "0," * ext.MAX_BODY + "0]")
    assert huge.status_code == 413
    # nothing was created by any of it
    assert [p["slug"] for p in ws["st"].api("GET", "/projects", alice).json()["items"]] == ["pan", "pan-other"]


def test_the_forwarding_rule():
    assert ext.forwarded("GET", "projects/p/datasets/d/versions/3/schema")
    assert ext.forwarded("POST", "projects/p/models/m/versions/2/approvals")
    assert ext.forwarded("GET", "projects/p/models/m/versions/2/actions")
    assert ext.forwarded("GET", "projects/p/models/m/versions/2/approvals") is None
    assert ext.forwarded("POST", "projects/p/datasets") is None
    assert ext.forwarded("GET", "projects/p/secrets/x") is None
    assert ext.forwarded("GET", "projects/p/datasets/../secrets") is None
    assert ext.forwarded("GET", "projects//datasets") is None
    assert ext.forwarded("GET", "projects/p/datasetsX") is None
    assert ext.forwarded("GET", "projects/p/runs/r/logs").group("project") == "p"


def test_the_audit_panel_reads_newest_first_page_by_page(ws):
    alice = ws["alice"]
    for i in range(3):
        assert ws["st"].api("POST", "/projects/pan/experiments", alice, json={"name": f"audit-{i}"}).status_code == 201
    ascending = ws["st"].api("GET", "/projects/pan/audit/events", alice, params={"limit": 500}).json()["items"]
    seen, cursor = [], None
    while True:
        r = call(
            ws, "GET", "api/projects/pan/audit/events", alice, params={"order": "desc", "limit": 2, "cursor": cursor}
        )
        assert r.status_code == 200, r.text
        seen += [e["seq"] for e in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    assert seen == [e["seq"] for e in reversed(ascending)] and len(seen) >= 4
    bad = call(ws, "GET", "api/projects/pan/audit/events", alice, params={"order": "sideways"})
    assert bad.status_code == 400 and "order" in bad.json()["message"]


def test_opening_a_project_one_is_not_a_member_of_starts_nothing_and_is_audited(ws):
    st, alice, bob = ws["st"], ws["alice"], ws["bob"]
    for project in ("bobs-proj", "no-such-project"):
        r = st.hub("POST", f"/users/alice/servers/{project}", json={})
        assert r.status_code == 404, (project, r.status_code, r.text[:300])
        assert project in r.json()["message"], r.text
        servers = st.hub("GET", "/users/alice").json()["servers"]
        assert project not in servers or not servers[project].get("ready"), servers
    denied = st.api(
        "GET", "/projects/bobs-proj/audit/events", bob, params={"outcome": "denied", "actor": "alice"}
    ).json()["items"]
    assert any(e["action"] == "workspaces:open" and e["details"]["status"] == 404 for e in denied), denied
    # the workspace alice may open was opened through the same check, and that is audited too
    opened = st.api("GET", "/projects/pan/audit/events", alice, params={"action": "workspace.open"}).json()["items"]
    assert opened and opened[0]["actor"] == "alice" and opened[0]["details"]["server"] == "pan", opened


def test_only_people_open_workspaces(ws):
    st, alice = ws["st"], ws["alice"]
    sa = st.api("POST", "/projects/pan/service-accounts", alice, json={"name": "ci-bot", "role": "owner"})
    assert sa.status_code == 201, sa.text
    token = st.api("POST", "/projects/pan/service-accounts/ci-bot/tokens", alice, json={"expires_in": 3600}).json()[
        "token"
    ]
    r = st.api("POST", "/projects/pan/workspaces/open", token, json={})
    assert r.status_code == 403 and "Only people" in r.json()["message"], r.text
    bad = st.api("POST", "/projects/pan/workspaces/open", alice, json={"template": "x" * 64})
    assert bad.status_code == 422, bad.text
