"""Project secrets: the stores, the names API, secrets for runs (OpenBao and the local store), log
scrubbing, lease revocation, an unreachable Vault, own-run cancellation.

Real components: an OpenBao dev server (tests/openbao.py), the embedded stack, a git daemon,
real runners. Every value used here is registered with the leak scanner (tests/leakscan.py).
"""

from __future__ import annotations

import base64
import secrets
import stat
import time
import uuid

import gitdaemon
import leakscan
import pytest
from gitdaemon import free_port, git
from openbao import start_bao
from sqlalchemy import select
from stack import HubStack
from test_batch_runs import PINNED, db_session, logs, wait_status  # noqa: F401

from animus.client import AnimusAPIError, Client
from animus.redaction import Redactor
from animus_hub.errors import AnimusError
from animus_hub.orm import AuditEvent, SecretLease
from animus_hub.secrets import SecretNotFound, SecretStoreUnavailable, validate_secret_name
from animus_hub.secrets.local import LocalSecretStore
from animus_hub.secrets.vault import VaultSecretStore

BAD_NAMES = ["..", "a..b", "../x", "a/b", "a\nb", "a\x00b", "", "-x", "x" * 129, "é"]


def new_value() -> str:
    return leakscan.register("s3cr3t-" + secrets.token_urlsafe(18))


# --- names, stores, redaction (no stack) -------------------------------------------------------


@pytest.mark.parametrize("name", BAD_NAMES)
def test_secret_names_with_path_tricks_are_refused(name):
    with pytest.raises(AnimusError) as e:
        validate_secret_name(name)
    assert e.value.status == 422 and e.value.reason == "invalid_secret_name"


def test_local_store_encrypts_writes_0600_and_detects_tampering(tmp_path):
    store = LocalSecretStore(root=str(tmp_path / "store"), key_file=str(tmp_path / "secrets" / "key"))
    value = new_value()
    store.put("fraud", "db-password", value)
    assert store.read("fraud", "db-password") == value
    files = list((tmp_path / "store").rglob("*.v1"))
    assert len(files) == 1 and value.encode() not in files[0].read_bytes()
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secrets" / "key").stat().st_mode) == 0o600
    rotated = new_value()
    store.put("fraud", "db-password", rotated)
    assert store.read("fraud", "db-password") == rotated
    assert not [p for p in files[0].parent.iterdir() if p.name.startswith(".")]  # no temporary file left
    # a file copied under another project's name does not decrypt (the path is bound in)
    other = tmp_path / "store" / "projects" / "other"
    other.mkdir(parents=True)
    (other / "db-password.v1").write_bytes(files[0].read_bytes())
    with pytest.raises(SecretStoreUnavailable):
        store.read("other", "db-password")
    store.delete("fraud", "db-password")
    with pytest.raises(SecretNotFound):
        store.read("fraud", "db-password")


def test_an_unreachable_vault_is_a_clear_store_error_without_the_value():
    value = new_value()
    store = VaultSecretStore(url=f"http://127.0.0.1:{free_port()}", token="t" * 20, timeout=2)
    with pytest.raises(SecretStoreUnavailable) as e:
        store.put("fraud", "db-password", value)
    assert "unreachable" in str(e.value) and value not in str(e.value)


def test_redactor_replaces_plain_base64_and_url_encoded_forms():
    value = "p@ss word/+" + secrets.token_hex(8)
    leakscan.register(value)
    red = Redactor({"db": value, "tiny": "ab"})
    from urllib.parse import quote

    text = f"a {value} b {base64.b64encode(value.encode()).decode()} c {quote(value, safe='')} d ab"
    out = red(text)
    assert value not in out and "[redacted:db]" in out and out.count("[redacted:db]") == 3
    assert out.endswith(" d ab")  # values under 4 characters are not scrubbed


def test_the_leak_scanner_finds_a_planted_value(tmp_path):
    value = "planted-" + secrets.token_hex(8)
    (tmp_path / "clean.log").write_text("nothing here")
    assert leakscan.scan(tmp_path, {value}) == []
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "dump.txt").write_bytes(b"x" + base64.b64encode(value.encode()) + b"y")
    hits = leakscan.scan(tmp_path, {value})
    assert len(hits) == 1 and "dump.txt" in hits[0]


# --- the names API on the embedded stack (local store) ---------------------------------------------


@pytest.fixture
def project(stack, unique):
    owner = stack.user_token(unique("own"))
    slug = unique("sec")
    assert stack.api("POST", "/projects", owner, json={"slug": slug}).status_code == 201
    tokens = {"owner": owner}
    for role in ("viewer", "contributor", "maintainer"):
        name = unique(role[:4])
        tokens[role] = stack.user_token(name)
        r = stack.api("POST", f"/projects/{slug}/members", owner, json={"kind": "user", "name": name, "role": role})
        assert r.status_code == 201, r.text
    return slug, tokens


def test_secret_values_are_write_only_and_names_are_listed(stack, project):
    slug, t = project
    value = new_value()
    r = stack.api("PUT", f"/projects/{slug}/secrets/db-password", t["maintainer"], json={"value": value})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "db-password" and body["version"] == 1 and "value" not in body
    rotated = new_value()
    r = stack.api(
        "PUT", f"/projects/{slug}/secrets/db-password", t["owner"], json={"value": rotated, "description": "db"}
    )
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["updated_by"] != body["created_by"]
    listed = stack.api("GET", f"/projects/{slug}/secrets", t["contributor"]).json()
    assert [i["name"] for i in listed["items"]] == ["db-password"] and listed["store"] == "local"
    meta = stack.api("GET", f"/projects/{slug}/secrets/db-password", t["contributor"]).json()
    assert meta["version"] == 2 and meta["description"] == "db"
    assert value not in stack.api("GET", f"/projects/{slug}/secrets", t["owner"]).text
    # who may do what
    assert stack.api("GET", f"/projects/{slug}/secrets", t["viewer"]).status_code == 403
    r = stack.api("PUT", f"/projects/{slug}/secrets/other", t["contributor"], json={"value": new_value()})
    assert r.status_code == 403
    # every change is audited by name, never with the value
    events = stack.api("GET", f"/projects/{slug}/audit/events", t["owner"], params={"limit": 100}).json()["items"]
    actions = [e["action"] for e in events if e["resource"].endswith("/secrets/db-password")]
    assert "secret.create" in actions and "secret.rotate" in actions
    r = stack.api("DELETE", f"/projects/{slug}/secrets/db-password", t["maintainer"])
    assert r.status_code == 204
    assert stack.api("GET", f"/projects/{slug}/secrets/db-password", t["owner"]).status_code == 404
    assert stack.api("DELETE", f"/projects/{slug}/secrets/db-password", t["owner"]).status_code == 404


# a "..", even percent-encoded, is resolved by the client or the proxy before animus-api sees
# it: that request lands on no route (404); the forms that do reach the route are refused with 422
@pytest.mark.parametrize(
    "raw,status",
    [("a..b", 422), ("a%2Fb", 422), ("a%0Ab", 422), ("x" * 129, 422), ("..", 404), ("%2E%2E", 404)],
)
def test_secret_name_path_tricks_are_refused_and_change_nothing(stack, project, raw, status):
    slug, t = project
    r = stack.api("PUT", f"/projects/{slug}/secrets/{raw}", t["owner"], json={"value": new_value()})
    assert r.status_code == status, r.text
    assert r.json()["reason"] == ("invalid_secret_name" if status == 422 else "route_not_found")
    assert stack.api("GET", f"/projects/{slug}/secrets", t["owner"]).json()["items"] == []


@pytest.mark.parametrize("body", [{"value": ""}, {"value": 5}, {}, {"value": "x", "extra": 1}, {"value": "\x00abc"}])
def test_bad_secret_values_answer_422(stack, project, body):
    slug, t = project
    r = stack.api("PUT", f"/projects/{slug}/secrets/ok", t["owner"], json=body)
    assert r.status_code == 422, r.text
    assert stack.api("GET", f"/projects/{slug}/secrets/ok", t["owner"]).status_code == 404


# --- runs with secrets --------------------------------------------------------------------------------

SCRIPT = """
import base64, os, sys
value = os.environ["DB_PASSWORD"]
print("the password is", value, flush=True)
print("encoded:", base64.b64encode(value.encode()).decode(), flush=True)
print("length", len(value), flush=True)
print("runner credential visible:", any(k.startswith("ANIMUS_VAULT") for k in os.environ), flush=True)
"""
SLEEP = "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n"


@pytest.fixture(scope="module")
def git_repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("git-secrets")
    work = root / "work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    (work / "show.py").write_text(SCRIPT)
    (work / "sleep.py").write_text(SLEEP)
    git("add", ".", cwd=work)
    git("commit", "-q", "-m", "scripts", cwd=work)
    head = git("rev-parse", "HEAD", cwd=work)
    with gitdaemon.serve(work, root) as url:
        yield url, head


RUNS_CONFIG = """
c.RunQueue.heartbeat_interval = 0.5
c.RunQueue.heartbeat_timeout = 6
c.RunQueue.start_timeout = 30
c.RunQueue.retry_base_seconds = 0.2
c.RunQueue.retry_max_seconds = 0.5
c.LocalExecutor.work_dir = {work!r}
c.Scheduler.interval = 0.2
"""
VAULT_CONFIG = """
c.AnimusAPI.secret_store_class = "animus_hub.secrets.vault.VaultSecretStore"
c.VaultSecretStore.url = {addr!r}
c.VaultSecretStore.token_file = {token_file!r}
c.VaultSecretStore.timeout = 3
"""


@pytest.fixture(scope="module", params=["vault", "local"])
def runs(request, tmp_path_factory, git_repo):
    """A stack whose runs take secrets from OpenBao (vault) or the local store; a project with members."""
    root = tmp_path_factory.mktemp(f"secret-runs-{request.param}")
    bao = start_bao(root / "bao") if request.param == "vault" else None
    config = RUNS_CONFIG.format(work=str(root / "runs"))
    if bao is not None:
        config += VAULT_CONFIG.format(addr=bao.addr, token_file=str(bao.token_file))
    s = HubStack(root / "stack", api_config=config)
    try:
        s.start()
        project = f"sr-{uuid.uuid4().hex[:6]}"
        owner = s.user_token(f"owner-{uuid.uuid4().hex[:6]}")
        assert s.api("POST", "/projects", owner, json={"slug": project}).status_code == 201
        client = Client(url=s.api_url, token=owner)
        client.create_environment(project, "py")
        client.add_environment_version(project, "py", PINNED, "# nothing to install\n", {"cpu": 1})
        contributors = {}
        for who in ("alice", "bob"):
            name = f"{who}-{uuid.uuid4().hex[:6]}"
            client.request(
                "POST", f"/projects/{project}/members", json_body={"kind": "user", "name": name, "role": "contributor"}
            )
            contributors[who] = Client(url=s.api_url, token=s.user_token(name))
        yield {"kind": request.param, "stack": s, "bao": bao, "project": project, "owner": client, **contributors}
    finally:
        s.stop()
        if bao is not None:
            bao.stop()


def test_a_run_receives_its_secret_prints_it_and_the_stored_log_is_redacted(runs, git_repo):
    client, project = runs["owner"], runs["project"]
    value = new_value()
    client.set_secret(project, "db-password", value)
    url, head = git_repo
    run = runs["alice"].submit_run(
        project, url, head, ["python", "show.py"], environment="py:1", secrets=["db-password"]
    )
    assert run["job"]["secrets"] == [{"name": "db-password", "env": "DB_PASSWORD"}]
    job = wait_status(client, project, run["id"], ("succeeded", "failed"))
    text = logs(client, project, run["id"])
    assert job["status"] == "succeeded", text
    assert "the password is [redacted:db-password]" in text
    assert "encoded: [redacted:db-password]" in text
    assert f"length {len(value)}" in text  # the command did get the real value
    assert "runner credential visible: False" in text
    assert value not in text and base64.b64encode(value.encode()).decode() not in text
    with db_session(runs["stack"]) as s:
        reads = s.scalars(
            select(AuditEvent).where(
                AuditEvent.action == "secret.read", AuditEvent.resource == f"project/{project}/secrets/db-password"
            )
        ).all()
        assert [e.details["run_id"] for e in reads] == [run["id"]]
        assert reads[0].details["via"] == ("vault" if runs["kind"] == "vault" else "api")
    if runs["kind"] == "vault":
        # the lease is gone after the run: revoked in Vault, its policy deleted
        deadline = time.monotonic() + 20
        while True:
            with db_session(runs["stack"]) as s:
                lease = s.scalars(select(SecretLease).where(SecretLease.run_id == run["id"])).one()
            if lease.revoked_at is not None:
                break
            assert time.monotonic() < deadline, "the run's Vault token was not revoked"
            time.sleep(0.2)
        policy, _, accessor = lease.lease_id.partition("/")
        vault = runs["bao"].client()
        import hvac.exceptions as hx

        with pytest.raises((hx.InvalidRequest, hx.Forbidden)):
            vault.auth.token.lookup_accessor(accessor)
        with pytest.raises(hx.InvalidPath):
            vault.sys.read_acl_policy(policy)
        # and the value is in Vault, at the project's path
        with leakscan.unrecorded():
            stored = vault.secrets.kv.v2.read_secret_version(
                path=f"animus/projects/{project}/db-password", mount_point="secret"
            )
        assert stored["data"]["data"]["value"] == value


def test_a_run_naming_an_unknown_secret_or_a_bad_variable_is_refused(runs, git_repo):
    client, project = runs["owner"], runs["project"]
    url, head = git_repo
    for kw, reason in (
        ({"secrets": ["nope"]}, "secret_not_found"),
        ({"secrets": ["../etc"]}, "invalid_secret_name"),
        ({"secrets": {"db-password": "PATH"}}, "invalid_secret_env"),
        ({"secrets": {"db-password": "ANIMUS_TOKEN"}}, "invalid_secret_env"),
        ({"git_credentials": "missing"}, "secret_not_found"),
    ):
        client.set_secret(project, "db-password", new_value())
        with pytest.raises(AnimusAPIError) as e:
            client.submit_run(project, url, head, ["python", "show.py"], environment="py:1", **kw)
        assert e.value.status == 422 and e.value.reason == reason, kw


def test_contributors_cancel_only_their_own_runs_maintainers_any(runs, git_repo):
    client, project = runs["owner"], runs["project"]
    url, head = git_repo
    run = runs["alice"].submit_run(project, url, head, ["python", "sleep.py"], environment="py:1")
    with pytest.raises(AnimusAPIError) as e:
        runs["bob"].cancel_run(project, run["id"])
    assert e.value.status == 403 and "created by" in e.value.message
    assert runs["alice"].cancel_run(project, run["id"])["status"] == "cancelled"
    other = runs["bob"].submit_run(project, url, head, ["python", "sleep.py"], environment="py:1")
    assert client.cancel_run(project, other["id"])["status"] == "cancelled"  # the owner may cancel anyone's


def test_vault_unreachable_answers_503_and_runs_retry_then_fail_with_the_reason(runs, git_repo):
    if runs["kind"] != "vault":
        pytest.skip("only a Vault store can be unreachable")
    client, project = runs["owner"], runs["project"]
    url, head = git_repo
    client.set_secret(project, "api-key", new_value())
    runs["bao"].stop()
    value = new_value()
    with pytest.raises(AnimusAPIError) as e:
        client.set_secret(project, "api-key", value)
    assert e.value.status == 503 and e.value.reason == "secret_store_unavailable"
    assert client.secret(project, "api-key")["version"] == 1  # nothing changed
    run = client.submit_run(
        project,
        url,
        head,
        ["python", "show.py"],
        environment="py:1",
        secrets={"api-key": "DB_PASSWORD"},
        infra_retries=1,
    )
    job = wait_status(client, project, run["id"], ("succeeded", "failed"), timeout=60)
    assert job["status"] == "failed" and job["infra_failures"] == 2
    assert "secret store is unavailable" in job["message"]
