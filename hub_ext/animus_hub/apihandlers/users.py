"""/users/{name}/…: a person's login sessions, and forced logout (platform admins)."""

from __future__ import annotations

import re

from ..errors import AnimusError
from ..schemas import PRINCIPAL_NAME_PATTERN, ForcedLogout
from ..services import sessions as svc
from .base import APIHandler

USER = r"(?P<name>[^/]+)"
_NAME = re.compile(PRINCIPAL_NAME_PATTERN)


def checked_name(name: str) -> str:
    if len(name) > 255 or not _NAME.match(name):
        raise AnimusError(400, "invalid_user_name", "Not a valid user name", {"name": name[:100]})
    return name


class UserSessionListAPIHandler(APIHandler):
    actions = {"GET": "user_sessions:read"}

    def get(self, name: str) -> None:
        name = checked_name(name)
        rows, next_cursor = svc.list_sessions(
            self.db, name, self.limit_arg(), self.get_query_argument("cursor", None), self.bool_arg("ended")
        )
        self.write_json({"items": [svc.session_json(s) for s in rows], "next_cursor": next_cursor})


class UserLogoutAPIHandler(APIHandler):
    """Forced logout: every session, cookie and token of the person ends now."""

    actions = {"POST": "users:logout"}

    async def post(self, name: str) -> None:
        name = checked_name(name)
        data = self.json_body(ForcedLogout)
        stop = data.stop_servers if data.stop_servers is not None else self.settings["forced_logout_stops_servers"]
        hub = await self.settings["hub_api"].force_logout(name, stop)
        ended = svc.end_user_sessions(self.db, name, "forced_logout")
        revoked = svc.revoke_user_tokens(self.db, name)
        body = {
            "user": name,
            "sessions_ended": len(ended),
            "hub_tokens_revoked": hub.get("hub_tokens_revoked", 0),
            "animus_tokens_revoked": len(revoked),
            "servers_stopped": hub.get("servers_stopped", []),
            "servers_kept": hub.get("servers_kept", []),
        }
        self.commit_and_write(
            body,
            audit_action="user.logout_forced",
            resource=f"user/{name}",
            # (audit details scrub keys that mention tokens: the counts go under "revoked")
            details={
                "reason": data.reason,
                "stop_servers": stop,
                "sessions_ended": len(ended),
                "revoked": {"hub": body["hub_tokens_revoked"], "animus": len(revoked), "animus_prefixes": revoked},
                "servers_stopped": body["servers_stopped"],
                "servers_kept": body["servers_kept"],
            },
        )
        # this replica forgets the person's cached identities at once (others within auth_cache_max_age)
        self.settings["identifier"].forget(name)


default_handlers = [
    (f"/users/{USER}/sessions", UserSessionListAPIHandler),
    (f"/users/{USER}/logout", UserLogoutAPIHandler),
]
