"""Service accounts and their tokens through the real stack (both backends)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import MetaData, select

from animus_hub import db as dbmod

DAY = 24 * 3600


@pytest.fixture(scope="module")
def people(stack, unique):
    """An owner, a maintainer and a viewer of a fresh project, and an admin."""
    tokens = {role: stack.user_token(unique(role)) for role in ("owner", "maintainer", "viewer")}
    names = {role: stack.api("GET", "/whoami", t).json()["name"] for role, t in tokens.items()}
    tokens["admin"] = stack.user_token(unique("root"), admin=True)
    slug = unique("sa")
    assert stack.api("POST", "/projects", tokens["owner"], json={"slug": slug}).status_code == 201
    for role in ("maintainer", "viewer"):
        r = stack.api(
            "POST",
            f"/projects/{slug}/members",
            tokens["owner"],
            json={"kind": "user", "name": names[role], "role": role},
        )
        assert r.status_code == 201, r.text
    return {"slug": slug, "tokens": tokens, "names": names, "issued": []}


def base(people) -> str:
    return f"/projects/{people['slug']}/service-accounts"


def create_sa(stack, people, name: str, role: str = "contributor", as_: str = "maintainer"):
    return stack.api(
        "POST", base(people), people["tokens"][as_], json={"name": name, "role": role, "description": "ci"}
    )


def issue(stack, people, name: str, as_: str = "maintainer", headers: dict | None = None, **body):
    body.setdefault("expires_in", DAY)
    r = stack.api("POST", f"{base(people)}/{name}/tokens", people["tokens"][as_], json=body, headers=headers)
    if r.status_code == 201 and r.json()["token"]:
        people["issued"].append(r.json()["token"])
    return r


def test_maintainer_creates_a_service_account_viewers_see_it(stack, people):
    r = create_sa(stack, people, "ci")
    assert r.status_code == 201, r.text
    sa = r.json()
    assert (sa["name"], sa["role"], sa["disabled"], sa["created_by"]) == (
        "ci",
        "contributor",
        False,
        people["names"]["maintainer"],
    )
    assert create_sa(stack, people, "ci").json()["reason"] == "service_account_exists"
    listed = stack.api("GET", base(people), people["tokens"]["viewer"]).json()["items"]
    assert [s["name"] for s in listed] == ["ci"]
    assert stack.api("GET", f"{base(people)}/ci", people["tokens"]["viewer"]).json()["role"] == "contributor"
    # viewers may see that it exists, not manage it or its tokens
    assert create_sa(stack, people, "nope", as_="viewer").status_code == 403
    assert stack.api("GET", f"{base(people)}/ci/tokens", people["tokens"]["viewer"]).status_code == 403
    assert issue(stack, people, "ci", as_="viewer").status_code == 403
    r = stack.api("PATCH", f"{base(people)}/ci", people["tokens"]["maintainer"], json={"description": "GitLab CI"})
    assert r.status_code == 200 and r.json()["description"] == "GitLab CI"
    bad = stack.api("POST", base(people), people["tokens"]["maintainer"], json={"name": "Bad/Name", "role": "viewer"})
    assert bad.status_code == 422


def test_role_ceiling(stack, people):
    r = create_sa(stack, people, "deployer", role="owner")
    assert r.status_code == 403 and r.json()["reason"] == "role_above_yours"
    assert create_sa(stack, people, "deployer", role="owner", as_="owner").status_code == 201
    # a maintainer may neither mint a token for an owner-level account nor change it
    r = issue(stack, people, "deployer")
    assert r.status_code == 403 and r.json()["reason"] == "role_above_yours"
    r = stack.api("PATCH", f"{base(people)}/deployer", people["tokens"]["maintainer"], json={"role": "viewer"})
    assert r.status_code == 403
    # nor raise one of its own accounts above its role
    create_sa(stack, people, "builder", role="viewer")
    r = stack.api("PATCH", f"{base(people)}/builder", people["tokens"]["maintainer"], json={"role": "owner"})
    assert r.status_code == 403 and r.json()["reason"] == "role_above_yours"
    r = stack.api("PATCH", f"{base(people)}/builder", people["tokens"]["maintainer"], json={"role": "maintainer"})
    assert r.status_code == 200 and r.json()["role"] == "maintainer"
    # the owner may
    assert issue(stack, people, "deployer", as_="owner").status_code == 201


def test_token_value_is_shown_once_and_works(stack, people):
    create_sa(stack, people, "once", role="maintainer")
    r = issue(stack, people, "once", note="GitLab CI", headers={"Idempotency-Key": "k1"})
    assert r.status_code == 201, r.text
    body = r.json()
    value, prefix = body["token"], body["prefix"]
    assert value.startswith(f"anm_{prefix}_")
    assert (body["note"], body["scopes"], body["state"], body["last_used_at"]) == ("GitLab CI", [], "active", None)
    # the listing never shows the value or its hash
    listed = stack.api("GET", f"{base(people)}/once/tokens", people["tokens"]["maintainer"])
    assert listed.status_code == 200
    assert value not in listed.text and value.split("_", 2)[2] not in listed.text
    (item,) = listed.json()["items"]
    assert set(item) == {
        "prefix",
        "note",
        "scopes",
        "created_at",
        "created_by",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "state",
    }
    # a retry with the same Idempotency-Key gets the metadata, not the value
    again = issue(stack, people, "once", note="GitLab CI", headers={"Idempotency-Key": "k1"})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["token"] is None and again.json()["prefix"] == prefix
    # the token works: a maintainer-level service account bound to the project
    me = stack.api("GET", "/whoami", value).json()
    assert (me["kind"], me["name"], me["project"], me["role"]) == (
        "service_account",
        "once",
        people["slug"],
        "maintainer",
    )
    assert stack.api("PATCH", f"/projects/{people['slug']}", value, json={"description": "by ci"}).status_code == 200
    (item,) = stack.api("GET", f"{base(people)}/once/tokens", people["tokens"]["maintainer"]).json()["items"]
    assert item["last_used_at"] is not None
    # a token cannot create service accounts or mint tokens, whatever its role
    r = stack.api("POST", f"{base(people)}/once/tokens", value, json={"expires_in": DAY})
    assert r.status_code == 403
    # expiry above the server's maximum (365 days by default) is refused
    r = issue(stack, people, "once", expires_in=366 * DAY)
    assert r.status_code == 422 and r.json()["reason"] == "expires_in_too_long"
    assert issue(stack, people, "once", expires_in=0).status_code == 422
    assert stack.api("POST", f"{base(people)}/once/tokens", people["tokens"]["maintainer"], json={}).status_code == 422


def test_read_scoped_token_reads_but_cannot_write(stack, people, unique):
    create_sa(stack, people, "reader", role="maintainer")
    value = issue(stack, people, "reader", scopes=["read"]).json()["token"]
    slug = people["slug"]
    assert stack.api("GET", f"/projects/{slug}", value).status_code == 200
    assert stack.api("GET", "/projects", value).status_code == 200
    request_id = unique("rq")
    r = stack.api(
        "PATCH", f"/projects/{slug}", value, json={"description": "nope"}, headers={"X-Request-Id": request_id}
    )
    assert r.status_code == 403 and r.json()["reason"] == "insufficient_scope"
    events = stack.api(
        "GET",
        "/audit/events",
        people["tokens"]["admin"],
        params={"outcome": "denied", "actor": "reader", "limit": 5000},
    ).json()["items"]
    assert any(
        e["request_id"] == request_id
        and e["actor_kind"] == "service_account"
        and e["details"]["reason"] == "insufficient_scope"
        for e in events
    )
    # a write-scoped token of the same account may write
    full = issue(stack, people, "reader", scopes=["write"]).json()["token"]
    assert stack.api("PATCH", f"/projects/{slug}", full, json={"description": "ok"}).status_code == 200
    assert issue(stack, people, "reader", scopes=["admin"]).status_code == 422


def test_rotation_overlap_then_revocation_is_immediate(stack, people):
    create_sa(stack, people, "rotor")
    old = issue(stack, people, "rotor").json()
    slug = people["slug"]
    assert stack.api("GET", f"/projects/{slug}", old["token"]).status_code == 200
    new = issue(stack, people, "rotor").json()
    # during the overlap both work
    for _ in range(2):
        assert stack.api("GET", f"/projects/{slug}", old["token"]).status_code == 200
        assert stack.api("GET", f"/projects/{slug}", new["token"]).status_code == 200
    r = stack.api("DELETE", f"{base(people)}/rotor/tokens/{old['prefix']}", people["tokens"]["maintainer"])
    assert r.status_code == 204
    # at once: the very next request with the old token is refused
    r = stack.api("GET", f"/projects/{slug}", old["token"])
    assert r.status_code == 401 and r.json()["reason"] == "invalid_token"
    assert stack.api("GET", f"/projects/{slug}", new["token"]).status_code == 200
    states = {
        t["prefix"]: t["state"]
        for t in stack.api("GET", f"{base(people)}/rotor/tokens", people["tokens"]["maintainer"]).json()["items"]
    }
    assert states == {old["prefix"]: "revoked", new["prefix"]: "active"}
    # revoking again is harmless; an unknown prefix is 404
    r = stack.api("DELETE", f"{base(people)}/rotor/tokens/{old['prefix']}", people["tokens"]["maintainer"])
    assert r.status_code == 204
    r = stack.api("DELETE", f"{base(people)}/rotor/tokens/000000000000", people["tokens"]["maintainer"])
    assert r.status_code == 404


def test_disabling_a_service_account_stops_all_its_tokens(stack, people):
    create_sa(stack, people, "gone")
    values = [issue(stack, people, "gone").json()["token"] for _ in range(2)]
    assert all(stack.api("GET", "/whoami", v).status_code == 200 for v in values)
    assert stack.api("DELETE", f"{base(people)}/gone", people["tokens"]["maintainer"]).status_code == 204
    assert all(stack.api("GET", "/whoami", v).status_code == 401 for v in values)
    # it is kept (disabled) for the record, out of the default listing; its tokens read revoked
    sa = stack.api("GET", f"{base(people)}/gone", people["tokens"]["viewer"]).json()
    assert sa["disabled"] is True
    listed = stack.api("GET", base(people), people["tokens"]["viewer"]).json()["items"]
    assert "gone" not in [s["name"] for s in listed]
    listed = stack.api("GET", base(people), people["tokens"]["viewer"], params={"disabled": "true"}).json()["items"]
    assert "gone" in [s["name"] for s in listed]
    tokens = stack.api("GET", f"{base(people)}/gone/tokens", people["tokens"]["maintainer"]).json()["items"]
    assert {t["state"] for t in tokens} == {"revoked"}
    assert issue(stack, people, "gone").json()["reason"] == "service_account_disabled"
    assert create_sa(stack, people, "gone").json()["reason"] == "service_account_exists"


def test_expired_token_is_refused(stack, people):
    create_sa(stack, people, "brief")
    r = issue(stack, people, "brief", expires_in=1)
    value = r.json()["token"]
    time.sleep(1.5)
    r = stack.api("GET", "/whoami", value)
    assert r.status_code == 401 and r.json()["reason"] == "invalid_token"
    (item,) = stack.api("GET", f"{base(people)}/brief/tokens", people["tokens"]["maintainer"]).json()["items"]
    assert item["state"] == "expired"


def test_token_of_project_a_is_404_on_project_b(stack, people, unique):
    other = unique("sa-b")
    assert stack.api("POST", "/projects", people["tokens"]["owner"], json={"slug": other}).status_code == 201
    create_sa(stack, people, "bound", role="maintainer")
    value = issue(stack, people, "bound").json()["token"]
    assert stack.api("GET", f"/projects/{other}", value).status_code == 404
    assert stack.api("PATCH", f"/projects/{other}", value, json={"description": "x"}).status_code == 404
    assert stack.api("GET", f"/projects/{other}/service-accounts", value).status_code == 404
    # the same account name in B knows nothing of A's token
    assert stack.api("GET", f"/projects/{other}/service-accounts/bound", people["tokens"]["owner"]).status_code == 404


def test_cli_create_issue_list_revoke(stack, people, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANIMUS_", "JUPYTERHUB_"))}
    env.update(
        ANIMUS_CONFIG_DIR=str(tmp_path / "config"),
        ANIMUS_API_URL=stack.api_url,
        ANIMUS_TOKEN=people["tokens"]["maintainer"],
        ANIMUS_PROJECT=people["slug"],
    )

    def cli(*args: str) -> subprocess.CompletedProcess:
        r = subprocess.run(
            # the console script: under `python -m animus.cli.main` sub-command modules
            # register on a second copy of `main` (as `animus datasets` does)
            [os.path.join(os.path.dirname(sys.executable), "animus"), "service-accounts", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return r

    r = cli("create", "cli-bot", "--role", "viewer", "--description", "nightly")
    assert r.returncode == 0 and "created service account cli-bot" in r.stdout, r.stderr
    assert "cli-bot" in cli("ls").stdout
    r = cli("issue", "cli-bot", "--expires-in", "7d", "--note", "nightly", "--read-only")
    assert r.returncode == 0, r.stderr
    value = r.stdout.strip()
    people["issued"].append(value)
    assert value.startswith("anm_") and "not shown again" in r.stderr
    prefix = value.split("_")[1]
    me = stack.api("GET", "/whoami", value).json()
    assert (me["name"], me["role"]) == ("cli-bot", "viewer")
    (t,) = json.loads(cli("tokens", "cli-bot", "--json").stdout)
    assert (t["prefix"], t["scopes"], t["note"]) == (prefix, ["read"], "nightly")
    table = cli("tokens", "cli-bot").stdout
    assert prefix in table and value not in table
    assert cli("revoke", "cli-bot", prefix).returncode == 0
    assert stack.api("GET", "/whoami", value).status_code == 401
    r = cli("issue", "cli-bot", "--expires-in", "soon")
    assert r.returncode != 0 and "duration" in r.stderr
    r = cli("create", "boss", "--role", "owner")
    assert r.returncode == 1 and "role_above_yours" in r.stderr
    assert cli("disable", "cli-bot").returncode == 0


def test_audit_trail_has_the_events_and_no_token_values(stack, people):
    """Runs last in this module: every value issued above is checked against the trail, DB and log."""
    assert people["issued"], "the tests above issued tokens"
    events = stack.api(
        "GET", f"/projects/{people['slug']}/audit/events", people["tokens"]["owner"], params={"limit": 5000}
    ).json()["items"]
    actions = {e["action"] for e in events if e["outcome"] == "success"}
    assert {
        "service_account.create",
        "service_account.update",
        "service_account.disable",
        "service_account.token.create",
        "service_account.token.revoke",
    } <= actions
    created = [e for e in events if e["action"] == "service_account.token.create" and e["outcome"] == "success"]
    assert all(set(e["details"]) == {"prefix", "scopes", "expires_at"} for e in created)
    # the whole export (platform-wide) holds none of the values, nor their secret halves
    export = json.dumps(
        stack.api("GET", "/audit/events", people["tokens"]["admin"], params={"limit": 5000}).json()["items"]
    )
    secrets_ = [v.split("_", 2)[2] for v in people["issued"]]
    assert not [s for s in secrets_ if s in export]
    # nor does any table of the database (idempotency records included), nor the stack's log
    engine = dbmod.make_engine(stack.db_url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            dump = "\n".join(repr(row) for table in meta.sorted_tables for row in conn.execute(select(table)))
    finally:
        engine.dispose()
    assert not [s for s in secrets_ if s in dump]
    log = stack.log_path.read_text(errors="replace")
    assert not [s for s in secrets_ if s in log]
