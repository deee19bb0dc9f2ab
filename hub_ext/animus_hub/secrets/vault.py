"""VaultSecretStore: secrets in Vault or OpenBao (KV version 2), through hvac.

Values live at ``<mount>/data/<prefix>/projects/<slug>/<name>`` under the key
``value``. animus-api authenticates with a token, AppRole or Kubernetes auth.

A run gets its own credential at dispatch: an ACL policy that may only read the
paths of the run's declared secrets, and a token with that policy alone, a TTL of
the run's timeout (plus a margin) and no renewal, handed to the runner
response-wrapped (single use, short wrap TTL). The runner unwraps it and reads
the values from Vault itself: they never pass through animus-api. When the
attempt ends the token is revoked by its accessor and the policy deleted.

animus-api's Vault identity needs: create/read/delete on the KV paths under the
prefix, create/delete on ``sys/policies/acl/animus-run-*``, and permission to
create tokens with those policies (root-like ``auth/token/create`` with ``sudo``,
or — better — a token role whose ``allowed_policies_glob`` is ``animus-run-*``,
named in ``run_token_role``; make that role ``orphan`` so run tokens do not die
with animus-api's own login token), plus ``auth/token/revoke-accessor``.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from traitlets import Bool, Float, Integer, Unicode, default, validate

from .base import RunCredential, SecretNotFound, SecretStore, SecretStoreUnavailable

RUN_POLICY_PREFIX = "animus-run-"


def _unavailable(e: Exception, what: str) -> SecretStoreUnavailable:
    # hvac messages carry the URL and Vault's error list, never a token or a value
    return SecretStoreUnavailable(f"{what}: {type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")


class VaultSecretStore(SecretStore):
    kind = "vault"
    serves_values = False

    url = Unicode(help="Vault / OpenBao address, e.g. https://vault.example.com:8200 (env VAULT_ADDR).").tag(
        config=True
    )

    @default("url")
    def _url_default(self) -> str:
        return os.environ.get("VAULT_ADDR", "http://127.0.0.1:8200")

    runner_url = Unicode(
        "", help="The address runners use to reach Vault, when it differs from `url` (e.g. inside the cluster)."
    ).tag(config=True)
    namespace = Unicode("", help="Vault Enterprise / OpenBao namespace (empty: none).").tag(config=True)
    verify = Unicode("true", help="TLS verification: 'true', 'false' (tests only) or the path of a CA bundle.").tag(
        config=True
    )
    timeout = Float(10.0, help="Seconds a single Vault request may take.").tag(config=True)
    mount = Unicode("secret", help="Mount point of the KV version 2 engine.").tag(config=True)
    prefix = Unicode(
        "animus", help="Path prefix inside the mount: values live at <prefix>/projects/<slug>/<name>."
    ).tag(config=True)

    @validate("prefix")
    def _strip_prefix(self, proposal: Any) -> str:
        return proposal["value"].strip("/")

    auth_method = Unicode("token", help="How animus-api logs in: 'token', 'approle' or 'kubernetes'.").tag(config=True)

    @validate("auth_method")
    def _check_auth_method(self, proposal: Any) -> str:
        if proposal["value"] not in ("token", "approle", "kubernetes"):
            raise ValueError("VaultSecretStore.auth_method must be 'token', 'approle' or 'kubernetes'")
        return proposal["value"]

    token = Unicode(help="Token for auth_method 'token' (env VAULT_TOKEN); prefer token_file.").tag(config=True)

    @default("token")
    def _token_default(self) -> str:
        return os.environ.get("VAULT_TOKEN", "")

    token_file = Unicode("", help="File holding the token for auth_method 'token' (read at start).").tag(config=True)
    approle_mount = Unicode("approle", help="Mount point of the AppRole auth method.").tag(config=True)
    role_id = Unicode("", help="AppRole role id.").tag(config=True)
    secret_id_file = Unicode(
        "", help="File holding the AppRole secret id (env VAULT_SECRET_ID is used when this is empty)."
    ).tag(config=True)
    kubernetes_mount = Unicode("kubernetes", help="Mount point of the Kubernetes auth method.").tag(config=True)
    kubernetes_role = Unicode("", help="Vault role for Kubernetes auth.").tag(config=True)
    kubernetes_jwt_path = Unicode(
        "/var/run/secrets/kubernetes.io/serviceaccount/token", help="The pod's service-account token."
    ).tag(config=True)
    run_token_role = Unicode(
        "", help="Token role run tokens are created under (recommended: allowed_policies_glob animus-run-*, orphan)."
    ).tag(config=True)
    run_token_margin = Integer(
        600, help="Seconds a run token outlives the run's timeout (it is revoked when the attempt ends anyway)."
    ).tag(config=True)
    wrap_ttl = Integer(
        300, help="Seconds the runner has to unwrap its response-wrapped token (keep near RunQueue.start_timeout)."
    ).tag(config=True)
    wrap_run_tokens = Bool(True, help="Hand run tokens to runners response-wrapped (single use).").tag(config=True)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._client = None
        self._lock = threading.Lock()

    # --- the client -----------------------------------------------------------------------

    def _verify(self) -> bool | str:
        v = self.verify.strip()
        return False if v.lower() == "false" else True if v.lower() in ("", "true") else v

    def _new_client(self):
        import hvac

        client = hvac.Client(
            url=self.url, namespace=self.namespace or None, verify=self._verify(), timeout=self.timeout
        )
        if self.auth_method == "token":
            client.token = Path(self.token_file).read_text().strip() if self.token_file else self.token
            if not client.token:
                raise SecretStoreUnavailable("VaultSecretStore has no token (set token_file, token or VAULT_TOKEN)")
        elif self.auth_method == "approle":
            secret_id = (
                Path(self.secret_id_file).read_text().strip()
                if self.secret_id_file
                else os.environ.get("VAULT_SECRET_ID", "")
            )
            client.auth.approle.login(role_id=self.role_id, secret_id=secret_id, mount_point=self.approle_mount)
        else:
            jwt = Path(self.kubernetes_jwt_path).read_text().strip()
            client.auth.kubernetes.login(role=self.kubernetes_role, jwt=jwt, mount_point=self.kubernetes_mount)
        return client

    def _call(self, what: str, fn):
        """Run fn(client); log in again once if Vault says our token is no longer good."""
        import hvac.exceptions as hx
        import requests

        for attempt in (1, 2):
            try:
                with self._lock:
                    if self._client is None:
                        self._client = self._new_client()
                    client = self._client
                return fn(client)
            except hx.InvalidPath:
                raise SecretNotFound(what) from None
            except hx.Forbidden as e:
                with self._lock:
                    self._client = None
                if attempt == 2 or self.auth_method == "token":
                    raise _unavailable(e, f"Vault refused {what}") from None
            except (requests.exceptions.RequestException, hx.VaultError, OSError) as e:
                with self._lock:
                    self._client = None
                raise _unavailable(e, f"Vault is unreachable for {what}") from None
        raise SecretStoreUnavailable(f"Vault refused {what}")

    def _kv_path(self, project: str, name: str) -> str:
        return f"{self.prefix}/{self.path(project, name)}" if self.prefix else self.path(project, name)

    # --- values ------------------------------------------------------------------------------

    def put(self, project: str, name: str, value: str) -> None:
        path = self._kv_path(project, name)
        self._call(
            f"writing secret {name!r}",
            lambda c: c.secrets.kv.v2.create_or_update_secret(
                path=path, secret={"value": value}, mount_point=self.mount
            ),
        )

    def delete(self, project: str, name: str) -> None:
        path = self._kv_path(project, name)
        try:
            self._call(
                f"deleting secret {name!r}",
                lambda c: c.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point=self.mount),
            )
        except SecretNotFound:
            pass

    def read(self, project: str, name: str) -> str:
        path = self._kv_path(project, name)
        result = self._call(
            name,
            lambda c: c.secrets.kv.v2.read_secret_version(
                path=path, mount_point=self.mount, raise_on_deleted_version=True
            ),
        )
        return result["data"]["data"]["value"]

    # --- run credentials ----------------------------------------------------------------------

    def issue_run_credential(
        self, project: str, run_id: str, attempt: int, names: list[str], ttl: int
    ) -> RunCredential:
        policy = f"{RUN_POLICY_PREFIX}{run_id}-{attempt}"
        paths = {n: self._kv_path(project, n) for n in names}
        rules = "\n".join(f'path "{self.mount}/data/{p}" {{\n  capabilities = ["read"]\n}}' for p in paths.values())
        seconds = max(60, int(ttl) + self.run_token_margin)

        def create(c):
            c.sys.create_or_update_acl_policy(name=policy, policy=rules)
            kwargs: dict[str, Any] = {
                "policies": [policy],
                "no_default_policy": True,
                "renewable": False,
                "ttl": f"{seconds}s",
                "explicit_max_ttl": f"{seconds}s",
                "display_name": f"animus-run-{run_id}",
                "meta": {"animus_run": run_id, "attempt": str(attempt), "project": project},
            }
            if self.run_token_role:
                kwargs["role_name"] = self.run_token_role
            if self.wrap_run_tokens:
                kwargs["wrap_ttl"] = f"{self.wrap_ttl}s"
            return c.auth.token.create(**kwargs)

        result = self._call(f"issuing a token for run {run_id}", create)
        if self.wrap_run_tokens:
            info = result["wrap_info"]
            token, accessor = info["token"], info["wrapped_accessor"]
        else:
            token, accessor = result["auth"]["client_token"], result["auth"]["accessor"]
        env = {
            "ANIMUS_VAULT_ADDR": self.runner_url or self.url,
            "ANIMUS_VAULT_TOKEN": token,
            "ANIMUS_VAULT_WRAPPED": "1" if self.wrap_run_tokens else "0",
            "ANIMUS_VAULT_MOUNT": self.mount,
            "ANIMUS_VAULT_PATHS": json.dumps(paths),
        }
        if self.namespace:
            env["ANIMUS_VAULT_NAMESPACE"] = self.namespace
        if self.verify.strip().lower() not in ("", "true"):
            env["ANIMUS_VAULT_VERIFY"] = self.verify.strip()
        return RunCredential(
            lease_id=f"{policy}/{accessor}", token=token, wrapped=self.wrap_run_tokens, environment=env, paths=paths
        )

    def revoke_run_credential(self, lease_id: str) -> None:
        import hvac.exceptions as hx

        policy, _, accessor = lease_id.partition("/")

        def revoke(c):
            try:
                c.auth.token.revoke_accessor(accessor)
            except (hx.InvalidRequest, hx.InvalidPath):
                pass  # already expired or revoked
            if policy.startswith(RUN_POLICY_PREFIX):
                c.sys.delete_acl_policy(name=policy)

        self._call("revoking a run token", revoke)

    def lookup_accessor(self, accessor: str) -> dict[str, Any] | None:
        """The token behind `accessor`, or None when it no longer exists (for checks and tests)."""
        import hvac.exceptions as hx

        def look(c):
            try:
                return c.auth.token.lookup_accessor(accessor)["data"]
            except (hx.InvalidRequest, hx.Forbidden):
                return None

        try:
            return self._call("looking up a token", look)
        except SecretNotFound:
            return None

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                with contextlib.suppress(Exception):
                    self._client.adapter.close()
                self._client = None
