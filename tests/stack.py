"""A real embedded Animus stack for tests and benchmarks.

JupyterHub + configurable-http-proxy + animus-api (hub-managed) started exactly as
`animus up` starts them (the same embedded_config.py), on free ports under a
temporary data directory, plus a test-only hub service holding an admin token to
create users, groups and tokens through the hub's REST API.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from pgdb import create_pg_database, drop_pg_database

from animus_hub.embedded import prepare_data_dir, stop_hub, stop_leftovers, wait_until_up
from animus_hub.hubconfig import API_PATH, EmbeddedSettings, find_proxy_command

TEST_ADMIN_SERVICE = "test-admin"
# the test-admin service is also an OAuth client of the hub, as workspaces are: tests get
# OAuth tokens bound to a browser session through it (nothing listens at the redirect URI)
TEST_OAUTH_REDIRECT = "http://127.0.0.1:9/oauth_callback"
TEST_OAUTH_GROUP = "test-oauth-clients"

# rules the stack's animus-api is configured with (tests rely on them)
STACK_API_CONFIG = """
c.AnimusAPI.role_mapping_rules = [
    {"group": "ml-{project}-admins", "role": "owner"},
    {"group": "ml-{project}-readers", "role": "viewer"},
    {"group": "data-platform", "project": "shared", "role": "contributor"},
]
"""

OVERRIDE = """
c.JupyterHub.services.append({{"name": "{name}", "api_token": "{token}",
    "oauth_redirect_uri": "{redirect}", "oauth_no_confirm": True}})
c.JupyterHub.load_roles.append({{"name": "admin", "services": ["{name}"]}})
c.JupyterHub.log_level = "WARN"
c.Authenticator.manage_groups = False
"""
# members of this group may log in to the test-admin OAuth client (see hubbrowser.py); not
# with an authenticator that manages groups (OIDC), where the hub refuses load_groups
OAUTH_GROUP_OVERRIDE = """
c.JupyterHub.load_groups = {{"{oauth_group}": {{"users": []}}}}
c.JupyterHub.load_roles.append({{"name": "test-oauth", "scopes": ["access:services!service={name}"],
    "groups": ["{oauth_group}"]}})
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT_FIELDS = ("port", "hub_port", "proxy_api_port", "api_port", "objects_port", "ssh_port")


class HubStack:
    _retried = False

    def __init__(
        self,
        root: Path,
        db_url: str = "",
        log_path: Path | None = None,
        api_config: str = "",
        env: dict[str, str] | None = None,
        hub_config: str = "",
        **settings: Any,
    ):
        """`env` is extra environment of the hub (e.g. ANIMUS_SOURCE_* credentials passed on to
        animus-api); `hub_config` is appended to the hub's override file; `settings` are
        EmbeddedSettings fields."""
        self.root = Path(root)
        self.api_config = api_config
        self.env = dict(env or {})
        self.hub_config = hub_config
        self.settings = EmbeddedSettings(
            data_dir=str(self.root),
            port=free_port(),
            hub_port=free_port(),
            proxy_api_port=free_port(),
            api_port=free_port(),
            objects_port=free_port(),
            db_url=db_url,
            proxy_cmd=find_proxy_command(),
            **{"ssh_port": free_port(), **settings},
        )
        self.admin_token = secrets.token_hex(24)
        self.log_path = log_path or self.root / "stack.log"
        self.proc: subprocess.Popen | None = None
        self.http = requests.Session()
        self._tokens: dict[str, str] = {}

    @property
    def url(self) -> str:
        return self.settings.public_url

    @property
    def api_url(self) -> str:
        return self.url + API_PATH

    @property
    def db_url(self) -> str:
        return self.settings.animus_db_url

    def start(self, timeout: float = 90) -> HubStack:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(os.devnull, "w") as devnull:
            prepare_data_dir(self.root, out=devnull)
        if self.api_config:
            (self.root / "animus_api_config.py").write_text(self.api_config)
        override = OVERRIDE.format(name=TEST_ADMIN_SERVICE, token=self.admin_token, redirect=TEST_OAUTH_REDIRECT)
        if not self.settings.oidc_issuer:
            override += OAUTH_GROUP_OVERRIDE.format(name=TEST_ADMIN_SERVICE, oauth_group=TEST_OAUTH_GROUP)
        (self.root / "jupyterhub_config.py").write_text(override + self.hub_config)
        config = Path(sys.modules["animus_hub.embedded"].__file__).with_name("embedded_config.py")
        env = {**os.environ, **self.env, **self.settings.to_environ()}
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config)],
            cwd=self.root,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if not wait_until_up(self.api_url + "/health", self.proc, timeout):
            self.stop()
            if not self._retried:
                # free_port() releases the port it found: another server started meanwhile may
                # have taken one (seen: the proxy's API port answering 404). Once, with new ports.
                self._retried = True
                self.settings = dataclasses.replace(
                    self.settings, **{f: free_port() for f in PORT_FIELDS if getattr(self.settings, f)}
                )
                return self.start(timeout)
            raise RuntimeError(f"the stack did not come up; log: {self.log_path}\n{self.log_tail()}")
        return self

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_hub(self.proc, self.root)
        else:
            stop_leftovers(self.root)
        if getattr(self, "_log", None):
            self._log.close()

    def restart_api(self) -> None:
        """Stop and start the whole stack (e.g. after changing animus-api configuration)."""
        self.stop()
        self._tokens.clear()
        self.start()

    # --- the hub's REST API, as the test admin --------------------------------------------

    def hub(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"token {self.admin_token}"}
        r = self.http.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=30, **kwargs)
        return r

    def ensure_group(self, group: str) -> None:
        r = self.hub("POST", f"/groups/{group}")
        assert r.status_code in (201, 409), r.text

    def wait_ready(self, user: str, server: str, timeout: float = 120) -> dict:
        """The hub's model of `user`'s server `server` once it is ready; AssertionError with the log if not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.hub("GET", f"/users/{user}").json()["servers"].get(server)
            if model and model["ready"]:
                return model
            time.sleep(0.5)
        raise AssertionError(f"{user}/{server} did not start in {timeout:.0f} s:\n{self.log_tail()}")

    def open_workspace(self, user: str, server: str, timeout: float = 120, **options: Any) -> dict:
        """Start `user`'s server `server` (a project's workspace) through the hub's API and wait until ready."""
        r = self.hub("POST", f"/users/{user}/servers/{server}", json=options)
        assert r.status_code in (201, 202), r.text
        return self.wait_ready(user, server, timeout)

    def user_token(
        self, name: str, groups: list[str] | tuple[str, ...] = (), admin: bool = False, scopes: list[str] | None = None
    ) -> str:
        """Create (or update) hub user `name` with exactly `groups`, and return a new API token."""
        r = self.hub("GET", f"/users/{name}")
        if r.status_code == 404:
            r = self.hub("POST", f"/users/{name}")
            assert r.status_code == 201, r.text
            current: list[str] = []
        else:
            current = r.json().get("groups", [])
        r = self.hub("PATCH", f"/users/{name}", json={"admin": admin})
        assert r.status_code == 200, r.text
        for g in set(current) - set(groups):
            self.hub("DELETE", f"/groups/{g}/users", json={"users": [name]})
        for g in set(groups) - set(current):
            self.ensure_group(g)
            r = self.hub("POST", f"/groups/{g}/users", json={"users": [name]})
            assert r.status_code == 200, r.text
        body: dict[str, Any] = {"note": "test", "expires_in": 3600}
        if scopes is not None:
            body["scopes"] = scopes
        r = self.hub("POST", f"/users/{name}/tokens", json=body)
        assert r.status_code == 201, r.text
        return r.json()["token"]

    # --- the Animus API -------------------------------------------------------

    def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        r = self.http.request(method, self.api_url + path, headers=headers, timeout=30, **kwargs)
        if r.status_code != 204:
            assert r.headers.get("Content-Type", "").startswith("application/json"), (
                r.status_code,
                r.headers,
                r.text[:300],
            )
        return r


#: the run queue and executor of batch-run tests: quick heartbeats, retries and scheduler rounds
RUN_QUEUE_SETTINGS: dict[str, Any] = {
    "RunQueue.heartbeat_interval": 0.5,
    "RunQueue.heartbeat_timeout": 4,
    "RunQueue.start_timeout": 30,
    "RunQueue.retry_base_seconds": 0.2,
    "RunQueue.retry_max_seconds": 1,
    "LocalExecutor.slots": 4,
    "Scheduler.interval": 0.2,
}


def run_queue_config(work_dir: Path, **overrides: Any) -> str:
    """animus-api configuration lines for batch runs under `work_dir`; `overrides` by setting name
    with "__" for the dot (``RunQueue__log_max_bytes=65536``)."""
    settings = {**RUN_QUEUE_SETTINGS, "LocalExecutor.work_dir": str(work_dir)}
    settings.update({k.replace("__", "."): v for k, v in overrides.items()})
    return "".join(f"c.{name} = {value!r}\n" for name, value in settings.items())


@contextmanager
def running_stack(root: Path, backend: str = "sqlite", **kwargs: Any) -> Iterator[HubStack]:
    """A started HubStack on `backend`, stopped afterwards whatever happens.

    `backend` "sqlite" (the stack's own file) or "postgresql…" (a new PostgreSQL
    database, dropped afterwards); `kwargs` go to HubStack. With ANIMUS_KEEP_LOGS set
    to a directory, the stack's log is copied there.
    """
    pg_name, db_url = (None, "")
    if backend.startswith("postgresql"):
        pg_name, db_url = create_pg_database()
    s = HubStack(root, db_url=db_url, **kwargs)
    try:
        s.start()
        yield s
    finally:
        s.stop()
        keep = os.environ.get("ANIMUS_KEEP_LOGS")
        if keep:
            import shutil

            shutil.copy(s.log_path, Path(keep) / f"{root.name}.log")
        if pg_name:
            drop_pg_database(pg_name)
