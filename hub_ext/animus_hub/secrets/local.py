"""LocalSecretStore: the embedded profile's encrypted file store.

One file per secret, ``<root>/projects/<slug>/<name>.v1``, holding
``nonce ‖ AES-256-GCM(value)`` with the secret's path as associated data (a file
copied under another name does not decrypt). The 32-byte key lives in its own
file (``<data>/secrets/secret_store_key``, 0600, created on first use). Files are
written to a temporary name, fsynced and renamed: a crash leaves the old value or
the new one, never half of either.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from traitlets import Unicode, default

from ..keyfiles import read_or_create
from .base import SecretNotFound, SecretStore, SecretStoreUnavailable, validate_secret_name

KEY_BYTES = 32
SUFFIX = ".v1"


def load_or_create_key(path: Path) -> bytes:
    key = read_or_create(path, lambda: secrets.token_bytes(KEY_BYTES))
    if len(key) != KEY_BYTES:
        raise SecretStoreUnavailable(f"the secret store key file {path} does not hold {KEY_BYTES} bytes")
    return key


class LocalSecretStore(SecretStore):
    kind = "local"
    serves_values = True

    root = Unicode(
        help="Directory of the encrypted secret files (env ANIMUS_SECRET_STORE_DIR; default ./secret-store)."
    ).tag(config=True)

    @default("root")
    def _root_default(self) -> str:
        return os.environ.get("ANIMUS_SECRET_STORE_DIR") or os.path.abspath("secret-store")

    key_file = Unicode(
        help="File with the store's 32-byte AES key, created 0600 if missing "
        "(env ANIMUS_SECRET_STORE_KEY_FILE; default ./secrets/secret_store_key). Back it up with the store: "
        "without it the values cannot be read."
    ).tag(config=True)

    @default("key_file")
    def _key_file_default(self) -> str:
        return os.environ.get("ANIMUS_SECRET_STORE_KEY_FILE") or os.path.abspath(
            os.path.join("secrets", "secret_store_key")
        )

    _aead: AESGCM | None = None

    @property
    def aead(self) -> AESGCM:
        if self._aead is None:
            self._aead = AESGCM(load_or_create_key(Path(self.key_file)))
        return self._aead

    def _file(self, project: str, name: str) -> Path:
        validate_secret_name(name)
        return Path(self.root) / "projects" / project / (name + SUFFIX)

    def put(self, project: str, name: str, value: str) -> None:
        target = self._file(project, name)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        nonce = os.urandom(12)
        blob = nonce + self.aead.encrypt(nonce, value.encode("utf-8"), self.path(project, name).encode())
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, blob)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def delete(self, project: str, name: str) -> None:
        try:
            self._file(project, name).unlink()
        except FileNotFoundError:
            pass

    def read(self, project: str, name: str) -> str:
        try:
            blob = self._file(project, name).read_bytes()
        except FileNotFoundError:
            raise SecretNotFound(name) from None
        try:
            return self.aead.decrypt(blob[:12], blob[12:], self.path(project, name).encode()).decode("utf-8")
        except InvalidTag:
            raise SecretStoreUnavailable(f"secret {name!r} does not decrypt with the configured key") from None
