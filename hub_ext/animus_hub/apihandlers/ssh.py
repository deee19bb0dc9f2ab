"""Workspace SSH: a person's public keys (/users/me/ssh-keys), and the SSH gateway's questions.

The gateway (``animus_hub.sshgateway``, the JupyterHub service ``animus-ssh``) asks
``/ssh/authorize`` whether an offered key may log in as ``user+project``, and reports
logins, refusals it decided itself and session ends to ``/ssh/events``; both answer
only that service.
"""

from __future__ import annotations

import re
from typing import Any

from .. import audit
from ..errors import AnimusError
from ..schemas import SSHAuthorize, SSHEvent, SSHKeyCreate
from ..services import ssh_keys as svc
from .base import APIHandler

KEY_ID = r"(?P<key_id>[^/]+)"
SLUG = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")


class SSHKeyListAPIHandler(APIHandler):
    actions = {"GET": "ssh_keys:read", "POST": "ssh_keys:write"}

    def get(self) -> None:
        keys = svc.list_keys(self.db, self.principal.name)
        self.write_json({"items": [svc.key_json(k) for k in keys], "next_cursor": None})

    def post(self) -> None:
        data = self.json_body(SSHKeyCreate)
        key = svc.add_key(self.db, self.principal.name, data.public_key, data.comment)
        body = svc.key_json(key)
        self.commit_and_write(
            body,
            201,
            audit_action="ssh_key.add",
            resource=f"user/{self.principal.name}/ssh-keys/{key.id}",
            details={"fingerprint": key.fingerprint, "type": key.key_type, "bits": key.bits},
        )


class SSHKeyAPIHandler(APIHandler):
    actions = {"GET": "ssh_keys:read", "DELETE": "ssh_keys:write"}

    def get(self, key_id: str) -> None:
        self.write_json(svc.key_json(svc.find_key(self.db, self.principal.name, key_id)))

    def delete(self, key_id: str) -> None:
        key = svc.find_key(self.db, self.principal.name, key_id)
        details = {"fingerprint": key.fingerprint, "type": key.key_type}
        resource = f"user/{self.principal.name}/ssh-keys/{key.id}"
        self.db.delete(key)
        self.commit_and_write(None, 204, audit_action="ssh_key.delete", resource=resource, details=details)


class SSHAuthorizeAPIHandler(APIHandler):
    """May this key log in as user+project? Refusals are audited here, where they are decided."""

    actions = {"POST": "ssh:authorize"}

    def _refuse(self, data: SSHAuthorize, reason: str, message: str, fingerprint: str = "") -> None:
        audit.record(
            self.db,
            audit.Actor(name=data.user, kind="user", source=data.client, request_id=self.request_id),
            "ssh.login",
            outcome="denied",
            resource=f"ssh/{data.user}+{data.project}",
            project=data.project if SLUG.match(data.project) else "",
            details={"reason": reason, "fingerprint": fingerprint, "gateway": self.principal.name},
        )
        self.db.commit()
        self.write_json({"allowed": False, "reason": reason, "message": message})

    def post(self) -> None:
        data = self.json_body(SSHAuthorize)
        key = svc.key_of_user(self.db, data.user, data.public_key)
        if key is None:
            fingerprint = ""
            try:
                fingerprint = svc.parse_public_key(data.public_key).fingerprint
            except AnimusError:
                pass
            return self._refuse(
                data, "key_not_registered", f"This key is not registered for {data.user!r}", fingerprint
            )
        if not SLUG.match(data.project):
            return self._refuse(data, "project_not_found", f"Project {data.project!r} not found", key.fingerprint)
        who = self.settings["identifier"].principal_for_model(
            {"kind": "user", "name": data.user, "groups": data.groups, "admin": data.admin}
        )
        try:
            project, grants = self.authorizer.resolve(self.db, who, data.project, for_update=True)
            role = self.authorizer.authorize(self.db, who, "workspaces:open", project, data.project, grants)
        except AnimusError as e:
            return self._refuse(data, e.reason, e.message, key.fingerprint)
        self.write_json(
            {
                "allowed": True,
                "user": data.user,
                "project": data.project,
                "role": role.name if role is not None else None,
                "fingerprint": key.fingerprint,
            }
        )


class SSHEventAPIHandler(APIHandler):
    """A login (after the key's signature checked out), a refusal the gateway decided, a session end."""

    actions = {"POST": "ssh:report"}

    def post(self) -> None:
        data = self.json_body(SSHEvent)
        details: dict[str, Any] = {
            "gateway": self.principal.name,
            "session": data.session,
            "fingerprint": data.fingerprint,
        }
        outcome = "success"
        action = "ssh.login"
        if data.event == "login":
            key = svc.key_of_fingerprint(self.db, data.user, data.fingerprint)
            if key is None:
                raise AnimusError(
                    422, "ssh_key_not_found", "No such key of this user", {"fingerprint": data.fingerprint}
                )
            svc.touch(key)
        elif data.event == "refused":
            outcome = "denied"
            details |= {"reason": data.reason, "message": data.message}
        else:
            action = "ssh.session_end"
            details |= {
                "duration_seconds": data.duration_seconds,
                "commands": data.commands,
                "forwards": data.forwards,
                "reason": data.reason,
            }
        audit.record(
            self.db,
            audit.Actor(name=data.user, kind="user", source=data.client, request_id=self.request_id),
            action,
            outcome=outcome,
            resource=f"ssh/{data.user}+{data.project}",
            project=data.project if SLUG.match(data.project) else "",
            details=details,
        )
        self.db.commit()
        self.write_json({"recorded": action, "outcome": outcome})


default_handlers = [
    ("/users/me/ssh-keys", SSHKeyListAPIHandler),
    (f"/users/me/ssh-keys/{KEY_ID}", SSHKeyAPIHandler),
    ("/ssh/authorize", SSHAuthorizeAPIHandler),
    ("/ssh/events", SSHEventAPIHandler),
]
