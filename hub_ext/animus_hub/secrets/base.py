"""The secret store interface and the rules for secret names.

A secret belongs to one project and is addressed as ``projects/<slug>/<name>``
inside the store. The store holds values only; names and metadata (version, who
and when) are in the Animus database (``orm.SecretEntry``), so listing never
touches the store. Values leave the store only towards a run: with Vault the
runner reads them itself with a short-lived token issued at dispatch
(``issue_run_credential``); with the local store animus-api hands them to the
run's runner once (``read``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from traitlets.config import LoggingConfigurable

from ..errors import AnimusError

# a name is one path segment: letters, digits, '_', '-', '.', never '..', never '/'
SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# variables a secret may not take over: the runner's own and the process basics
RESERVED_ENV = frozenset({"PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "VIRTUAL_ENV", "PYTHONUNBUFFERED", "PYTHONPATH"})
RESERVED_ENV_PREFIXES = ("ANIMUS_", "MLFLOW_", "LD_", "PYTHON")


def validate_secret_name(name: Any) -> str:
    """The name, or 422 when it is not one safe path segment (no '/', '..', control characters)."""
    if not isinstance(name, str) or not SECRET_NAME_RE.match(name) or ".." in name:
        shown = name[:140] if isinstance(name, str) else name
        raise AnimusError(
            422,
            "invalid_secret_name",
            "A secret name is 1–128 letters, digits, '_', '-' or '.', starts with a letter, digit or '_', "
            "and contains no '/', '..' or control characters",
            {"name": shown if isinstance(shown, str) and shown.isprintable() else repr(shown)},
        )
    return name


def default_env_name(name: str) -> str:
    """The environment variable a secret gets when the run does not name one: DB_PASSWORD for db-password."""
    env = re.sub(r"[^A-Za-z0-9_]", "_", name).upper()
    return env if not env[0].isdigit() else "_" + env


def validate_env_name(env: str, secret: str) -> str:
    if not ENV_NAME_RE.match(env) or env.upper() in RESERVED_ENV or env.upper().startswith(RESERVED_ENV_PREFIXES):
        raise AnimusError(
            422,
            "invalid_secret_env",
            f"Secret {secret!r} cannot go into variable {env[:140]!r}: a variable name is letters, digits and '_', "
            "and may not be PATH, HOME, TMPDIR, PYTHON*, LD_*, ANIMUS_* or MLFLOW_*",
            {"secret": secret, "env": env[:140]},
        )
    return env


class SecretStoreUnavailable(Exception):
    """The store cannot be reached or refused us: a 503 to clients, a retried attempt to runs."""


class SecretNotFound(Exception):
    """The store has no value under that name."""


@dataclass(frozen=True)
class RunCredential:
    """What a runner needs to read its secrets itself (Vault): given to the executor, never stored.

    ``lease_id`` (a token accessor) is stored so the credential can be revoked when the
    attempt ends; it cannot be used to read anything.
    """

    lease_id: str
    token: str = field(repr=False)
    wrapped: bool
    environment: dict[str, str] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)


class SecretStore(LoggingConfigurable):
    """Where secret values live. Blocking methods: callers run them in a thread."""

    #: shown in the API's secret listing and the docs
    kind = "base"
    #: whether animus-api can read values itself (then it also scrubs run logs server-side)
    serves_values = False

    def path(self, project: str, name: str) -> str:
        return f"projects/{project}/{validate_secret_name(name)}"

    def put(self, project: str, name: str, value: str) -> None:
        """Store `value` as the current version of the secret (create or rotate)."""
        raise NotImplementedError

    def delete(self, project: str, name: str) -> None:
        """Remove the secret and every version of it; no error if it is not there."""
        raise NotImplementedError

    def read(self, project: str, name: str) -> str:
        """The current value; SecretNotFound if there is none."""
        raise NotImplementedError

    def issue_run_credential(
        self, project: str, run_id: str, attempt: int, names: list[str], ttl: int
    ) -> RunCredential | None:
        """A credential limited to reading `names`, valid for `ttl` seconds; None if runs fetch through the API."""
        return None

    def revoke_run_credential(self, lease_id: str) -> None:
        """End a credential issued by ``issue_run_credential`` (idempotent)."""

    def close(self) -> None:
        """Release the store's resources."""
