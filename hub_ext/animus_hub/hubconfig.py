"""JupyterHub settings for Animus: the animus service, roles and the workspace spawner.

`configure_embedded()` is the embedded profile (`animus up`): a local-process
spawner, SQLite databases and a local object store, all under one data directory.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import workspaces
from .keyfiles import read_or_create

SERVICE_NAME = "animus"
SERVICE_PREFIX = f"/services/{SERVICE_NAME}/"
API_PATH = SERVICE_PREFIX + "api/v1"
# the data-plane object gateway of the local store (presigned GET/PUT of bytes)
OBJECTS_SERVICE_NAME = "animus-objects"
OBJECTS_PREFIX = f"/services/{OBJECTS_SERVICE_NAME}/"
# the SSH gateway into workspaces (animus_hub.sshgateway) and the idle culler
SSH_SERVICE_NAME = "animus-ssh"
CULLER_SERVICE_NAME = "idle-culler"


@dataclass(frozen=True)
class EmbeddedSettings:
    data_dir: str
    ip: str = "127.0.0.1"
    port: int = 8000
    hub_port: int = 8081
    proxy_api_port: int = 8001
    api_port: int = 8090
    objects_port: int = 8092
    # the SSH gateway's port (0: no gateway)
    ssh_port: int = 8022
    # stop workspaces idle for this many seconds (0: never); checked every idle_cull_every seconds
    idle_timeout: int = 3600
    idle_cull_every: int = 300
    db_url: str = ""
    proxy_cmd: str = ""
    # single sign-on: OIDC when an issuer is given, else the users.json authenticator
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret_file: str = ""
    oidc_groups_claim: str = "groups"

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> EmbeddedSettings:
        data_dir = env["ANIMUS_DATA_DIR"]
        return cls(
            data_dir=data_dir,
            ip=env.get("ANIMUS_IP", "127.0.0.1"),
            port=int(env.get("ANIMUS_PORT", 8000)),
            hub_port=int(env.get("ANIMUS_HUB_PORT", 8081)),
            proxy_api_port=int(env.get("ANIMUS_PROXY_API_PORT", 8001)),
            api_port=int(env.get("ANIMUS_API_PORT", 8090)),
            objects_port=int(env.get("ANIMUS_OBJECTS_PORT", 8092)),
            ssh_port=int(env.get("ANIMUS_SSH_PORT", 8022)),
            idle_timeout=int(env.get("ANIMUS_IDLE_TIMEOUT", 3600)),
            idle_cull_every=int(env.get("ANIMUS_IDLE_CULL_EVERY", 300)),
            db_url=env.get("ANIMUS_DB_URL", ""),
            proxy_cmd=env.get("ANIMUS_PROXY_CMD", ""),
            oidc_issuer=env.get("ANIMUS_OIDC_ISSUER", ""),
            oidc_client_id=env.get("ANIMUS_OIDC_CLIENT_ID", ""),
            oidc_client_secret_file=env.get("ANIMUS_OIDC_CLIENT_SECRET_FILE", ""),
            oidc_groups_claim=env.get("ANIMUS_OIDC_GROUPS_CLAIM", "groups"),
        )

    def to_environ(self) -> dict[str, str]:
        return {
            "ANIMUS_DATA_DIR": self.data_dir,
            "ANIMUS_IP": self.ip,
            "ANIMUS_PORT": str(self.port),
            "ANIMUS_HUB_PORT": str(self.hub_port),
            "ANIMUS_PROXY_API_PORT": str(self.proxy_api_port),
            "ANIMUS_API_PORT": str(self.api_port),
            "ANIMUS_OBJECTS_PORT": str(self.objects_port),
            "ANIMUS_SSH_PORT": str(self.ssh_port),
            "ANIMUS_IDLE_TIMEOUT": str(self.idle_timeout),
            "ANIMUS_IDLE_CULL_EVERY": str(self.idle_cull_every),
            "ANIMUS_DB_URL": self.animus_db_url,
            "ANIMUS_PROXY_CMD": self.proxy_cmd,
            "ANIMUS_OIDC_ISSUER": self.oidc_issuer,
            "ANIMUS_OIDC_CLIENT_ID": self.oidc_client_id,
            "ANIMUS_OIDC_CLIENT_SECRET_FILE": self.oidc_client_secret_file,
            "ANIMUS_OIDC_GROUPS_CLAIM": self.oidc_groups_claim,
        }

    @property
    def animus_db_url(self) -> str:
        return self.db_url or f"sqlite:///{Path(self.data_dir) / 'animus.sqlite'}"

    @property
    def public_url(self) -> str:
        host = "127.0.0.1" if self.ip in ("", "0.0.0.0") else self.ip  # noqa: S104 (reaching, not binding)
        return f"http://{host}:{self.port}"


def find_proxy_command() -> str:
    """configurable-http-proxy: on PATH, or installed by the setup beside this Python."""
    found = shutil.which("configurable-http-proxy")
    if found:
        return found
    candidates = [Path(sys.prefix) / "node_modules" / ".bin" / "configurable-http-proxy"]
    for c in candidates:
        if c.exists():
            return str(c)
    raise FileNotFoundError(
        "configurable-http-proxy not found: install it with "
        f"`npm install --prefix {sys.prefix} configurable-http-proxy` (./dev does this)"
    )


def objects_environment(s: EmbeddedSettings) -> dict[str, str]:
    """Where the local object store lives; shared by animus-api (signs) and the gateway (serves)."""
    data = Path(s.data_dir)
    return {
        "ANIMUS_OBJECTS_ROOT": str(data / "objects"),
        "ANIMUS_OBJECTS_SIGNING_KEY_FILE": str(data / "secrets" / "objects_signing_key"),
        "ANIMUS_OBJECTS_URL": s.public_url + OBJECTS_PREFIX.rstrip("/"),
        # the gateway's own port: every process of the embedded profile runs on this
        # machine, so uploads from here skip a hop through the proxy (the URL's
        # signature is the access control either way)
        "ANIMUS_OBJECTS_DIRECT_URL": f"http://127.0.0.1:{s.objects_port}" + OBJECTS_PREFIX.rstrip("/"),
    }


#: hub-managed services see only the environment given to them: variables with these
#: prefixes (credentials of AnimusAPI.external_sources and AnimusAPI.export_targets) are
#: passed on to animus-api
SOURCE_ENV_PREFIX = "ANIMUS_SOURCE_"
EXPORT_ENV_PREFIX = "ANIMUS_EXPORT_"


def source_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ANIMUS_SOURCE_* and ANIMUS_EXPORT_* variables of the hub's environment, for animus-api's
    external sources and export targets."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if k.startswith((SOURCE_ENV_PREFIX, EXPORT_ENV_PREFIX))}


def animus_service(api_port: int, db_url: str, config_file: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The hub-managed animus-api service definition."""
    return {
        "name": SERVICE_NAME,
        "url": f"http://127.0.0.1:{api_port}",
        "command": [sys.executable, "-m", "animus_hub.app", "--config", config_file],
        "environment": {**(env or {}), "ANIMUS_DB_URL": db_url, "PYTHONUNBUFFERED": "1"},
        "oauth_no_confirm": True,
        "display": False,
    }


def objects_service(port: int, env: dict[str, str]) -> dict[str, Any]:
    """The hub-managed object gateway: no token needed, the URL signature is the access control."""
    return {
        "name": OBJECTS_SERVICE_NAME,
        "url": f"http://127.0.0.1:{port}",
        "command": [sys.executable, "-m", "animus_hub.objectgateway"],
        "environment": {**env, "PYTHONUNBUFFERED": "1"},
        "oauth_no_confirm": True,
        "display": False,
    }


def ssh_service(s: EmbeddedSettings) -> dict[str, Any]:
    """The hub-managed SSH gateway: no URL (it speaks SSH on its own port, not HTTP through the proxy)."""
    data = Path(s.data_dir)
    return {
        "name": SSH_SERVICE_NAME,
        "command": [sys.executable, "-m", "animus_hub.sshgateway"],
        "environment": {
            "ANIMUS_SSH_HOST": "127.0.0.1" if s.ip in ("", "127.0.0.1") else s.ip,
            "ANIMUS_SSH_PORT": str(s.ssh_port),
            "ANIMUS_SSH_HOST_KEY_FILE": str(data / "secrets" / "ssh_host_ed25519_key"),
            # animus-api directly (the gateway runs beside it)
            "ANIMUS_SSH_API_URL": f"http://127.0.0.1:{s.api_port}" + API_PATH,
            "ANIMUS_SSH_ACTIVITY_INTERVAL": os.environ.get("ANIMUS_SSH_ACTIVITY_INTERVAL", "60"),
            "PYTHONUNBUFFERED": "1",
        },
        "display": False,
    }


def culler_service(timeout: int, cull_every: int) -> dict[str, Any]:
    """jupyterhub-idle-culler: stops workspaces idle for `timeout` seconds (notebook, terminal,
    VS Code and SSH activity all reach the hub as the server's last_activity)."""
    return {
        "name": CULLER_SERVICE_NAME,
        "command": [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={timeout}",
            f"--cull-every={cull_every}",
            "--remove-named-servers=false",
        ],
        "display": False,
    }


# the hub-side forced logout (auth.hubsessions) answers only tokens with this scope
SESSIONS_REVOKE_SCOPE = "custom:animus:sessions:revoke"
CUSTOM_SCOPES = {
    SESSIONS_REVOKE_SCOPE: {
        "description": "End every session of a user: rotate the login cookie, delete the user's tokens, "
        "stop or keep the user's servers (animus-api's forced logout)."
    }
}


def animus_roles() -> list[dict[str, Any]]:
    return [
        # every user may call the animus service with their own tokens
        {"name": "user", "scopes": ["self", f"access:services!service={SERVICE_NAME}"]},
        # animus-api may force a user's logout (and nothing else on the hub)
        {"name": "animus-sessions", "scopes": [SESSIONS_REVOKE_SCOPE], "services": [SERVICE_NAME]},
        # the SSH gateway: who a user is (groups), start their servers and find the local
        # process (server state), record activity, ask animus-api
        {
            "name": SSH_SERVICE_NAME,
            "scopes": [
                "read:users",
                "read:servers",
                "servers",
                "admin:server_state",
                "users:activity",
                f"access:services!service={SERVICE_NAME}",
            ],
            "services": [SSH_SERVICE_NAME],
        },
        # jupyterhub-idle-culler's documented scopes
        {
            "name": CULLER_SERVICE_NAME,
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": [CULLER_SERVICE_NAME],
        },
        # and read users' groups and admin flag, to explain someone's access (GET /projects/{p}/access)
        {"name": "animus-directory", "scopes": ["read:users"], "services": [SERVICE_NAME]},
    ]


WORKSPACE_AUTH_CACHE_SECONDS = 30

# every cookie of the hub and of workspaces: HttpOnly (JupyterHub's default), Secure when
# served over TLS (JupyterHub's default, from the request or public_url) and SameSite=Lax
# (Lax, not Strict: the identity provider's redirect back to the hub must carry the state cookie)
COOKIE_OPTIONS = {"samesite": "Lax"}

#: the embedded profile's workspace templates: a newcomer sees the choice at the first start,
#: with the small one pre-selected; jupyterhub_config.py in the data directory replaces them
EMBEDDED_WORKSPACE_TEMPLATES = {
    "cpu-small": {"display_name": "CPU small", "description": "1 CPU, 2 GB", "cpu": 1, "memory": "2G", "default": True},
    "cpu-large": {"display_name": "CPU large", "description": "2 CPUs, 8 GB", "cpu": 2, "memory": "8G"},
}


def configure_sessions(c: Any, animus_db_url: str) -> None:
    """Session control (auth.hubsessions) keeps its records in the Animus database."""
    c.JupyterHub.custom_scopes = {**CUSTOM_SCOPES}
    c.SessionControl.db_url = animus_db_url
    c.JupyterHub.tornado_settings = {"cookie_options": dict(COOKIE_OPTIONS)}


def configure_oidc(c: Any, s: EmbeddedSettings) -> None:
    """Single sign-on through an OpenID Connect provider (auth.oidc.AnimusOIDCAuthenticator)."""
    if not s.oidc_client_id:
        raise ValueError("OIDC needs a client id (animus up --oidc-client-id)")
    secret = ""
    if s.oidc_client_secret_file:
        secret = Path(s.oidc_client_secret_file).read_text().strip()
    c.JupyterHub.authenticator_class = "animus_hub.auth.oidc.AnimusOIDCAuthenticator"
    c.AnimusOIDCAuthenticator.issuer = s.oidc_issuer
    c.AnimusOIDCAuthenticator.client_id = s.oidc_client_id
    c.AnimusOIDCAuthenticator.client_secret = secret
    c.AnimusOIDCAuthenticator.oauth_callback_url = s.public_url + "/hub/oauth_callback"
    c.AnimusOIDCAuthenticator.groups_claim = s.oidc_groups_claim
    # anyone the provider authenticates may log in; restrict with allowed_groups in jupyterhub_config.py
    c.AnimusOIDCAuthenticator.allow_all = True
    # auth_state (the provider's tokens, used to refresh groups) is encrypted with this key
    c.CryptKeeper.keys = [crypt_key(Path(s.data_dir))]


def crypt_key(data_dir: Path) -> bytes:
    """The key encrypting JupyterHub's auth_state, made once per data directory (0600)."""
    path = data_dir / "secrets" / "jupyterhub_crypt_key"
    return bytes.fromhex(read_or_create(path, lambda: secrets.token_hex(32).encode()).decode().strip())


# what $JUPYTERHUB_API_TOKEN in a workspace may do: run the server, and call Animus as its user
SERVER_TOKEN_SCOPES = [
    "access:servers!server",
    "users:activity!user",
    "read:users!user",
    f"access:services!service={SERVICE_NAME}",
]


def check_workspace_templates(c: Any, spawner: str = "AnimusLocalSpawner") -> None:
    """ValueError naming the template (or project) when a spawner's workspace templates are malformed.

    Spawners read their configuration only when a workspace starts; called at the end
    of a hub configuration, a mistake stops the hub at start-up instead.
    """
    section = c[spawner]
    templates = workspaces.parse_templates(section.get("workspace_templates", {}))
    workspaces.check_project_templates(section.get("project_templates", {}), templates)


def configure_embedded(c: Any, s: EmbeddedSettings) -> None:
    data = Path(s.data_dir)
    (data / "workspaces").mkdir(parents=True, exist_ok=True)

    c.JupyterHub.ip = s.ip
    c.JupyterHub.port = s.port
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{s.hub_port}"
    c.JupyterHub.db_url = f"sqlite:///{data / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(data / "secrets" / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(data / "jupyterhub.pid")
    c.JupyterHub.cleanup_servers = True
    c.JupyterHub.cleanup_proxy = True
    c.JupyterHub.template_vars = {"announcement_login": "Animus Datalab"}

    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{s.proxy_api_port}"
    c.ConfigurableHTTPProxy.command = [s.proxy_cmd or find_proxy_command()]
    c.ConfigurableHTTPProxy.pid_file = str(data / "proxy.pid")

    if s.oidc_issuer:
        configure_oidc(c, s)
    else:
        c.JupyterHub.authenticator_class = "animus_hub.devauth.FileAuthenticator"
        c.FileAuthenticator.users_file = str(data / "users.json")
    configure_sessions(c, s.animus_db_url)

    objects_env = objects_environment(s)
    # the keys that encrypt webhook signing secrets (created on first use, 0600)
    api_env = {
        **objects_env,
        "ANIMUS_WEBHOOK_SECRET_KEY_FILE": str(data / "secrets" / "webhook_secret_keys"),
        # the local secret store (LocalSecretStore): encrypted files and their key
        "ANIMUS_SECRET_STORE_DIR": str(data / "secret-store"),
        "ANIMUS_SECRET_STORE_KEY_FILE": str(data / "secrets" / "secret_store_key"),
    }
    c.JupyterHub.services = [
        animus_service(
            s.api_port, s.animus_db_url, str(data / "animus_api_config.py"), {**api_env, **source_environment()}
        ),
        objects_service(s.objects_port, objects_env),
    ]
    if s.ssh_port:
        c.JupyterHub.services.append(ssh_service(s))
    if s.idle_timeout:
        c.JupyterHub.services.append(culler_service(s.idle_timeout, s.idle_cull_every))
    services = {svc["name"] for svc in c.JupyterHub.services}
    # a role may name only services that exist (the gateway and the culler can be switched off)
    c.JupyterHub.load_roles = [r for r in animus_roles() if set(r.get("services", [])) <= services]

    c.JupyterHub.spawner_class = "animus_hub.spawner.AnimusLocalSpawner"
    # a project's workspace starts only for the project's members: the spawner asks animus-api
    c.ProjectWorkspaceAccess.animus_api_url = f"http://127.0.0.1:{s.api_port}{API_PATH}"
    c.SimpleLocalProcessSpawner.home_dir_template = str(data / "workspaces" / "{username}")
    c.AnimusLocalSpawner.workspace_templates = {k: dict(v) for k, v in EMBEDDED_WORKSPACE_TEMPLATES.items()}
    c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
    c.Spawner.default_url = "/lab"
    c.Spawner.server_token_scopes = SERVER_TOKEN_SCOPES
    c.Spawner.http_timeout = 60
    c.Spawner.start_timeout = 120
    shell = os.environ.get("SHELL") or "/bin/sh"
    c.Spawner.args = [
        # an interactive, non-login shell: a login shell re-reads /etc/profile, which
        # resets PATH and would hide the animus CLI from terminals
        "--ServerApp.terminado_settings=" + json.dumps({"shell_command": [shell, "-i"]}),
    ]
    # a workspace re-checks a login cookie's token with the hub this often: a forced logout
    # that keeps the workspace running locks the person out of it within this time
    c.Spawner.args.append(f"--HubOAuth.cache_max_age={WORKSPACE_AUTH_CACHE_SECONDS}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        c.Spawner.args.append("--allow-root")
    api_url = s.public_url + API_PATH
    bin_dir = str(Path(sys.executable).parent)
    c.JupyterHub.allow_named_servers = True
    mlflow_url = s.public_url + SERVICE_PREFIX + "mlflow"
    c.Spawner.environment = {
        "ANIMUS_API_URL": api_url,
        # the workspace's own login cookie gets the hub's cookie options
        "JUPYTERHUB_COOKIE_OPTIONS": json.dumps(COOKIE_OPTIONS),
        # a server named after a project is that project's workspace
        "ANIMUS_PROJECT": lambda spawner: spawner.name or "",
        "MLFLOW_TRACKING_URI": lambda spawner: f"{mlflow_url}/projects/{spawner.name}" if spawner.name else mlflow_url,
        "MLFLOW_TRACKING_TOKEN": lambda spawner: spawner.api_token,
        # the animus CLI of this installation comes first on a workspace's PATH
        "PATH": lambda spawner: bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }
