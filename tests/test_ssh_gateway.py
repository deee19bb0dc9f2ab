"""SSH into project workspaces: keys through the API, the gateway against a real stack.

The stack runs the gateway (animus-ssh) as a hub-managed service on a free port; an
asyncssh client logs in as ``user+project`` and its commands run in the user's
workspace for that project (started by the gateway through the hub).
"""

from __future__ import annotations

import asyncio
import json
import time

import asyncssh
import pytest
from stack import STACK_API_CONFIG, HubStack

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def ssh_stack(tmp_path_factory):
    # activity every 2 s, so the test sees the hub's last_activity move; no culling here
    s = HubStack(
        tmp_path_factory.mktemp("ssh-stack"),
        api_config=STACK_API_CONFIG,
        env={"ANIMUS_SSH_ACTIVITY_INTERVAL": "2"},
        idle_timeout=0,
    )
    s.start()
    try:
        yield s
    finally:
        s.stop()


def new_key(kind: str = "ssh-ed25519", **kw) -> asyncssh.SSHKey:
    return asyncssh.generate_private_key(kind, **kw)


def public_line(key: asyncssh.SSHKey, comment: str = "laptop") -> str:
    return key.export_public_key("openssh").decode().strip() + " " + comment


@pytest.fixture(scope="module")
def people(ssh_stack):
    """alice owns project P; bob owns project Q; both have a registered ed25519 key."""
    st = ssh_stack
    suffix = str(int(time.time() * 1000))[-6:]
    out = {}
    for name in ("alice", "bob"):
        token = st.user_token(f"{name}-{suffix}")
        project = f"{name[0]}proj-{suffix}"
        assert st.api("POST", "/projects", token, json={"slug": project}).status_code == 201
        key = new_key()
        r = st.api("POST", "/users/me/ssh-keys", token, json={"public_key": public_line(key)})
        assert r.status_code == 201, r.text
        out[name] = {
            "name": f"{name}-{suffix}",
            "token": token,
            "project": project,
            "key": key,
            "fp": r.json()["fingerprint"],
        }
    out["admin"] = st.user_token(f"root-{suffix}", admin=True)
    return out


def connect(stack: HubStack, login: str, key: asyncssh.SSHKey):
    return asyncssh.connect(
        "127.0.0.1",
        stack.settings.ssh_port,
        username=login,
        client_keys=[key],
        known_hosts=None,
        agent_path=None,
        password=None,
        kbdint_auth=False,
        preferred_auth="publickey",
        connect_timeout=30,
    )


def audit(stack: HubStack, admin: str, action: str, actor: str | None = None) -> list[dict]:
    params = {"action": action, "limit": 5000}
    if actor:
        params["actor"] = actor
    r = stack.api("GET", "/audit/events", admin, params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    return predicate()


# --- keys through the API -----------------------------------------------------------------


def test_keys_are_added_listed_and_deleted_with_fingerprints_and_audit(ssh_stack, people):
    st, alice = ssh_stack, people["alice"]
    key = new_key("ecdsa-sha2-nistp256")
    r = st.api("POST", "/users/me/ssh-keys", alice["token"], json={"public_key": public_line(key, "work")})
    assert r.status_code == 201, r.text
    added = r.json()
    assert added["fingerprint"] == key.get_fingerprint("sha256") and added["fingerprint"].startswith("SHA256:")
    assert (added["type"], added["bits"], added["comment"]) == ("nistp256", 256, "work")
    listed = st.api("GET", "/users/me/ssh-keys", alice["token"]).json()["items"]
    assert {k["fingerprint"] for k in listed} == {alice["fp"], added["fingerprint"]}
    # another person does not see them
    assert alice["fp"] not in {
        k["fingerprint"] for k in st.api("GET", "/users/me/ssh-keys", people["bob"]["token"]).json()["items"]
    }
    assert st.api("DELETE", f"/users/me/ssh-keys/{added['id']}", people["bob"]["token"]).status_code == 404
    assert st.api("DELETE", f"/users/me/ssh-keys/{added['id']}", alice["token"]).status_code == 204
    assert st.api("GET", f"/users/me/ssh-keys/{added['id']}", alice["token"]).status_code == 404
    events = audit(st, people["admin"], "ssh_key.add", alice["name"]) + audit(
        st, people["admin"], "ssh_key.delete", alice["name"]
    )
    assert {e["details"]["fingerprint"] for e in events} >= {added["fingerprint"]}
    assert not any("AAAA" in json.dumps(e) for e in events), "the key itself is not in the audit trail"


@pytest.mark.parametrize(
    "text, reason_word",
    [
        ("not a key at all", "type"),
        ("ssh-ed25519 AAAAnotbase64!!", "valid"),
        (
            "ssh-dss AAAAB3NzaC1kc3MAAACBAP1/U4EddRIpUt9KnC7s5Of2EbdSPO9EAMMeP4C2USZpRV1AIlH7WT2NWPq/xfW6MPbLm1Vs14E7",
            "type",
        ),
        ("-----BEGIN OPENSSH PRIVATE KEY-----", "private"),
        ("", "at least 1 character"),
    ],
)
def test_malformed_keys_and_wrong_types_are_refused_with_422(ssh_stack, people, text, reason_word):
    st, alice = ssh_stack, people["alice"]
    before = st.api("GET", "/users/me/ssh-keys", alice["token"]).json()["items"]
    r = st.api("POST", "/users/me/ssh-keys", alice["token"], json={"public_key": text})
    assert r.status_code == 422, r.text
    body = r.json()
    assert set(body) == {"status", "reason", "message", "details"}
    assert reason_word in body["message"].lower() or reason_word in json.dumps(body["details"]).lower()
    assert st.api("GET", "/users/me/ssh-keys", alice["token"]).json()["items"] == before


def test_short_rsa_keys_are_refused_and_long_ones_accepted(ssh_stack, people):
    st, bob = ssh_stack, people["bob"]
    r = st.api(
        "POST", "/users/me/ssh-keys", bob["token"], json={"public_key": public_line(new_key("ssh-rsa", key_size=2048))}
    )
    assert r.status_code == 422 and r.json()["details"]["bits"] == 2048, r.text
    r = st.api(
        "POST", "/users/me/ssh-keys", bob["token"], json={"public_key": public_line(new_key("ssh-rsa", key_size=3072))}
    )
    assert r.status_code == 201 and r.json()["bits"] == 3072, r.text


def test_a_key_registered_twice_is_a_conflict(ssh_stack, people):
    st = ssh_stack
    line = public_line(people["alice"]["key"])
    for who in ("alice", "bob"):
        r = st.api("POST", "/users/me/ssh-keys", people[who]["token"], json={"public_key": line})
        assert r.status_code == 409 and r.json()["reason"] == "ssh_key_exists", r.text


def test_the_gateway_endpoints_answer_only_the_gateway(ssh_stack, people):
    st = ssh_stack
    body = {
        "user": people["alice"]["name"],
        "project": people["alice"]["project"],
        "public_key": public_line(people["alice"]["key"]),
    }
    for token in (people["alice"]["token"], people["admin"]):
        r = st.api("POST", "/ssh/authorize", token, json=body)
        assert r.status_code == 403, r.text
        r = st.api("POST", "/ssh/events", token, json={"event": "login", "user": people["alice"]["name"]})
        assert r.status_code == 403, r.text


# --- the gateway -------------------------------------------------------------------------------


def test_a_registered_key_runs_commands_in_the_projects_workspace(ssh_stack, people):
    st, alice = ssh_stack, people["alice"]
    login = f"{alice['name']}+{alice['project']}"

    async def go():
        async with connect(st, login, alice["key"]) as conn:
            r = await conn.run(
                'echo "$ANIMUS_PROJECT|$JUPYTERHUB_USER|$JUPYTERHUB_SERVER_NAME|$(pwd)"; animus whoami --json',
                timeout=180,
            )
            assert r.exit_status == 0, (r.stdout, r.stderr)
            first, rest = r.stdout.split("\n", 1)
            project, user, server, cwd = first.split("|")
            assert (project, user, server) == (alice["project"], alice["name"], alice["project"])
            assert cwd.endswith(f"/workspaces/{alice['name']}/{alice['project']}"), cwd
            me = json.loads(rest)
            assert me["name"] == alice["name"]
            # the session has the workspace's token, which is valid for this project only
            assert me["token_project"] == alice["project"]
            # exit status and stderr come back as they are
            r = await conn.run("echo oops >&2; exit 3")
            assert (r.exit_status, r.stderr) == (3, "oops\n")
            # stdin reaches the command
            r = await conn.run("tr a-z A-Z", input="hello\n")
            assert r.stdout == "HELLO\n"
            # an interactive shell on a pty
            proc = await conn.create_process(term_type="xterm", term_size=(100, 30))
            proc.stdin.write("stty size; echo pty:$ANIMUS_PROJECT; exit 0\n")
            out = await asyncio.wait_for(proc.stdout.read(), 30)
            await proc.wait()
            assert "30 100" in out and f"pty:{alice['project']}" in out, out

    asyncio.run(go())
    server = st.hub("GET", f"/users/{alice['name']}").json()["servers"][alice["project"]]
    assert server["ready"], "the gateway started the project's workspace"
    logins = wait_for(
        lambda: [e for e in audit(st, people["admin"], "ssh.login", alice["name"]) if e["outcome"] == "success"]
    )
    assert logins and logins[-1]["project"] == alice["project"] and logins[-1]["details"]["fingerprint"] == alice["fp"]
    ends = wait_for(lambda: audit(st, people["admin"], "ssh.session_end", alice["name"]))
    assert ends and ends[-1]["details"]["duration_seconds"] > 0
    # the programs run, never whole command lines (they may carry secrets)
    commands = ends[-1]["details"]["commands"]
    assert commands[0] == "echo" and "(shell)" in commands and "tr" in commands
    assert not any("ANIMUS_PROJECT" in c for c in commands)
    keys = st.api("GET", "/users/me/ssh-keys", alice["token"]).json()["items"]
    assert next(k for k in keys if k["fingerprint"] == alice["fp"])["last_used_at"]


def test_local_port_forwarding_reaches_localhost_only(ssh_stack, people):
    st, alice = ssh_stack, people["alice"]

    async def go():
        async def echo(reader, writer):
            writer.write(b"echo:" + await reader.readline())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with connect(st, f"{alice['name']}+{alice['project']}", alice["key"]) as conn:
            reader, writer = await conn.open_connection("127.0.0.1", port)
            writer.write(b"ping\n")
            assert await asyncio.wait_for(reader.readline(), 10) == b"echo:ping\n"
            writer.close()
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.open_connection("192.0.2.1", 80)
            with pytest.raises(asyncssh.ChannelListenError):
                await conn.forward_remote_port("127.0.0.1", 0, "127.0.0.1", port)
        server.close()
        return port

    port = asyncio.run(go())
    ends = wait_for(
        lambda: [e for e in audit(st, people["admin"], "ssh.session_end", alice["name"]) if e["details"]["forwards"]]
    )
    assert ends and f"127.0.0.1:{port}" in ends[-1]["details"]["forwards"]


def test_ssh_activity_reaches_the_hub(ssh_stack, people):
    st, alice = ssh_stack, people["alice"]

    def last_activity() -> str:
        return st.hub("GET", f"/users/{alice['name']}").json()["servers"][alice["project"]]["last_activity"]

    async def go():
        async with connect(st, f"{alice['name']}+{alice['project']}", alice["key"]) as conn:
            await conn.run("true")
            before = last_activity()
            await asyncio.sleep(5)
            return before, last_activity()

    before, after = asyncio.run(go())
    assert after > before


@pytest.mark.parametrize(
    "case", ["wrong_key", "other_users_name", "other_project", "no_such_project", "malformed_login"]
)
def test_refused_logins_are_audited(ssh_stack, people, case):
    st, alice, bob = ssh_stack, people["alice"], people["bob"]
    stranger = new_key()
    login, key, actor, reason = {
        "wrong_key": (f"{alice['name']}+{alice['project']}", stranger, alice["name"], "key_not_registered"),
        # alice's key, but bob's name: the key is not bob's
        "other_users_name": (f"{bob['name']}+{bob['project']}", alice["key"], bob["name"], "key_not_registered"),
        # alice's own key and name, bob's project: alice is no member of it
        "other_project": (f"{alice['name']}+{bob['project']}", alice["key"], alice["name"], "project_not_found"),
        "no_such_project": (f"{alice['name']}+nope-nope", alice["key"], alice["name"], "project_not_found"),
        "malformed_login": (alice["name"], alice["key"], alice["name"], "malformed_login"),
    }[case]

    async def go():
        with pytest.raises(asyncssh.PermissionDenied):
            async with connect(st, login, key) as conn:
                await conn.run("true")

    def refused():
        return [
            e
            for e in audit(st, people["admin"], "ssh.login", actor)
            if e["outcome"] == "denied" and e["details"].get("reason") == reason and e["resource"].startswith("ssh/")
        ]

    before = len(refused())
    asyncio.run(go())
    wait_for(lambda: len(refused()) > before)
    events = refused()
    assert len(events) > before, f"no denied ssh.login with reason {reason} for {actor}"
    if case == "other_project":
        # the refusal shows in the project's own trail too
        assert events[-1]["project"] == bob["project"]
    # nothing was started for a refused login
    servers = st.hub("GET", f"/users/{actor}").json()["servers"]
    if case in ("other_project", "no_such_project"):
        assert bob["project"] not in servers and "nope-nope" not in servers


def test_the_cli_adds_lists_and_removes_keys(ssh_stack, people, tmp_path):
    import os
    import subprocess
    import sys

    st, bob = ssh_stack, people["bob"]
    env = {**os.environ, "ANIMUS_API_URL": st.api_url, "ANIMUS_TOKEN": bob["token"]}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "animus.cli.main", *args], env=env, capture_output=True, text=True, timeout=60
        )

    key = new_key()
    pub = tmp_path / "id_ed25519.pub"
    pub.write_text(public_line(key, "bob@laptop") + "\n")
    r = cli("ssh-keys", "add", str(pub))
    assert r.returncode == 0 and key.get_fingerprint("sha256") in r.stdout, r.stderr
    r = cli("ssh-keys", "ls")
    assert key.get_fingerprint("sha256") in r.stdout and "bob@laptop" in r.stdout
    # a private key is refused before anything is sent
    private = tmp_path / "id_ed25519"
    private.write_bytes(key.export_private_key())
    r = cli("ssh-keys", "add", str(private))
    assert r.returncode == 1 and "private key" in r.stderr
    # a short RSA key: the API's 422, as one line
    short = tmp_path / "id_rsa.pub"
    short.write_text(public_line(new_key("ssh-rsa", key_size=2048)))
    r = cli("ssh-keys", "add", str(short))
    assert r.returncode == 1 and "3072" in r.stderr and "invalid_ssh_key" in r.stderr
    r = cli("ssh-keys", "rm", key.get_fingerprint("sha256"))
    assert r.returncode == 0, r.stderr
    assert key.get_fingerprint("sha256") not in cli("ssh-keys", "ls").stdout
