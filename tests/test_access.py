""" "Who can access X and why" against the real stack: grants by group rule, refusals, restricted
datasets, run cancellation, and who may ask."""

from __future__ import annotations

import pytest


@pytest.fixture
def fraud(stack, unique):
    """Project fraud-…: an owner by direct membership, 'ada' owner through the rule ml-{project}-admins,
    'bob' with no grant, 'vic' viewer, 'cat' contributor in group 'analysts' (a dataset's readers)."""
    slug = unique("fraud")
    owner_name = unique("own")
    owner = stack.user_token(owner_name)
    assert stack.api("POST", "/projects", owner, json={"slug": slug}).status_code == 201
    names = {
        "owner": owner_name,
        "ada": unique("ada"),
        "bob": unique("bob"),
        "vic": unique("vic"),
        "cat": unique("cat"),
    }
    tokens = {
        "owner": owner,
        "ada": stack.user_token(names["ada"], groups=[f"ml-{slug}-admins"]),
        "bob": stack.user_token(names["bob"]),
        "vic": stack.user_token(names["vic"]),
        "cat": stack.user_token(names["cat"], groups=["analysts"]),
    }
    for who, role in (("vic", "viewer"), ("cat", "contributor")):
        r = stack.api(
            "POST", f"/projects/{slug}/members", owner, json={"kind": "user", "name": names[who], "role": role}
        )
        assert r.status_code == 201, r.text
    assert stack.api("POST", f"/projects/{slug}/datasets", owner, json={"name": "churn"}).status_code == 201
    r = stack.api("PUT", f"/projects/{slug}/datasets/churn/access", owner, json={"reader_groups": ["analysts"]})
    assert r.status_code == 200, r.text
    return slug, names, tokens


def decision(body: dict, action: str) -> dict:
    return next(d for d in body["decisions"] if d["action"] == action)


def test_access_explains_a_grant_by_group_rule(stack, fraud):
    slug, names, t = fraud
    r = stack.api("GET", f"/projects/{slug}/access", t["owner"], params={"principal": f"user:{names['ada']}"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["role"] == "owner"
    assert body["grants"][0]["via"] == "rule"
    assert f"ml-{slug}-admins" in body["grants"][0]["detail"] and "ml-{project}-admins" in body["grants"][0]["detail"]
    assert decision(body, "members:write")["allowed"]
    # the listing names the rule's group with the same explanation
    listing = stack.api("GET", f"/projects/{slug}/access", t["owner"]).json()
    by_name = {i["principal"]: i for i in listing["items"]}
    assert by_name[f"group:ml-{slug}-admins"]["role"] == "owner"
    assert by_name[f"group:ml-{slug}-admins"]["found_as"] == "role-mapping rule"
    assert by_name[f"user:{names['owner']}"]["grants"][0]["via"] == "user"
    assert by_name[f"user:{names['vic']}"]["role"] == "viewer"


def test_access_explains_a_refusal(stack, fraud):
    slug, names, t = fraud
    body = stack.api("GET", f"/projects/{slug}/access", t["owner"], params={"principal": f"user:{names['bob']}"}).json()
    assert body["role"] is None and body["grants"] == []
    read = decision(body, "project:read")
    assert not read["allowed"] and "no role-mapping rule matches" in read["reason"]
    # a viewer may read but not write; the reason names the role needed
    body = stack.api("GET", f"/projects/{slug}/access", t["owner"], params={"principal": f"user:{names['vic']}"}).json()
    assert decision(body, "project:read")["allowed"]
    write = decision(body, "runs:write")
    assert not write["allowed"] and "needs contributor" in write["reason"]


def test_access_to_a_restricted_dataset_follows_its_reader_groups(stack, fraud):
    slug, names, t = fraud
    params = {"resource": "dataset:churn"}
    vic = stack.api(
        "GET", f"/projects/{slug}/access", t["owner"], params={**params, "principal": f"user:{names['vic']}"}
    )
    read = decision(vic.json(), "datasets:read")
    assert not read["allowed"] and "restricted to the groups analysts" in read["reason"]
    cat = stack.api(
        "GET", f"/projects/{slug}/access", t["owner"], params={**params, "principal": f"user:{names['cat']}"}
    )
    read = decision(cat.json(), "datasets:read")
    assert read["allowed"] and "group analysts is one of its readers" in read["reason"]
    # and the explanation matches what the API really does
    assert stack.api("GET", f"/projects/{slug}/datasets/churn", t["vic"]).status_code == 404
    assert stack.api("GET", f"/projects/{slug}/datasets/churn", t["cat"]).status_code == 200


def test_access_explains_run_cancellation(stack, fraud):
    slug, names, t = fraud
    r = stack.api("POST", f"/projects/{slug}/runs", t["owner"], json={})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    cat = stack.api(
        "GET",
        f"/projects/{slug}/access",
        t["owner"],
        params={"resource": f"run:{run_id}", "principal": f"user:{names['cat']}"},
    ).json()
    cancel = decision(cat, "runs:cancel")
    assert not cancel["allowed"] and f"created by {names['owner']!r}" in cancel["reason"]


def test_who_may_ask(stack, fraud):
    slug, names, t = fraud
    # anyone in the project may ask about themselves
    mine = stack.api("GET", f"/projects/{slug}/access", t["vic"], params={"principal": f"user:{names['vic']}"})
    assert mine.status_code == 200 and mine.json()["role"] == "viewer"
    # about others, or the whole listing: maintainers and up
    assert stack.api("GET", f"/projects/{slug}/access", t["vic"]).status_code == 403
    r = stack.api("GET", f"/projects/{slug}/access", t["cat"], params={"principal": f"user:{names['ada']}"})
    assert r.status_code == 403
    # outsiders learn nothing
    assert stack.api("GET", f"/projects/{slug}/access", t["bob"]).status_code == 404


@pytest.mark.parametrize(
    "params,status,reason",
    [
        ({"resource": "dataset"}, 400, "invalid_resource"),
        ({"resource": "table:x"}, 400, "invalid_resource"),
        ({"resource": "dataset:nope"}, 404, "dataset_not_found"),
        ({"principal": "bob"}, 400, "invalid_principal"),
        ({"principal": "service_account:nope"}, 404, "service_account_not_found"),
    ],
)
def test_bad_access_queries_answer_4xx(stack, fraud, params, status, reason):
    slug, _, t = fraud
    r = stack.api("GET", f"/projects/{slug}/access", t["owner"], params=params)
    assert r.status_code == status and r.json()["reason"] == reason, r.text


def test_cli_secrets_and_access(stack, fraud, tmp_path):
    import os
    import secrets as pysecrets
    import subprocess
    import sys

    import leakscan

    slug, names, t = fraud
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANIMUS_", "JUPYTERHUB_"))}
    env.update(
        ANIMUS_CONFIG_DIR=str(tmp_path / "config"), ANIMUS_API_URL=stack.api_url, JUPYTERHUB_API_TOKEN=t["owner"]
    )

    def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "animus.cli.main", *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )

    value = leakscan.register("cli-" + pysecrets.token_hex(12))
    r = cli("secrets", "set", "api-key", "-p", slug, "--stdin", stdin=value + "\n")
    assert r.returncode == 0 and "api-key  version 1" in r.stdout and value not in r.stdout + r.stderr, r.stderr
    r = cli("secrets", "ls", "-p", slug)
    assert r.returncode == 0 and "api-key" in r.stdout and value not in r.stdout
    (tmp_path / "cli-out.txt").write_text(r.stdout)  # under the basetemp: the leak scan reads it too
    r = cli("access", slug, "dataset:churn", "--principal", f"user:{names['vic']}")
    assert r.returncode == 0 and "DENY  datasets:read: dataset 'churn' is restricted" in r.stdout, r.stdout
    r = cli("secrets", "rm", "api-key", "-p", slug)
    assert r.returncode == 0
    r = cli("access", slug, "table:x")
    assert r.returncode != 0 and "invalid_resource" in r.stderr + r.stdout
