"""The embedded profile's user directory: users, groups and hashed passwords in one file.

``users.json`` lives in the data directory with mode 0600::

    {"users": {"alice": {"password": "scrypt$...", "groups": ["ml-fraud-admins"], "admin": false}}}

Passwords are hashed with scrypt (hashlib) and a per-user random salt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from pathlib import Path
from typing import Any

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(key).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def generate_password() -> str:
    return secrets.token_urlsafe(12)


class UserFile:
    """Reads and atomically rewrites ``users.json``."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def load(self) -> dict[str, dict[str, Any]]:
        if not self.path.exists():
            return {}
        data = json.loads(self.path.read_text())
        return data.get("users", {})

    def save(self, users: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".users-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"users": users}, f, indent=2, sort_keys=True)
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def set_user(
        self,
        name: str,
        *,
        password: str | None = None,
        groups: list[str] | None = None,
        admin: bool | None = None,
    ) -> None:
        if not USERNAME_RE.match(name):
            raise ValueError(f"invalid user name {name!r}: use a-z, 0-9, '.', '_' and '-' (max 63)")
        users = self.load()
        entry = users.setdefault(name, {"groups": [], "admin": False})
        if password is not None:
            entry["password"] = hash_password(password)
        if groups is not None:
            entry["groups"] = sorted(set(groups))
        if admin is not None:
            entry["admin"] = admin
        self.save(users)

    def remove_user(self, name: str) -> bool:
        users = self.load()
        if users.pop(name, None) is None:
            return False
        self.save(users)
        return True

    def check(self, name: str, password: str) -> dict[str, Any] | None:
        entry = self.load().get(name)
        if entry is None or "password" not in entry:
            # spend the same time as a real check, so timing does not reveal names
            verify_password(password, hash_password("x"))
            return None
        if not verify_password(password, entry["password"]):
            return None
        return entry
