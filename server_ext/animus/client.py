"""The Python client of the Animus REST API.

Where it finds its URL and token, first match wins:

- arguments to ``Client(url=..., token=...)``;
- ``ANIMUS_API_URL`` and ``ANIMUS_TOKEN`` in the environment;
- in a JupyterHub workspace, ``JUPYTERHUB_API_TOKEN`` (set by the hub);
- the file written by ``animus login`` (``~/.config/animus/config.json``, mode 0600).
"""

from __future__ import annotations

import json
import os
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import platformdirs
import requests

DEFAULT_TIMEOUT = 30


class AnimusAPIError(Exception):
    """An error answer of the API: ``status``, ``reason``, ``message`` and ``details``."""

    def __init__(self, status: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(f"{message} ({status} {reason})")
        self.status = status
        self.reason = reason
        self.message = message
        self.details = details or {}


class ConfigError(Exception):
    """The client does not know where Animus is or who the user is."""


def config_path() -> Path:
    return Path(os.environ.get("ANIMUS_CONFIG_DIR") or platformdirs.user_config_dir("animus")) / "config.json"


def load_saved() -> dict[str, str]:
    path = config_path()
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def save_login(url: str, token: str) -> Path:
    """Store URL and token for later commands, readable by the user only."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "token": token}, f)
    os.chmod(path, 0o600)
    return path


def forget_login() -> bool:
    path = config_path()
    if path.exists():
        path.unlink()
        return True
    return False


def _seg(value: str) -> str:
    return quote(value, safe="")


class Client:
    """A thin, typed-enough client: one method per API operation."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = DEFAULT_TIMEOUT):
        saved = load_saved()
        self.url = (url or os.environ.get("ANIMUS_API_URL") or saved.get("url") or "").rstrip("/")
        self.token = (
            token or os.environ.get("ANIMUS_TOKEN") or os.environ.get("JUPYTERHUB_API_TOKEN") or saved.get("token")
        )
        if not self.url:
            raise ConfigError(
                "Animus API URL unknown: run `animus login --url <hub>/services/animus/api/v1`, or set ANIMUS_API_URL"
            )
        if not self.token:
            raise ConfigError("Not logged in: run `animus login`, or set ANIMUS_TOKEN")
        self.timeout = timeout
        # inside a batch run (the runner sets it) the control plane may restart under the
        # code: keep retrying unanswered calls this long (POSTs keep their Idempotency-Key)
        self.retry_seconds = float(os.environ.get("ANIMUS_API_RETRY_SECONDS") or 0)
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {self.token}"
        self.http.headers["User-Agent"] = "animus-client"

    # --- plumbing -------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        headers = {}
        if method == "POST":
            headers["Idempotency-Key"] = idempotency_key or uuid.uuid4().hex
        params = {k: v for k, v in (params or {}).items() if v is not None}
        deadline, delay = time.monotonic() + self.retry_seconds, 0.5
        while True:
            try:
                r = self.http.request(
                    method, self.url + path, json=json_body, params=params, headers=headers, timeout=self.timeout
                )
                if r.status_code not in (502, 503, 504) or time.monotonic() + delay > deadline:
                    break
            except requests.RequestException as e:
                # connection refused or reset, timeouts: status 0 means "no answer", retryable
                if time.monotonic() + delay > deadline:
                    raise AnimusAPIError(0, "connection_failed", f"No answer from Animus at {self.url}: {e}") from None
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        if r.status_code == 204:
            return None
        try:
            body = r.json()
        except ValueError:
            body = None
        if r.status_code >= 400:
            if isinstance(body, dict) and "reason" in body:
                raise AnimusAPIError(r.status_code, body["reason"], body.get("message", ""), body.get("details"))
            raise AnimusAPIError(r.status_code, "http_error", f"HTTP {r.status_code} from {self.url}{path}")
        return body

    def paginate(self, path: str, params: dict[str, Any] | None = None, page_size: int = 200) -> Iterator[dict]:
        params = dict(params or {}, limit=page_size)
        while True:
            page = self.request("GET", path, params=params)
            yield from page["items"]
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    # --- identity -------------------------------------------------------------

    def whoami(self) -> dict:
        return self.request("GET", "/whoami")

    def version(self) -> dict:
        return self.request("GET", "/version")

    # --- projects -------------------------------------------------------------

    def list_projects(self, archived: bool = False) -> list[dict]:
        return list(self.paginate("/projects", {"archived": "true" if archived else None}))

    def create_project(self, slug: str, display_name: str | None = None, description: str = "") -> dict:
        body: dict[str, Any] = {"slug": slug, "description": description}
        if display_name:
            body["display_name"] = display_name
        return self.request("POST", "/projects", json_body=body)

    def get_project(self, slug: str) -> dict:
        return self.request("GET", f"/projects/{_seg(slug)}")

    def update_project(self, slug: str, display_name: str | None = None, description: str | None = None) -> dict:
        body = {k: v for k, v in (("display_name", display_name), ("description", description)) if v is not None}
        return self.request("PATCH", f"/projects/{_seg(slug)}", json_body=body)

    def archive_project(self, slug: str) -> dict:
        return self.request("POST", f"/projects/{_seg(slug)}/archive")

    def unarchive_project(self, slug: str) -> dict:
        return self.request("POST", f"/projects/{_seg(slug)}/unarchive")

    # --- members --------------------------------------------------------------

    def list_members(self, project: str) -> list[dict]:
        return list(self.paginate(f"/projects/{_seg(project)}/members"))

    def add_member(self, project: str, name: str, role: str, kind: str = "user") -> dict:
        return self.request(
            "POST", f"/projects/{_seg(project)}/members", json_body={"kind": kind, "name": name, "role": role}
        )

    def set_member_role(self, project: str, name: str, role: str, kind: str = "user") -> dict:
        return self.request("PUT", f"/projects/{_seg(project)}/members/{kind}s/{_seg(name)}", json_body={"role": role})

    def remove_member(self, project: str, name: str, kind: str = "user") -> None:
        self.request("DELETE", f"/projects/{_seg(project)}/members/{kind}s/{_seg(name)}")

    # --- audit ----------------------------------------------------------------

    def audit_events(
        self,
        project: str | None = None,
        since: str | None = None,
        until: str | None = None,
        actor: str | None = None,
        action: str | None = None,
    ) -> Iterator[dict]:
        params = {"since": since, "until": until, "actor": actor, "action": action}
        if project:
            return self.paginate(f"/projects/{_seg(project)}/audit/events", params, page_size=1000)
        return self.paginate("/audit/events", params, page_size=1000)

    def audit_head(self) -> dict:
        return self.request("GET", "/audit/head")

    # --- experiments and runs ------------------------------------------------------

    def list_experiments(self, project: str, lifecycle: str = "active") -> list[dict]:
        return list(self.paginate(f"/projects/{_seg(project)}/experiments", {"lifecycle": lifecycle}))

    def create_experiment(self, project: str, name: str, description: str = "") -> dict:
        return self.request(
            "POST", f"/projects/{_seg(project)}/experiments", json_body={"name": name, "description": description}
        )

    def search_runs(
        self,
        project: str,
        filter: str = "",
        order_by: list[str] | None = None,
        experiment_ids: list[str] | None = None,
        limit: int | None = None,
    ) -> Iterator[dict]:
        params: dict[str, Any] = {
            "filter": filter or None,
            "order_by": order_by or None,
            "experiment_id": experiment_ids or None,
        }
        path = f"/projects/{_seg(project)}/runs"
        if limit is None:
            return self.paginate(path, params, page_size=500)
        return iter(self.request("GET", path, params={**params, "limit": limit})["items"])

    def get_run(self, project: str, run_id: str) -> dict:
        return self.request("GET", f"/projects/{_seg(project)}/runs/{_seg(run_id)}")

    def metric_history(self, project: str, run_id: str, key: str, max_points: int | None = None) -> dict:
        return self.request(
            "GET",
            f"/projects/{_seg(project)}/runs/{_seg(run_id)}/metric-history",
            params={"key": key, "max_points": max_points},
        )

    def compare_runs(
        self, project: str, run_ids: list[str], metrics: list[str] | None = None, max_points: int = 500
    ) -> dict:
        return self.request(
            "GET",
            f"/projects/{_seg(project)}/runs/compare",
            params={
                "run_id": ",".join(run_ids),
                "metric": ",".join(metrics) if metrics else None,
                "max_points": max_points,
            },
        )

    def list_artifacts(self, project: str, run_id: str) -> list[dict]:
        return list(self.paginate(f"/projects/{_seg(project)}/runs/{_seg(run_id)}/artifacts", page_size=1000))

    def artifact_url(self, project: str, run_id: str, path: str) -> dict:
        return self.request(
            "GET", f"/projects/{_seg(project)}/runs/{_seg(run_id)}/artifacts/download", params={"path": path}
        )

    # --- environments and batch runs -------------------------------------------------------

    def list_environments(self, project: str) -> list[dict]:
        return list(self.paginate(f"/projects/{_seg(project)}/environments"))

    def create_environment(self, project: str, name: str, description: str = "") -> dict:
        body = {"name": name, "description": description}
        return self.request("POST", f"/projects/{_seg(project)}/environments", json_body=body)

    def get_environment(self, project: str, name: str) -> dict:
        return self.request("GET", f"/projects/{_seg(project)}/environments/{_seg(name)}")

    def list_environment_versions(self, project: str, name: str) -> list[dict]:
        return list(self.paginate(f"/projects/{_seg(project)}/environments/{_seg(name)}/versions"))

    def add_environment_version(
        self,
        project: str,
        name: str,
        image: str,
        lock_file: str = "",
        resources: dict[str, Any] | None = None,
        description: str = "",
    ) -> dict:
        body = {"image": image, "lock_file": lock_file, "resources": resources or {}, "description": description}
        return self.request("POST", f"/projects/{_seg(project)}/environments/{_seg(name)}/versions", json_body=body)

    def get_environment_version(self, project: str, name: str, version: str | int) -> dict:
        return self.request("GET", f"/projects/{_seg(project)}/environments/{_seg(name)}/versions/{_seg(str(version))}")

    def submit_run(
        self,
        project: str,
        repo: str,
        commit: str,
        command: list[str],
        *,
        environment: str | None = None,
        datasets: list[str] | None = None,
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
        experiment: str | None = None,
        name: str = "",
        priority: int = 0,
        retries: int = 0,
        infra_retries: int | None = None,
        timeout_seconds: int | None = None,
        production: bool = False,
        idempotency_key: str | None = None,
        secrets: list[str] | dict[str, str] | None = None,
        git_credentials: str | None = None,
    ) -> dict:
        """Queue a batch run; the same `idempotency_key` sent again returns the same run.

        `secrets` names project secrets the run receives as environment variables
        ([NAME, ...] or {NAME: VARIABLE}); `git_credentials` names a secret for an https remote.
        """
        body: dict[str, Any] = {
            "repo": repo,
            "commit": commit,
            "command": list(command),
            "datasets": list(datasets or []),
            "params": dict(params or {}),
            "tags": dict(tags or {}),
            "name": name,
            "priority": priority,
            "retries": retries,
            "production": production,
        }
        for key, value in (
            ("environment", environment),
            ("experiment", experiment),
            ("infra_retries", infra_retries),
            ("timeout_seconds", timeout_seconds),
            ("secrets", secrets),
            ("git_credentials", git_credentials),
        ):
            if value is not None:
                body[key] = value
        return self.request(
            "POST", f"/projects/{_seg(project)}/runs/submit", json_body=body, idempotency_key=idempotency_key
        )

    def run_job(self, project: str, run_id: str) -> dict:
        return self.request("GET", f"/projects/{_seg(project)}/runs/{_seg(run_id)}/job")

    def cancel_run(self, project: str, run_id: str) -> dict:
        return self.request("POST", f"/projects/{_seg(project)}/runs/{_seg(run_id)}/cancel")

    def reproduce_run(self, project: str, run_id: str, idempotency_key: str | None = None) -> dict:
        """Queue the identical run again (same commit, environment version, inputs, params, command, seed)."""
        return self.request(
            "POST", f"/projects/{_seg(project)}/runs/{_seg(run_id)}/reproduce", idempotency_key=idempotency_key
        )

    def artifact_diff(self, project: str, run_id: str, other_run_id: str, prefix: str = "") -> dict:
        """{identical, same, different: [{path, digest, other_digest}], only_in_run, only_in_other}."""
        return self.request(
            "GET",
            f"/projects/{_seg(project)}/runs/{_seg(run_id)}/artifact-diff",
            params={"other": other_run_id, "prefix": prefix or None},
        )

    # --- pipelines ------------------------------------------------------------------------

    def submit_pipeline(
        self,
        project: str,
        spec: str,
        repo: str,
        commit: str,
        *,
        experiment: str | None = None,
        idempotency_key: str | None = None,
    ) -> dict:
        """Submit a pipeline spec (YAML text); every step runs `commit` of `repo`."""
        body: dict[str, Any] = {"spec": spec, "repo": repo, "commit": commit}
        if experiment is not None:
            body["experiment"] = experiment
        return self.request(
            "POST", f"/projects/{_seg(project)}/pipelines", json_body=body, idempotency_key=idempotency_key
        )

    def list_pipelines(self, project: str, status: str | None = None) -> Iterator[dict]:
        return self.paginate(f"/projects/{_seg(project)}/pipelines", params={"status": status})

    def get_pipeline(self, project: str, pipeline_id: str, spec: bool = False) -> dict:
        params = {"spec": "true"} if spec else None
        return self.request("GET", f"/projects/{_seg(project)}/pipelines/{_seg(pipeline_id)}", params=params)

    def cancel_pipeline(self, project: str, pipeline_id: str) -> dict:
        return self.request("POST", f"/projects/{_seg(project)}/pipelines/{_seg(pipeline_id)}/cancel")

    def run_logs(self, project: str, run_id: str, after: int = 0, limit: int = 500) -> dict:
        """Output after chunk `after`: {items, next, status, attempt, truncated}."""
        return self.request(
            "GET", f"/projects/{_seg(project)}/runs/{_seg(run_id)}/logs", params={"after": after, "limit": limit}
        )

    # --- secrets (names and metadata; values are write-only) ------------------------------

    def list_secrets(self, project: str) -> list[dict]:
        return list(self.paginate(f"/projects/{_seg(project)}/secrets"))

    def secret(self, project: str, name: str) -> dict:
        return self.request("GET", f"/projects/{_seg(project)}/secrets/{_seg(name)}")

    def set_secret(self, project: str, name: str, value: str, description: str | None = None) -> dict:
        body: dict[str, Any] = {"value": value}
        if description is not None:
            body["description"] = description
        return self.request("PUT", f"/projects/{_seg(project)}/secrets/{_seg(name)}", json_body=body)

    def delete_secret(self, project: str, name: str) -> None:
        self.request("DELETE", f"/projects/{_seg(project)}/secrets/{_seg(name)}")

    def access(self, project: str, resource: str = "project", principal: str | None = None) -> dict:
        """Who can access `resource` (project, dataset:NAME, run:ID, model:NAME, secret:NAME) and why."""
        params = {"resource": resource}
        if principal:
            params["principal"] = principal
        return self.request("GET", f"/projects/{_seg(project)}/access", params=params)

    # --- role mappings (platform admins) --------------------------------------------------

    def list_role_mappings(self) -> list[dict]:
        return self.request("GET", "/role-mappings")["items"]

    def add_role_mapping(self, group_pattern: str, role: str, project: str | None = None) -> dict:
        body = {"group_pattern": group_pattern, "role": role}
        if project:
            body["project"] = project
        return self.request("POST", "/role-mappings", json_body=body)

    def remove_role_mapping(self, rule_id: int) -> None:
        self.request("DELETE", f"/role-mappings/{rule_id}")

    # --- people's sessions (platform admins) ---------------------------------------------

    def list_user_sessions(self, user: str, ended: bool = False) -> list[dict]:
        return list(self.paginate(f"/users/{_seg(user)}/sessions", {"ended": "true" if ended else None}))

    def force_logout(self, user: str, stop_servers: bool | None = None, reason: str = "") -> dict:
        """End every session, cookie and token of `user` (platform admins)."""
        body: dict[str, Any] = {"reason": reason}
        if stop_servers is not None:
            body["stop_servers"] = stop_servers
        return self.request("POST", f"/users/{_seg(user)}/logout", json_body=body)

    # --- SSH keys -----------------------------------------------------------------------------

    def add_ssh_key(self, public_key: str, comment: str | None = None) -> dict:
        body: dict[str, Any] = {"public_key": public_key}
        if comment is not None:
            body["comment"] = comment
        return self.request("POST", "/users/me/ssh-keys", json_body=body)

    def list_ssh_keys(self) -> list[dict]:
        return self.request("GET", "/users/me/ssh-keys")["items"]

    def delete_ssh_key(self, key: str) -> None:
        self.request("DELETE", f"/users/me/ssh-keys/{_seg(key)}")

    # --- service accounts -----------------------------------------------------------------

    def list_service_accounts(self, project: str, disabled: bool = False) -> list[dict]:
        params = {"disabled": "true" if disabled else None}
        return list(self.paginate(f"/projects/{_seg(project)}/service-accounts", params))

    def create_service_account(self, project: str, name: str, role: str, description: str = "") -> dict:
        body = {"name": name, "role": role, "description": description}
        return self.request("POST", f"/projects/{_seg(project)}/service-accounts", json_body=body)

    def get_service_account(self, project: str, name: str) -> dict:
        return self.request("GET", f"/projects/{_seg(project)}/service-accounts/{_seg(name)}")

    def update_service_account(
        self, project: str, name: str, description: str | None = None, role: str | None = None
    ) -> dict:
        body = {k: v for k, v in (("description", description), ("role", role)) if v is not None}
        return self.request("PATCH", f"/projects/{_seg(project)}/service-accounts/{_seg(name)}", json_body=body)

    def disable_service_account(self, project: str, name: str) -> None:
        self.request("DELETE", f"/projects/{_seg(project)}/service-accounts/{_seg(name)}")

    def list_service_account_tokens(self, project: str, name: str) -> list[dict]:
        return list(self.paginate(f"/projects/{_seg(project)}/service-accounts/{_seg(name)}/tokens"))

    def issue_service_account_token(
        self, project: str, name: str, expires_in: int, note: str = "", scopes: list[str] | None = None
    ) -> dict:
        """A new token; its value is in the answer's ``token``, this once."""
        body: dict[str, Any] = {"expires_in": expires_in, "note": note, "scopes": list(scopes or [])}
        return self.request("POST", f"/projects/{_seg(project)}/service-accounts/{_seg(name)}/tokens", json_body=body)

    def revoke_service_account_token(self, project: str, name: str, prefix: str) -> None:
        self.request("DELETE", f"/projects/{_seg(project)}/service-accounts/{_seg(name)}/tokens/{_seg(prefix)}")
