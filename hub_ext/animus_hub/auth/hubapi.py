"""Calls from animus-api to the hub, with the service's own token.

Only the forced logout for now: ``POST /hub/api/animus/users/{name}/logout``, the
hub-side half served by ``auth.hubsessions`` (needs the service's role with
``custom:animus:sessions:revoke``).
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from ..errors import AnimusError

log = logging.getLogger("animus.hubapi")


class HubAPI:
    def __init__(self, api_url: str, token: str, timeout: float = 60.0):
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    async def force_logout(self, user: str, stop_servers: bool) -> dict[str, Any]:
        """End every hub session of `user`; what the hub did (tokens revoked, servers stopped or kept)."""
        url = f"{self.api_url}/animus/users/{quote(user, safe='')}/logout"
        try:
            r = await AsyncHTTPClient().fetch(
                url,
                method="POST",
                body=json.dumps({"stop_servers": stop_servers}),
                headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
                request_timeout=self.timeout,
            )
        except HTTPClientError as e:
            if e.code == 404:
                raise AnimusError(404, "user_not_found", f"JupyterHub has no user {user!r}") from None
            reason = ""
            if e.response is not None and e.response.body:
                try:
                    reason = json.loads(e.response.body).get("message", "")
                except (ValueError, AttributeError):
                    reason = ""
            log.error("The hub refused the forced logout of %s: %s %s", user, e.code, reason)
            raise AnimusError(
                502, "hub_error", f"The hub refused the forced logout ({e.code}): {reason or 'see its log'}"
            ) from None
        except OSError as e:
            raise AnimusError(503, "hub_unavailable", f"The hub cannot be reached: {e}") from None
        return json.loads(r.body)

    async def user(self, name: str) -> dict[str, Any] | None:
        """The hub's model of user `name` (name, groups, admin), None if there is none.

        Needs ``read:users`` (the animus-directory role of the embedded configuration).
        """
        url = f"{self.api_url}/users/{quote(name, safe='')}"
        try:
            r = await AsyncHTTPClient().fetch(
                url, headers={"Authorization": f"token {self.token}"}, request_timeout=self.timeout
            )
        except HTTPClientError as e:
            if e.code == 404:
                return None
            raise AnimusError(502, "hub_error", f"The hub refused to describe user {name!r} ({e.code})") from None
        except OSError as e:
            raise AnimusError(503, "hub_unavailable", f"The hub cannot be reached: {e}") from None
        return json.loads(r.body)
