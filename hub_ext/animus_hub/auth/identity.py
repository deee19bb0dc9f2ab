"""Turning a request's bearer token into a Principal.

Two kinds of token are accepted: JupyterHub tokens (user API tokens, the token a
workspace gets in ``JUPYTERHUB_API_TOKEN``, OAuth access tokens), checked with the
hub through ``HubAuth`` and cached for ``cache_max_age`` seconds; and Animus-issued
tokens (``anm_…``) for service accounts and runs, checked in our database.

A workspace's token is bound to the workspace's project: see ``workspace_project``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from jupyterhub.services.auth import HubAuth
from sqlalchemy.orm import Session

from ..errors import AnimusError
from .principal import ANONYMOUS, Principal
from .tokens import is_animus_token, principal_for_token

_AUTH_HEADER = re.compile(r"^\s*(?:bearer|token)\s+(\S+)\s*$", re.IGNORECASE)
# the JupyterHub scope that lets a token reach servers through the proxy, and its one-server filter
SERVER_ACCESS_SCOPE = "access:servers"
_ONE_SERVER_FILTER = "server="


def workspace_project(user: str, scopes: frozenset[str] | set[str] | list[str]) -> str | None:
    """The project a JupyterHub token of `user` is bound to, from its expanded scopes; None if unbound.

    A workspace is the user's named server called after the project, and the hub gives
    the server's own token (``$JUPYTERHUB_API_TOKEN``, ``MLFLOW_TRACKING_TOKEN``)
    ``access:servers!server=<user>/<server>`` as its only server access (hubconfig's
    SERVER_TOKEN_SCOPES; the hub expands ``!server``). A token is bound when that is
    exactly its server access. Anything broader — ``access:servers``,
    ``access:servers!user=…``, ``!group=…``, a second server, another user's server — is a
    token that was never a single workspace's, so it is not bound; nor is the default
    server's token (``…/`` with no name: not a project's workspace). Tokens made on
    /hub/token or through ``POST /users/{u}/tokens`` without scopes carry
    ``access:servers!user=<user>``, and OAuth tokens of browser sessions with the hub or a
    service carry no server access at all: neither is bound. (The OAuth token of a browser
    session with the workspace itself carries the workspace's one server, so it is bound
    too; by default it cannot call Animus at all.) Checked against JupyterHub 6.1.
    """
    server_access = [s for s in scopes if s.partition("!")[0] == SERVER_ACCESS_SCOPE]
    if len(server_access) != 1:
        return None
    _, _, filter_ = server_access[0].partition("!")
    prefix = f"{_ONE_SERVER_FILTER}{user}/"
    if not filter_.startswith(prefix):
        return None
    name = filter_[len(prefix) :]
    return name or None


def token_from_header(header: str | None) -> str | None:
    if not header:
        return None
    m = _AUTH_HEADER.match(header)
    if not m:
        raise AnimusError(
            401,
            "malformed_authorization",
            "The Authorization header must read 'Bearer <token>'",
            headers={"WWW-Authenticate": 'Bearer realm="animus"'},
        )
    return m.group(1)


class Identifier:
    """Resolves tokens to principals; one instance per animus-api process."""

    def __init__(self, hub_auth: HubAuth, admin_users: set[str], admin_groups: set[str]):
        self.hub_auth = hub_auth
        self.admin_users = admin_users
        self.admin_groups = admin_groups

    async def identify(self, session: Callable[[], Session], token: str | None) -> Principal:
        """`session` is called only when the database is needed (Animus tokens)."""
        if not token:
            return ANONYMOUS
        if is_animus_token(token):
            principal = principal_for_token(session(), token)
            if principal is None:
                raise invalid_token()
            return principal
        model = await self.hub_auth.user_for_token(token, sync=False)
        if not model:
            raise invalid_token()
        if self.hub_auth.access_scopes and not self.hub_auth.check_scopes(self.hub_auth.access_scopes, model):
            raise AnimusError(
                403,
                "token_lacks_access",
                "This JupyterHub token does not grant access to the animus service "
                f"(needs one of: {', '.join(sorted(self.hub_auth.access_scopes))})",
            )
        return self.principal_for_model(model)

    def forget(self, user: str) -> int:
        """Drop this process's cached identities of `user` (after a forced logout); how many were dropped."""
        cache = self.hub_auth.cache
        values = getattr(cache, "values", None)
        if not isinstance(values, dict):
            return 0
        keys = [k for k, v in values.items() if isinstance(v, dict) and v.get("name") == user]
        for k in keys:
            values.pop(k, None)
            getattr(cache, "timestamps", {}).pop(k, None)
        return len(keys)

    def principal_for_model(self, model: dict) -> Principal:
        kind = model.get("kind", "user")
        name = model["name"]
        groups = frozenset(model.get("groups") or [])
        is_admin = bool(model.get("admin")) or name in self.admin_users or bool(groups & self.admin_groups)
        scopes = frozenset(model.get("scopes") or [])
        if kind != "user":
            return Principal(kind="service", name=name, scopes=scopes)
        return Principal(
            kind="user",
            name=name,
            groups=groups,
            is_admin=is_admin,
            token_id=model.get("token_id"),
            scopes=scopes,
            workspace_project=workspace_project(name, scopes),
        )


def invalid_token() -> AnimusError:
    return AnimusError(
        401,
        "invalid_token",
        "The token is invalid, expired or revoked",
        headers={"WWW-Authenticate": 'Bearer realm="animus", error="invalid_token"'},
    )
