"""`animus up`: the whole embedded stack on one machine under one data directory.

JupyterHub runs in its own session and starts configurable-http-proxy and
animus-api (a hub-managed service); workspaces are local processes. Ctrl-C (or
SIGTERM) asks the hub to shut down, which stops the servers, the service and the
proxy; anything still alive from this data directory afterwards is killed, so
nothing is left behind. Data survives restarts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import psutil

from .hubconfig import API_PATH, EmbeddedSettings, find_proxy_command
from .userfile import UserFile, generate_password

ADMIN_USER = "admin"
API_CONFIG_TEMPLATE = '''"""Configuration of animus-api in the embedded profile (a traitlets config file).

Examples:

c.AnimusAPI.role_mapping_rules = [
    {"group": "ml-{project}-admins", "role": "owner"},
    {"group": "ml-{project}-users", "role": "contributor"},
]
c.AnimusAPI.admin_groups = {"platform-admins"}

# a read-only data lake datasets may import from; credentials come from the
# environment of `animus up` (only ANIMUS_SOURCE_* variables reach animus-api)
c.AnimusAPI.external_sources = {
    "lake": {"endpoint_url": "https://s3.example.com", "bucket": "corp-lake", "projects": ["*"],
             "access_key_id_env": "ANIMUS_SOURCE_LAKE_KEY_ID",
             "secret_access_key_env": "ANIMUS_SOURCE_LAKE_SECRET"},
}
"""
'''


def prepare_data_dir(data_dir: Path, out=sys.stdout, create_admin: bool = True) -> None:
    """Create the directory layout, and on first start an admin with a random password
    (not with single sign-on, where the identity provider says who is an admin)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    (data_dir / "secrets").mkdir(exist_ok=True, mode=0o700)
    api_config = data_dir / "animus_api_config.py"
    if not api_config.exists():
        api_config.write_text(API_CONFIG_TEMPLATE)
    users = UserFile(data_dir / "users.json")
    if create_admin and not users.load():
        password = generate_password()
        users.set_user(ADMIN_USER, password=password, groups=[], admin=True)
        print(
            "\n"
            f"  First start: created the platform admin {ADMIN_USER!r} with password: {password}\n"
            "  It is shown only this once. Add users with `animus-hub users add NAME --data-dir ...`.\n",
            file=out,
            flush=True,
        )


def wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 (our own http URL)
                if r.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    return False


def leftover_processes(data_dir: Path) -> list[psutil.Process]:
    """Processes started for this data directory: they carry ANIMUS_DATA_DIR in their
    environment (hub, proxy, animus-api) or run inside it (workspaces)."""
    me = psutil.Process()
    spared = {me.pid} | {p.pid for p in me.parents()}
    marker = str(data_dir)
    found = []
    for p in psutil.process_iter(["pid"]):
        if p.info["pid"] in spared:
            continue
        try:
            cwd = p.cwd()
            if p.environ().get("ANIMUS_DATA_DIR") == marker or cwd == marker or cwd.startswith(marker + os.sep):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def stop_leftovers(data_dir: Path, grace: float = 5.0) -> int:
    procs = leftover_processes(data_dir)
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    return len(procs)


def stop_hub(hub: subprocess.Popen, data_dir: Path, timeout: float = 30) -> None:
    """Stop a hub started in `data_dir` (SIGTERM: it stops its servers and services; SIGKILL after
    `timeout` s), then whatever it left behind there (stop_leftovers)."""
    if hub.poll() is None:
        hub.terminate()
        try:
            hub.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            hub.kill()
    stop_leftovers(data_dir)


def run(settings: EmbeddedSettings, out=sys.stdout) -> int:
    """Start the stack and block until Ctrl-C / SIGTERM; return the exit code."""
    data_dir = Path(settings.data_dir).resolve()
    settings = replace(settings, data_dir=str(data_dir), proxy_cmd=settings.proxy_cmd or find_proxy_command())
    prepare_data_dir(data_dir, out, create_admin=not settings.oidc_issuer)
    if settings.oidc_issuer:
        print(
            f"\n  Logins go through {settings.oidc_issuer} (single sign-on). Make platform admins with\n"
            f"  c.AnimusOIDCAuthenticator.admin_groups = {{...}} in {data_dir / 'jupyterhub_config.py'}.\n",
            file=out,
            flush=True,
        )
    stop_leftovers(data_dir)  # a previous run killed with SIGKILL may have left its proxy
    env = {**os.environ, **settings.to_environ()}
    config = Path(__file__).with_name("embedded_config.py")
    hub = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub", "-f", str(config)],
        cwd=data_dir,
        env=env,
        start_new_session=True,  # Ctrl-C reaches us; we stop the hub in order
    )
    stopping = {"signal": None}

    def _stop(signum, _frame):
        stopping["signal"] = signum
        if hub.poll() is None:
            hub.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        api_health = settings.public_url + API_PATH + "/health"
        if wait_until_up(api_health, hub):
            print(
                f"\n  Animus is up: {settings.public_url}/\n"
                f"  REST API:     {settings.public_url}{API_PATH}\n"
                f"  Data:         {data_dir}\n"
                "  Stop with Ctrl-C.\n",
                file=out,
                flush=True,
            )
        elif hub.poll() is None and stopping["signal"] is None:
            print("animus up: Animus is not answering yet; see the log above", file=sys.stderr)
        while hub.poll() is None:
            try:
                hub.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
    finally:
        stop_hub(hub, data_dir)
        for s, handler in previous.items():
            signal.signal(s, handler)
    if stopping["signal"] is not None:
        print("Animus stopped.", file=out, flush=True)
        return 0
    return hub.returncode or 1
