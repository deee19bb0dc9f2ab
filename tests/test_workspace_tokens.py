"""A workspace's token is valid only for its project.

The token a workspace gets from the hub (``$JUPYTERHUB_API_TOKEN``, ``MLFLOW_TRACKING_TOKEN``)
carries ``access:servers!server=<user>/<project>`` as its only server access; animus-api
binds it to that project. Proved once with a real spawner's token (the stack's own
spawner starts the workspace), then with tokens minted with exactly those scopes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import psutil
import pytest
import requests
from hubbrowser import HubBrowser
from stack import TEST_OAUTH_GROUP

from animus_hub.auth.identity import workspace_project
from animus_hub.userfile import UserFile

pytestmark = pytest.mark.timeout(300)

# --- the binding, from the scopes the hub reports ---------------------------------------------

# what JupyterHub 6.1 reports for alice's tokens (GET /hub/api/user): a named server's own token,
# a token made without scopes (/hub/token, POST /users/{u}/tokens), a hub browser session's OAuth token
SERVER_TOKEN = [
    "access:servers!server=alice/churn",
    "access:services!service=animus",
    "read:users!user=alice",
    "read:users:activity!user=alice",
    "read:users:groups!user=alice",
    "read:users:name!user=alice",
    "users:activity!user=alice",
]
PLAIN_TOKEN = [
    "access:servers!user=alice",
    "access:services!service=animus",
    "delete:servers!user=alice",
    "read:servers!user=alice",
    "read:users!user=alice",
    "servers!user=alice",
    "tokens!user=alice",
    "users:activity!user=alice",
]
OAUTH_TOKEN = ["access:services!service=test-admin", "read:users:groups!user=alice", "read:users:name!user=alice"]


@pytest.mark.parametrize(
    "scopes, bound",
    [
        (SERVER_TOKEN, "churn"),
        # the minimum: one server of one's own
        (["access:servers!server=alice/churn"], "churn"),
        (PLAIN_TOKEN, None),
        (OAUTH_TOKEN, None),
        ([], None),
        # the default server is nobody's project workspace
        (["access:servers!server=alice/", "access:services!service=animus"], None),
        # two servers, even both one's own
        (["access:servers!server=alice/churn", "access:servers!server=alice/fraud"], None),
        # one server plus broader access of any kind
        (["access:servers!server=alice/churn", "access:servers!user=alice"], None),
        (["access:servers!server=alice/churn", "access:servers"], None),
        (["access:servers!server=alice/churn", "access:servers!group=team"], None),
        (["access:servers"], None),
        (["access:servers!group=team"], None),
        # another user's server (a share) is not alice's workspace; nor is a prefix of her name
        (["access:servers!server=bob/churn"], None),
        (["access:servers!server=alicex/churn"], None),
        (["access:servers!server=ali/ce/churn"], None),
        # other scopes that merely look alike do not count as server access
        (["read:servers!server=alice/fraud", "access:servers!server=alice/churn"], "churn"),
        (
            ["access:services!service=animus", "servers!server=alice/fraud", "access:servers!server=alice/churn"],
            "churn",
        ),
    ],
)
def test_the_binding_is_the_one_named_server_of_the_tokens_own_user(scopes, bound):
    assert workspace_project("alice", frozenset(scopes)) == bound


def test_a_user_name_containing_a_slash_binds_to_the_rest():
    # JupyterHub forbids '/' in user names; the split is on the owner's name, not the first '/'
    assert workspace_project("a/b", ["access:servers!server=a/b/churn"]) == "churn"
    assert workspace_project("a", ["access:servers!server=a/b/churn"]) == "b/churn"


# --- against the real stack -------------------------------------------------------------------


def workspace_env(stack, user: str, server: str) -> dict[str, str]:
    # the test admin sees the local spawner's state (the workspace process's pid)
    pid = stack.hub("GET", f"/users/{user}").json()["servers"][server]["state"]["pid"]
    return psutil.Process(pid).environ()


def bound_token(stack, user: str, server: str) -> str:
    """A token with exactly the server scopes a workspace's token gets (without starting one)."""
    scopes = [f"access:servers!server={user}/{server}", "access:services!service=animus", "read:users!user"]
    r = stack.hub("POST", f"/users/{user}/tokens", json={"scopes": scopes, "expires_in": 3600})
    assert r.status_code == 201, r.text
    return r.json()["token"]


@pytest.fixture
def alice(stack, unique):
    """alice owns projects churn-… and fraud-… (with her ordinary token); an outsider is in neither."""
    name = unique("alice")
    token = stack.user_token(name)
    churn, fraud = unique("churn"), unique("fraud")
    for slug in (churn, fraud):
        assert stack.api("POST", "/projects", token, json={"slug": slug}).status_code == 201
    return {"name": name, "token": token, "churn": churn, "fraud": fraud, "outsider": stack.user_token(unique("out"))}


MLFLOW_CLIENT = """
import json, os
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

out = {}
# the workspace's own tracking URI and token, as a notebook in it would use them
client = MlflowClient()
run = client.create_run("0")
client.log_metric(run.info.run_id, "auc", 0.91)
client.set_terminated(run.info.run_id)
out["churn_run"] = run.info.run_id
for name, uri in (("fraud", os.environ["FRAUD_URI"]), ("short", os.environ["SHORT_URI"])):
    try:
        out[name] = MlflowClient(tracking_uri=uri).create_run("0").info.run_id
    except MlflowException as e:
        out[name] = e.error_code
print("RESULT " + json.dumps(out))
"""


def run_mlflow(stack, env: dict[str, str], fraud: str, tmp_path) -> dict:
    script = tmp_path / "client.py"
    script.write_text(textwrap.dedent(MLFLOW_CLIENT))
    root = f"{stack.url}/services/animus/mlflow"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "JUPYTERHUB_", "ANIMUS_"))}
    clean.update(
        MLFLOW_TRACKING_URI=env["MLFLOW_TRACKING_URI"],
        MLFLOW_TRACKING_TOKEN=env["MLFLOW_TRACKING_TOKEN"],
        FRAUD_URI=f"{root}/projects/{fraud}",
        SHORT_URI=root,
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        GIT_PYTHON_REFRESH="quiet",
        HOME=str(tmp_path),
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="1",
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="0",
    )
    proc = subprocess.run(
        [sys.executable, str(script)], env=clean, cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    return json.loads(line[len("RESULT ") :])


def denials(stack, alice, project: str) -> list[dict]:
    r = stack.api(
        "GET",
        f"/projects/{project}/audit/events",
        alice["token"],
        params={"outcome": "denied", "actor": alice["name"], "limit": 500},
    )
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_a_real_workspace_token_acts_only_in_its_project(stack, alice, tmp_path):
    name, churn, fraud = alice["name"], alice["churn"], alice["fraud"]
    r = stack.hub("POST", f"/users/{name}/servers/{churn}", json={})
    assert r.status_code in (201, 202), r.text
    try:
        stack.wait_ready(name, churn)
        env = workspace_env(stack, name, churn)
        token = env["JUPYTERHUB_API_TOKEN"]
        assert env["MLFLOW_TRACKING_TOKEN"] == token and env["ANIMUS_PROJECT"] == churn
        # (a) the hub reports one server for the spawner's token: this workspace
        servers = [s for s in hub_scopes(stack, token) if s.startswith("access:servers")]
        assert servers == [f"access:servers!server={name}/{churn}"]

        # /whoami names the project the token is for, and the person's role there
        me = stack.api("GET", "/whoami", token).json()
        assert (me["name"], me["kind"], me["project"], me["token_project"], me["role"]) == (
            name,
            "user",
            churn,
            churn,
            "owner",
        )

        # its own project works: list runs, start one, log a metric
        run = stack.api("POST", f"/projects/{churn}/runs", token, json={"name": "from-the-workspace"})
        assert run.status_code == 201, run.text
        run_id = run.json()["id"]
        r = stack.api(
            "POST",
            f"/projects/{churn}/runs/{run_id}/log-batch",
            token,
            json={"metrics": [{"key": "auc", "value": 0.9}]},
        )
        assert r.status_code == 200, r.text
        listed = stack.api("GET", f"/projects/{churn}/runs", token)
        assert listed.status_code == 200 and run_id in [x["id"] for x in listed.json()["items"]]

        # the other project answers exactly as it does to someone who is not a member
        for method, path, body in (
            ("GET", f"/projects/{fraud}", None),
            ("GET", f"/projects/{fraud}/runs", None),
            ("POST", f"/projects/{fraud}/runs", {"name": "sneaky"}),
        ):
            bound = stack.api(method, path, token, json=body)
            outsider = stack.api(method, path, alice["outsider"], json=body)
            assert bound.status_code == 404 and bound.json()["reason"] == "project_not_found", bound.text
            assert bound.json() == outsider.json()
        assert stack.api("GET", f"/projects/{fraud}/runs", alice["token"]).json()["items"] == [], "nothing was made"
        # ... and the refusals are in fraud's audit trail as denials, naming the token's project
        found = denials(stack, alice, fraud)
        assert {(e["details"]["method"], e["resource"].rsplit("/", 1)[-1]) for e in found} >= {
            ("GET", fraud),
            ("GET", "runs"),
            ("POST", "runs"),
        }
        assert all(e["details"]["status"] == 404 and e["details"]["workspace_project"] == churn for e in found)

        # the listing still shows both projects (to switch to the other one's workspace)
        listed = stack.api("GET", "/projects", token).json()["items"]
        assert {churn, fraud} <= {p["slug"] for p in listed}

        # the MLflow protocol: the workspace's URI logs into churn; fraud does not exist for this
        # token; the bare tracking URI means the token's own project
        out = run_mlflow(stack, env, fraud, tmp_path)
        assert out["fraud"] == "RESOURCE_DOES_NOT_EXIST"
        runs = stack.api("GET", f"/projects/{churn}/runs", alice["token"]).json()["items"]
        assert {out["churn_run"], out["short"]} <= {x["id"] for x in runs}
        logged = stack.api("GET", f"/projects/{churn}/runs/{out['churn_run']}", alice["token"]).json()
        assert logged["metrics"]["auc"]["value"] == pytest.approx(0.91), logged
        assert any(e["resource"].endswith("/runs/create") for e in denials(stack, alice, fraud))

        # her ordinary token works in both
        for slug in (churn, fraud):
            assert stack.api("GET", f"/projects/{slug}/runs", alice["token"]).status_code == 200
        r = stack.api("POST", f"/projects/{fraud}/runs", alice["token"], json={"name": "by-hand"})
        assert r.status_code == 201, r.text
        mlflow_fraud = stack.http.post(
            f"{stack.url}/services/animus/mlflow/projects/{fraud}/api/2.0/mlflow/experiments/search",
            headers={"Authorization": f"Bearer {alice['token']}"},
            json={"max_results": 10},
            timeout=30,
        )
        assert mlflow_fraud.status_code == 200, mlflow_fraud.text
        assert stack.api("GET", "/whoami", alice["token"]).json()["token_project"] is None
    finally:
        stack.hub("DELETE", f"/users/{name}/servers/{churn}")


def test_a_workspace_token_keeps_the_persons_own_platform_actions_only(stack, alice, unique):
    token = bound_token(stack, alice["name"], alice["churn"])
    assert stack.api("GET", "/whoami", token).json()["token_project"] == alice["churn"]
    assert stack.api("GET", "/version", token).status_code == 200
    assert stack.api("GET", "/event-types", token).status_code == 200
    # the person's own SSH keys
    assert stack.api("GET", "/users/me/ssh-keys", token).status_code == 200
    # a project it could not act in afterwards: refused, saying why and what to use instead
    slug = unique("new")
    r = stack.api("POST", "/projects", token, json={"slug": slug})
    assert r.status_code == 403 and r.json()["reason"] == "token_bound_to_project", r.text
    assert alice["churn"] in r.json()["message"] and "ANIMUS_TOKEN" in r.json()["message"]
    assert stack.api("GET", f"/projects/{slug}", alice["token"]).status_code == 404


def test_an_admins_workspace_token_is_bound_too(stack, unique):
    name = unique("root")
    admin = stack.user_token(name, admin=True)
    mine, other = unique("mine"), unique("other")
    for slug in (mine, other):
        assert stack.api("POST", "/projects", admin, json={"slug": slug}).status_code == 201
    token = bound_token(stack, name, mine)
    me = stack.api("GET", "/whoami", token).json()
    assert (me["admin"], me["token_project"], me["role"]) == (True, mine, "owner")
    assert stack.api("GET", f"/projects/{mine}", token).status_code == 200
    r = stack.api("GET", f"/projects/{other}", token)
    assert r.status_code == 404 and r.json()["reason"] == "project_not_found"
    # platform administration (every project's audit trail, role mappings) is not a workspace's
    for path in ("/audit/events", "/audit/head", "/role-mappings"):
        r = stack.api("GET", path, token)
        assert r.status_code == 403 and r.json()["reason"] == "token_bound_to_project", (path, r.text)
        assert stack.api("GET", path, admin).status_code == 200


def test_tokens_that_are_not_one_workspaces_are_not_bound(stack, alice):
    name, churn, fraud = alice["name"], alice["churn"], alice["fraud"]
    cases = {
        "default server": [f"access:servers!server={name}/", "access:services!service=animus"],
        "two servers": [
            f"access:servers!server={name}/{churn}",
            f"access:servers!server={name}/{fraud}",
            "access:services!service=animus",
        ],
        "all her servers": [
            f"access:servers!server={name}/{churn}",
            f"access:servers!user={name}",
            "access:services!service=animus",
        ],
    }
    for label, scopes in cases.items():
        r = stack.hub("POST", f"/users/{name}/tokens", json={"scopes": scopes, "expires_in": 3600})
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        assert stack.api("GET", "/whoami", token).json()["token_project"] is None, label
        for slug in (churn, fraud):
            assert stack.api("GET", f"/projects/{slug}/runs", token).status_code == 200, (label, slug)


def hub_scopes(stack, token: str) -> list[str]:
    """What the hub reports for a token (animus-api gets the same model through HubAuth)."""
    r = requests.get(stack.url + "/hub/api/user", headers={"Authorization": f"token {token}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["scopes"]


def test_the_hub_gives_only_a_named_servers_own_token_a_single_server(stack, alice):
    """What the installed JupyterHub reports for the kinds of token a person has: only a named
    server's token (the minted stand-in here; the real one in the test above) binds."""
    name = alice["name"]
    # (b) a token made without scopes (the hub's token page does the same): all her servers
    plain = hub_scopes(stack, alice["token"])
    assert f"access:servers!user={name}" in plain and workspace_project(name, plain) is None
    # (c) an OAuth token of a browser session with the hub (issued to a service's OAuth client)
    password = "correct horse battery"  # noqa: S105 (a test user's password)
    UserFile(stack.root / "users.json").set_user(name, password=password, groups=[], admin=False)
    assert stack.hub("POST", f"/groups/{TEST_OAUTH_GROUP}/users", json={"users": [name]}).status_code == 200
    browser = HubBrowser(stack)
    assert browser.login(name, password).status_code == 302
    oauth = hub_scopes(stack, browser.oauth_token())
    assert not [s for s in oauth if s.startswith("access:servers")], oauth
    assert workspace_project(name, oauth) is None
    # (a) exactly the server scopes of a workspace's token
    bound = hub_scopes(stack, bound_token(stack, name, alice["churn"]))
    assert [s for s in bound if s.startswith("access:servers")] == [f"access:servers!server={name}/{alice['churn']}"]
    assert workspace_project(name, bound) == alice["churn"]
