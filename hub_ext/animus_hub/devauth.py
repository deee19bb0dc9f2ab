"""The embedded profile's authenticator: users and groups from ``users.json``.

Groups are managed by the authenticator (``manage_groups``), so a change to a
user's groups in the file takes effect at that user's next login, as with an IdP.
Sessions (TTL, concurrent-session limit, forced logout) are controlled as with OIDC:
see ``auth.hubsessions``.
"""

from __future__ import annotations

from jupyterhub.auth import Authenticator
from traitlets import Unicode, default

from .auth.hubsessions import SessionControlMixin
from .userfile import UserFile


class UsersFileAuthenticator(Authenticator):
    """Checks passwords and reads groups from users.json (no session control: see FileAuthenticator)."""

    users_file = Unicode(help="Path of users.json (users, groups and scrypt password hashes).").tag(config=True)

    @default("manage_groups")
    def _manage_groups_default(self) -> bool:
        return True

    @default("allow_all")
    def _allow_all_default(self) -> bool:
        # the file is the list of allowed users: anyone who can log in is in it
        return True

    @default("refresh_pre_spawn")
    def _refresh_default(self) -> bool:
        return True

    async def authenticate(self, handler, data):  # type: ignore[override]
        name = (data or {}).get("username", "")
        entry = UserFile(self.users_file).check(name, (data or {}).get("password", ""))
        if entry is None:
            self.log.warning("Failed login for %r", name)
            return None
        return {"name": name, "groups": list(entry.get("groups", [])), "admin": bool(entry.get("admin"))}

    async def refresh_user(self, user, handler=None):  # type: ignore[override]
        entry = UserFile(self.users_file).load().get(user.name)
        if entry is None:
            return False
        return {"name": user.name, "groups": list(entry.get("groups", [])), "admin": bool(entry.get("admin"))}


class FileAuthenticator(SessionControlMixin, UsersFileAuthenticator):
    """The embedded profile's authenticator: users.json, with Animus session control."""

    @default("identity_refresh_age")
    def _identity_refresh_age_default(self) -> int:
        # reading a local file is cheap: groups follow users.json at every session check
        return 0
