"""Projects, members, role mapping and tokens through the real stack (both backends)."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from sqlalchemy import select

from animus_hub import db as dbmod
from animus_hub.auth.tokens import issue_token
from animus_hub.orm import Project, ServiceAccount, utcnow


@pytest.fixture(scope="module")
def alice(stack, unique):
    name = unique("alice")
    return name, stack.user_token(name)


@pytest.fixture(scope="module")
def admin_token(stack, unique):
    return stack.user_token(unique("root"), admin=True)


def counts(stack, admin_token) -> tuple[int, int]:
    """(number of projects an admin sees incl. archived, audit chain length)."""
    projects = stack.api("GET", "/projects", admin_token, params={"archived": "true", "limit": 500}).json()["items"]
    head = stack.api("GET", "/audit/head", admin_token).json()
    return len(projects), head["seq"]


def success_events(stack, admin_token, since_seq: int) -> list[dict]:
    items = stack.api("GET", "/audit/events", admin_token, params={"limit": 5000}).json()["items"]
    return [e for e in items if e["seq"] > since_seq and e["outcome"] == "success"]


# --- happy paths -------------------------------------------------------------


def test_project_lifecycle(stack, alice, unique):
    name, token = alice
    slug = unique("life")
    r = stack.api("POST", "/projects", token, json={"slug": slug, "display_name": "Life", "description": "d"})
    assert r.status_code == 201
    assert r.json()["role"] == "owner" and r.json()["created_by"] == name
    assert stack.api("GET", f"/projects/{slug}", token).json()["display_name"] == "Life"
    r = stack.api("PATCH", f"/projects/{slug}", token, json={"display_name": "Life 2"})
    assert r.status_code == 200 and r.json()["display_name"] == "Life 2"
    assert stack.api("POST", f"/projects/{slug}/archive", token).json()["archived"] is True
    listed = [p["slug"] for p in stack.api("GET", "/projects", token).json()["items"]]
    assert slug not in listed
    listed = [p["slug"] for p in stack.api("GET", "/projects", token, params={"archived": "true"}).json()["items"]]
    assert slug in listed
    r = stack.api("PATCH", f"/projects/{slug}", token, json={"description": "no"})
    assert r.status_code == 409 and r.json()["reason"] == "project_archived"
    assert stack.api("POST", f"/projects/{slug}/unarchive", token).json()["archived"] is False
    events = stack.api("GET", f"/projects/{slug}/audit/events", token).json()["items"]
    assert [e["action"] for e in events if e["outcome"] == "success"] == [
        "project.create",
        "project.update",
        "project.archive",
        "project.unarchive",
    ]
    assert all(e["actor"] == name and e["project"] == slug for e in events)


def test_project_creation_is_in_the_outbox(stack, alice, unique):
    _, token = alice
    slug = unique("evt")
    stack.api("POST", "/projects", token, json={"slug": slug})
    engine = dbmod.make_engine(stack.db_url)
    from animus_hub.orm import OutboxEvent

    with dbmod.make_session_factory(engine)() as s:
        types = s.scalars(
            select(OutboxEvent.type).join(Project, OutboxEvent.project_id == Project.id).where(Project.slug == slug)
        ).all()
    engine.dispose()
    assert types == ["ProjectCreated"]


def test_members_roles_and_last_owner(stack, alice, unique):
    name, token = alice
    slug = unique("team")
    stack.api("POST", "/projects", token, json={"slug": slug})
    bob = unique("bob")
    bob_token = stack.user_token(bob)
    assert stack.api("GET", f"/projects/{slug}", bob_token).status_code == 404
    r = stack.api("POST", f"/projects/{slug}/members", token, json={"kind": "user", "name": bob, "role": "viewer"})
    assert r.status_code == 201
    assert stack.api("GET", f"/projects/{slug}", bob_token).json()["role"] == "viewer"
    r = stack.api("POST", f"/projects/{slug}/members", token, json={"kind": "user", "name": bob, "role": "owner"})
    assert r.status_code == 409 and r.json()["reason"] == "member_exists"
    assert (
        stack.api("PUT", f"/projects/{slug}/members/users/{bob}", token, json={"role": "maintainer"}).json()["role"]
        == "maintainer"
    )
    # the only owner cannot be demoted or removed
    r = stack.api("PUT", f"/projects/{slug}/members/users/{name}", token, json={"role": "viewer"})
    assert r.status_code == 409 and r.json()["reason"] == "last_owner"
    assert stack.api("DELETE", f"/projects/{slug}/members/users/{name}", token).status_code == 409
    assert stack.api("DELETE", f"/projects/{slug}/members/users/{bob}", token).status_code == 204
    assert stack.api("GET", f"/projects/{slug}", bob_token).status_code == 404
    r = stack.api("GET", f"/projects/{slug}/members/users/{bob}", token)
    assert r.status_code == 404 and r.json()["reason"] == "member_not_found"


def test_group_membership_grants_the_group_role(stack, alice, unique):
    _, token = alice
    slug = unique("grp")
    stack.api("POST", "/projects", token, json={"slug": slug})
    group = unique("analysts")
    stack.api("POST", f"/projects/{slug}/members", token, json={"kind": "group", "name": group, "role": "contributor"})
    carol = stack.user_token(unique("carol"), groups=[group])
    assert stack.api("GET", f"/projects/{slug}", carol).json()["role"] == "contributor"
    # the highest of several grants wins
    dave_name = unique("dave")
    stack.api(
        "POST", f"/projects/{slug}/members", token, json={"kind": "user", "name": dave_name, "role": "maintainer"}
    )
    dave = stack.user_token(dave_name, groups=[group])
    assert stack.api("GET", f"/projects/{slug}", dave).json()["role"] == "maintainer"


def test_configured_group_pattern_rules_map_idp_groups_to_roles(stack, alice, unique):
    _, token = alice
    slug = unique("fraud")
    stack.api("POST", "/projects", token, json={"slug": slug})
    erin_name = unique("erin")
    erin = stack.user_token(erin_name, groups=[f"ml-{slug}-admins"])
    r = stack.api("GET", f"/projects/{slug}", erin)
    assert r.status_code == 200 and r.json()["role"] == "owner"
    assert slug in [p["slug"] for p in stack.api("GET", "/projects", erin).json()["items"]]
    # losing the group loses the role (a new token is a new identity lookup)
    erin_without = stack.user_token(erin_name, groups=[])
    assert stack.api("GET", f"/projects/{slug}", erin_without).status_code == 404
    reader = stack.user_token(unique("frank"), groups=[f"ml-{slug}-readers"])
    assert stack.api("GET", f"/projects/{slug}", reader).json()["role"] == "viewer"
    assert stack.api("PATCH", f"/projects/{slug}", reader, json={"description": "x"}).status_code == 403


def test_role_mapping_rules_added_through_the_api_apply_at_once(stack, alice, admin_token, unique):
    _, token = alice
    slug = unique("rm")
    stack.api("POST", "/projects", token, json={"slug": slug})
    group = unique("science")
    gina = stack.user_token(unique("gina"), groups=[group])
    assert stack.api("GET", f"/projects/{slug}", gina).status_code == 404
    r = stack.api(
        "POST", "/role-mappings", admin_token, json={"group_pattern": group, "project": slug, "role": "contributor"}
    )
    assert r.status_code == 201 and r.json()["source"] == "api"
    assert stack.api("GET", f"/projects/{slug}", gina).json()["role"] == "contributor"
    rules = stack.api("GET", "/role-mappings", admin_token).json()["items"]
    assert {
        "group_pattern": "ml-{project}-admins",
        "role": "owner",
        "project": None,
        "source": "config",
        "id": None,
    } in rules
    assert stack.api("DELETE", f"/role-mappings/{r.json()['id']}", admin_token).status_code == 204
    assert stack.api("GET", f"/projects/{slug}", gina).status_code == 404


def test_platform_admin_sees_every_project(stack, alice, admin_token, unique):
    _, token = alice
    slug = unique("priv")
    stack.api("POST", "/projects", token, json={"slug": slug})
    assert stack.api("GET", f"/projects/{slug}", admin_token).json()["role"] == "owner"


def test_whoami_version_health(stack, alice):
    name, token = alice
    me = stack.api("GET", "/whoami", token).json()
    # an ordinary token is bound to no project
    assert me == {"kind": "user", "name": name, "groups": [], "admin": False, "project": None, "token_project": None}
    v = stack.api("GET", "/version", token).json()
    assert v["api"] == "v1" and v["version"]
    assert stack.api("GET", "/health").json() == {"status": "ok"}


# --- lists and idempotency ---------------------------------------------------


def test_cursor_pagination_is_complete_and_stable(stack, unique):
    token = stack.user_token(unique("pager"))
    slugs = [unique("pg") for _ in range(7)]
    for s in slugs:
        assert stack.api("POST", "/projects", token, json={"slug": s}).status_code == 201
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = stack.api("GET", "/projects", token, params=params).json()
        seen += [p["slug"] for p in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == slugs and pages == 3
    for bad in ("!!", "eyJhZnRlciI6ICJ4In0", "e30"):
        r = stack.api("GET", "/projects", token, params={"cursor": bad})
        assert r.status_code == 400 and r.json()["reason"] == "invalid_cursor"
    for bad in ("0", "-1", "100000", "ten"):
        r = stack.api("GET", "/projects", token, params={"limit": bad})
        assert r.status_code == 400 and r.json()["reason"] == "invalid_limit"


def test_idempotency_key_replays_the_first_answer(stack, alice, admin_token, unique):
    _, token = alice
    slug = unique("idem")
    key = uuid.uuid4().hex
    first = stack.api("POST", "/projects", token, json={"slug": slug}, headers={"Idempotency-Key": key})
    before = counts(stack, admin_token)
    again = stack.api("POST", "/projects", token, json={"slug": slug}, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert counts(stack, admin_token) == before
    other = stack.api("POST", "/projects", token, json={"slug": unique("idem")}, headers={"Idempotency-Key": key})
    assert other.status_code == 422 and other.json()["reason"] == "idempotency_key_reused"
    # without the key, a repeat is a conflict
    assert stack.api("POST", "/projects", token, json={"slug": slug}).status_code == 409


# --- bad input ---------------------------------------------------------------

BAD_BODIES = [
    (b"{not json", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_json"),
    (b"", 400, "invalid_json"),
    (b"\xff\xfe", 400, "invalid_json"),
    (json.dumps({"slug": "ok-slug", "colour": "red"}).encode(), 422, "validation_failed"),
    (json.dumps({"slug": 42}).encode(), 422, "validation_failed"),
    (json.dumps({"slug": "UPPER"}).encode(), 422, "validation_failed"),
    (json.dumps({"slug": "a"}).encode(), 422, "validation_failed"),
    (json.dumps({"slug": "x" * 64}).encode(), 422, "validation_failed"),
    (json.dumps({"slug": "../etc"}).encode(), 422, "validation_failed"),
    (json.dumps({"slug": "ok-slug", "display_name": "n" * 201}).encode(), 422, "validation_failed"),
    (json.dumps({"slug": "ok-slug", "display_name": None, "description": 7}).encode(), 422, "validation_failed"),
    (json.dumps({"slug": "ok-slug\u0000"}).encode(), 422, "validation_failed"),
]


@pytest.mark.parametrize("body,status,reason", BAD_BODIES)
def test_bad_project_bodies_are_refused_and_change_nothing(stack, alice, admin_token, body, status, reason):
    _, token = alice
    before = counts(stack, admin_token)
    r = stack.api("POST", "/projects", token, data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status and r.json()["reason"] == reason, r.text
    assert r.json()["message"]
    after = counts(stack, admin_token)
    assert after[0] == before[0]
    # the only new audit event is the failed attempt itself
    new = stack.api("GET", "/audit/events", admin_token, params={"limit": 5000}).json()["items"][before[1] :]
    assert [(e["outcome"], e["actor"]) for e in new if e["action"] == "projects:create"] == [("failure", alice[0])]


def test_oversize_body_is_refused_with_413(stack, alice):
    _, token = alice
    r = stack.api(
        "POST",
        "/projects",
        token,
        data=b"{" + b" " * (2 * 1024 * 1024) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["reason"] == "request_too_large"


def test_bad_member_input(stack, alice, unique):
    _, token = alice
    slug = unique("bad")
    stack.api("POST", "/projects", token, json={"slug": slug})
    for body in (
        {"kind": "robot", "name": "x", "role": "viewer"},
        {"kind": "user", "name": "x", "role": "god"},
        {"kind": "user", "name": "has/slash", "role": "viewer"},
        {"kind": "user", "name": " padded ", "role": "viewer"},
        {"kind": "user", "name": "n" * 256, "role": "viewer"},
        {"kind": "user", "name": "x"},
    ):
        r = stack.api("POST", f"/projects/{slug}/members", token, json=body)
        assert r.status_code == 422, (body, r.text)
    assert len(stack.api("GET", f"/projects/{slug}/members", token).json()["items"]) == 1
    r = stack.api("PUT", f"/projects/{slug}/members/robots/x", token, json={"role": "viewer"})
    assert r.status_code == 404


def test_bad_tokens_are_refused(stack):
    for header in ("Bearer not-a-real-token", "Bearer anm_000000000000_" + "x" * 43, "Basic dXNlcjpwdw==", "Bearer"):
        r = stack.http.get(stack.api_url + "/whoami", headers={"Authorization": header}, timeout=30)
        assert r.status_code == 401, (header, r.text)
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_route_is_a_json_404(stack, alice):
    _, token = alice
    r = stack.api("GET", "/no/such/thing", token)
    assert r.status_code == 404 and r.json()["reason"] == "route_not_found"


# --- Animus tokens (service accounts) -------------------------------------------


def test_service_account_token_is_bound_to_its_project(stack, alice, unique):
    _, token = alice
    slug, other = unique("sa"), unique("sa-other")
    stack.api("POST", "/projects", token, json={"slug": slug})
    stack.api("POST", "/projects", token, json={"slug": other})
    engine = dbmod.make_engine(stack.db_url)
    factory = dbmod.make_session_factory(engine)
    with factory() as s:
        project = s.scalar(select(Project).where(Project.slug == slug))
        sa = ServiceAccount(project_id=project.id, name="ci", role="maintainer", created_by="test")
        s.add(sa)
        _, value = issue_token(s, kind="service_account", project=project, created_by="test", service_account=sa)
        tok, expired = issue_token(
            s,
            kind="service_account",
            project=project,
            created_by="test",
            service_account=sa,
            expires_in=dt.timedelta(seconds=-1),
        )
        s.commit()
        _, revoked_value = issue_token(
            s, kind="service_account", project=project, created_by="test", service_account=sa
        )
        s.commit()
        revoked_row = s.scalars(select(type(tok)).order_by(type(tok).id.desc())).first()
        revoked_row.revoked_at = utcnow()
        s.commit()
    engine.dispose()
    me = stack.api("GET", "/whoami", value).json()
    assert me["kind"] == "service_account" and me["project"] == slug and me["role"] == "maintainer"
    assert stack.api("PATCH", f"/projects/{slug}", value, json={"description": "by ci"}).status_code == 200
    assert stack.api("GET", f"/projects/{other}", value).status_code == 404
    assert [p["slug"] for p in stack.api("GET", "/projects", value).json()["items"]] == [slug]
    # service accounts cannot create projects
    assert stack.api("POST", "/projects", value, json={"slug": unique("sa-new")}).status_code == 403
    assert stack.api("GET", "/whoami", expired).status_code == 401
    assert stack.api("GET", "/whoami", revoked_value).status_code == 401
    # the value is not stored anywhere in the database
    engine = dbmod.make_engine(stack.db_url)
    with engine.connect() as conn:
        from sqlalchemy import text

        rows = conn.execute(text("SELECT prefix, secret_hash FROM token")).all()
    engine.dispose()
    secret = value.split("_", 2)[2]
    assert all(secret not in (p + h) for p, h in rows)


def test_unsupported_methods_answer_405_with_the_allowed_ones(stack, alice):
    _, token = alice
    r = stack.api("PUT", "/projects", token, json={})
    assert r.status_code == 405 and r.json()["reason"] == "method_not_allowed"
    assert r.headers["Allow"] == "GET, POST"
    assert r.headers["X-Request-Id"]


def test_health_is_public_and_ignores_any_token(stack):
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "garbage"}):
        r = stack.http.get(stack.api_url + "/health", headers=headers, timeout=30)
        assert r.status_code == 200 and r.json() == {"status": "ok"}
