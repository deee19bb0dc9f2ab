"""The `animus` and `animus-hub` commands, run as a user would, against the real stack."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import audit_tamper
import pytest
from sqlalchemy import text

from animus_hub import db as dbmod


def run(args: list[str], env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "animus.cli.main", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def env_for(stack, tmp_path):
    def make(token: str | None, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ANIMUS_", "JUPYTERHUB_"))}
        env["ANIMUS_CONFIG_DIR"] = str(tmp_path / "config")
        env["ANIMUS_API_URL"] = stack.api_url
        if token:
            env["JUPYTERHUB_API_TOKEN"] = token  # as in a workspace
        env.update(extra)
        return env

    return make


def test_workflow_projects_members_and_audit_export(stack, env_for, unique):
    owner = unique("cli")
    env = env_for(stack.user_token(owner))
    slug = unique("demo")
    r = run(["projects", "create", slug, "--name", "Demo"], env)
    assert r.returncode == 0 and f"created project {slug}" in r.stdout, r.stderr
    r = run(["projects", "ls", "--json"], env)
    assert [p["slug"] for p in json.loads(r.stdout)] == [slug]
    assert "Demo" in run(["projects", "ls"], env).stdout
    member = unique("m")
    assert run(["members", "add", slug, member, "--role", "contributor"], env).returncode == 0
    assert run(["members", "set-role", slug, member, "maintainer"], env).returncode == 0
    listed = json.loads(run(["members", "ls", slug, "--json"], env).stdout)
    assert {(m["name"], m["role"]) for m in listed} == {(owner, "owner"), (member, "maintainer")}
    assert run(["members", "rm", slug, member], env).returncode == 0
    r = run(["audit", "export", "--project", slug], env)
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [e["action"] for e in lines] == ["project.create", "member.add", "member.update", "member.remove"]
    me = json.loads(run(["whoami", "--json"], env).stdout)
    assert me["name"] == owner


def test_errors_are_one_clear_line_and_exit_1(stack, env_for, unique):
    env = env_for(stack.user_token(unique("err")))
    r = run(["projects", "create", "Not A Slug"], env)
    assert r.returncode == 1
    assert r.stderr.startswith("error: Invalid request body: slug") and "422 validation_failed" in r.stderr
    assert "Traceback" not in r.stderr
    r = run(["projects", "show", "does-not-exist"], env)
    assert r.returncode == 1 and "404 project_not_found" in r.stderr


def test_without_credentials_the_cli_says_how_to_log_in(env_for):
    env = env_for(None)
    r = run(["whoami"], env)
    assert r.returncode == 1 and "animus login" in r.stderr


def test_login_stores_the_token_readable_only_by_the_user(stack, env_for, unique, tmp_path):
    token = stack.user_token(unique("login"))
    env = env_for(None)
    r = run(["login", "--url", stack.api_url, "--token-stdin"], env, stdin=token + "\n")
    assert r.returncode == 0, r.stderr
    path = Path(env["ANIMUS_CONFIG_DIR"]) / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    env.pop("ANIMUS_API_URL")
    assert run(["whoami"], env).returncode == 0
    assert run(["logout"], env).returncode == 0 and not path.exists()
    r = run(["login", "--url", stack.api_url, "--token-stdin"], env, stdin="wrong\n")
    assert r.returncode == 1 and "invalid" in r.stderr and not path.exists()


@pytest.fixture
def admin_env(stack, env_for, unique):
    return env_for(stack.user_token(unique("auditor"), admin=True))


def _tip(stack) -> int:
    engine = dbmod.make_engine(stack.db_url)
    with engine.connect() as conn:
        seq = conn.execute(text("SELECT MAX(seq) FROM audit_event")).scalar_one()
    engine.dispose()
    return seq


def test_audit_verify_names_the_tampered_row_each_time(stack, admin_env, unique):
    # some history to tamper with
    token = stack.user_token(unique("hist"))
    for _ in range(3):
        stack.api("POST", "/projects", token, json={"slug": unique("h")})
    ok = run(["audit", "verify"], admin_env)
    assert ok.returncode == 0 and "intact" in ok.stdout, ok.stdout + ok.stderr
    engine = dbmod.make_engine(stack.db_url)
    tip = _tip(stack)
    try:
        # an edit
        old = audit_tamper.edit_row(engine, tip - 1, "mallory")
        r = run(["audit", "verify"], admin_env)
        assert r.returncode == 1 and f"seq={tip - 1}" in r.stdout and "edited" in r.stdout
        audit_tamper.edit_row(engine, tip - 1, old)
        assert run(["audit", "verify"], admin_env).returncode == 0
        # a deletion
        row = audit_tamper.delete_row(engine, tip - 2)
        r = run(["audit", "verify"], admin_env)
        assert r.returncode == 1 and f"seq={tip - 1}" in r.stdout and "missing" in r.stdout
        audit_tamper.insert_row(engine, row)
        assert run(["audit", "verify"], admin_env).returncode == 0
        # a reordering
        audit_tamper.swap_rows(engine, tip - 2, tip - 1)
        r = run(["audit", "verify"], admin_env)
        assert r.returncode == 1 and f"seq={tip - 2}" in r.stdout
        audit_tamper.swap_rows(engine, tip - 2, tip - 1)
        r = run(["audit", "verify"], admin_env)
        assert r.returncode == 0, r.stdout
        # the operator's offline check sees the same
        old = audit_tamper.edit_row(engine, 1, "mallory")
        off = subprocess.run(
            [sys.executable, "-m", "animus_hub.cli", "audit-verify", "--db-url", stack.db_url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert off.returncode == 1 and "seq=1 " in off.stdout
        audit_tamper.edit_row(engine, 1, old)
        assert run(["audit", "verify"], admin_env).returncode == 0
    finally:
        engine.dispose()


def test_audit_verify_of_an_export_file(stack, admin_env, tmp_path):
    path = tmp_path / "all.jsonl"
    assert run(["audit", "export", "-o", str(path)], admin_env).returncode == 0
    lines = path.read_text().splitlines()
    assert run(["audit", "verify", "--file", str(path)], admin_env).returncode == 0
    record = json.loads(lines[len(lines) // 2])
    record["outcome"] = "denied" if record["outcome"] != "denied" else "success"
    lines[len(lines) // 2] = json.dumps(record)
    path.write_text("\n".join(lines) + "\n")
    r = run(["audit", "verify", "--file", str(path)], admin_env)
    assert r.returncode == 1 and f"seq={record['seq']}" in r.stdout


def test_animus_hub_users_file_management(tmp_path):
    def hub(*args, stdin=None):
        return subprocess.run(
            [sys.executable, "-m", "animus_hub.cli", "users", *args, "--data-dir", str(tmp_path)],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert hub("add", "alice", "--group", "ml-fraud-admins", "--password-stdin", stdin="s3cret-pass\n").returncode == 0
    users = json.loads((tmp_path / "users.json").read_text())["users"]
    assert users["alice"]["groups"] == ["ml-fraud-admins"]
    assert "s3cret-pass" not in (tmp_path / "users.json").read_text()
    assert stat.S_IMODE((tmp_path / "users.json").stat().st_mode) == 0o600
    assert "ml-fraud-admins" in hub("ls").stdout
    bad = hub("add", "Bad Name", "--password-stdin", stdin="x\n")
    assert bad.returncode == 2 and "invalid user name" in bad.stderr
    assert hub("rm", "alice").returncode == 0
    assert hub("rm", "alice").returncode == 1
