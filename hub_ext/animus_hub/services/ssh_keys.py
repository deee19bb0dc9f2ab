"""People's public SSH keys, and the SSH gateway's login decision.

Accepted key types: Ed25519, ECDSA (NIST P-256/384/521) and RSA of at least
``RSA_MIN_BITS`` bits; anything else, or text that is not one OpenSSH public key
line, is refused with 422. Keys are identified by their SHA-256 fingerprint
(``SHA256:…``, as ``ssh-keygen -l`` prints it), unique across people.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncssh
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import AnimusError
from ..orm import SSHKey, utcnow

RSA_MIN_BITS = 3072
#: algorithm names as they appear in an OpenSSH public key line → the family shown to people
ALLOWED_TYPES = {
    "ssh-ed25519": "ed25519",
    "ecdsa-sha2-nistp256": "ecdsa",
    "ecdsa-sha2-nistp384": "ecdsa",
    "ecdsa-sha2-nistp521": "ecdsa",
    "ssh-rsa": "rsa",
}
MAX_KEYS_PER_USER = 50
MAX_KEY_TEXT = 16 * 1024


@dataclass(frozen=True)
class ParsedKey:
    algorithm: str
    family: str
    bits: int
    fingerprint: str
    public_key: str  # "<algorithm> <base64>", without the comment
    comment: str


def _bad_key(message: str, **details: Any) -> AnimusError:
    return AnimusError(422, "invalid_ssh_key", message, details)


def key_bits(key: asyncssh.SSHKey) -> int:
    """The size of a key in bits (the modulus for RSA, the curve for ECDSA, 256 for Ed25519)."""
    pyca = getattr(getattr(key, "pyca_key", None), "key_size", None)
    if isinstance(pyca, int):
        return pyca
    algorithm = key.get_algorithm()
    if algorithm == "ssh-ed25519":
        return 256
    if algorithm.startswith("ecdsa-sha2-nistp"):
        return int(algorithm.removeprefix("ecdsa-sha2-nistp"))
    return 0


def parse_public_key(text: str) -> ParsedKey:
    """One OpenSSH public key line ("ssh-ed25519 AAAA… comment"), checked; 422 otherwise."""
    text = (text or "").strip()
    if not text:
        raise _bad_key("The public key is empty: paste one line of a .pub file, e.g. ~/.ssh/id_ed25519.pub")
    if len(text) > MAX_KEY_TEXT or "\n" in text or "\r" in text:
        raise _bad_key("Give exactly one public key line (a .pub file has one)")
    if "PRIVATE KEY" in text:
        # never echo any of it back
        raise _bad_key(
            "This is a private key: give the public key (the .pub file) and keep the private key to yourself"
        )
    parts = text.split(None, 2)
    algorithm = parts[0]
    if algorithm not in ALLOWED_TYPES:
        raise _bad_key(
            f"SSH key type {algorithm[:40]!r} is not accepted; use ed25519, ecdsa or rsa (at least {RSA_MIN_BITS} bits)",
            type=algorithm[:40],
            allowed=sorted(set(ALLOWED_TYPES.values())),
        )
    try:
        key = asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError, TypeError) as e:
        raise _bad_key(f"Not a valid OpenSSH public key: {str(e)[:200]}") from None
    if key.get_algorithm() != algorithm:
        raise _bad_key("The key's type does not match its data", type=algorithm)
    bits = key_bits(key)
    family = ALLOWED_TYPES[algorithm]
    if family == "rsa" and bits < RSA_MIN_BITS:
        raise _bad_key(
            f"RSA keys need at least {RSA_MIN_BITS} bits; this one has {bits}. Make a new key with "
            "`ssh-keygen -t ed25519`",
            type="rsa",
            bits=bits,
            min_bits=RSA_MIN_BITS,
        )
    comment = parts[2].strip() if len(parts) > 2 else ""
    return ParsedKey(
        algorithm=algorithm,
        family=family,
        bits=bits,
        fingerprint=key.get_fingerprint("sha256"),
        public_key=key.export_public_key("openssh").decode().split()[0] + " " + parts[1],
        comment=comment[:255],
    )


def key_json(k: SSHKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "type": k.key_type,
        "bits": k.bits,
        "fingerprint": k.fingerprint,
        "comment": k.comment,
        "public_key": k.public_key,
        "created_at": k.created_at.isoformat(),
        "last_used_at": k.last_used_at.isoformat() if k.last_used_at else None,
    }


def list_keys(session: Session, user: str) -> list[SSHKey]:
    return list(session.scalars(select(SSHKey).where(SSHKey.user_name == user).order_by(SSHKey.id)))


def add_key(session: Session, user: str, text: str, comment: str | None = None) -> SSHKey:
    parsed = parse_public_key(text)
    existing = session.scalar(select(SSHKey).where(SSHKey.fingerprint == parsed.fingerprint))
    if existing is not None:
        # the same answer whoever holds it: which person registered a key does not leak
        raise AnimusError(409, "ssh_key_exists", "This key is already registered", {"fingerprint": parsed.fingerprint})
    if len(list_keys(session, user)) >= MAX_KEYS_PER_USER:
        raise AnimusError(
            422, "too_many_ssh_keys", f"At most {MAX_KEYS_PER_USER} SSH keys per person; delete one first"
        )
    key = SSHKey(
        user_name=user,
        key_type=parsed.family if parsed.family != "ecdsa" else parsed.algorithm.removeprefix("ecdsa-sha2-"),
        bits=parsed.bits,
        fingerprint=parsed.fingerprint,
        public_key=parsed.public_key,
        comment=(comment if comment is not None else parsed.comment)[:255],
        created_at=utcnow(),
    )
    session.add(key)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise AnimusError(409, "ssh_key_exists", "This key is already registered") from None
    return key


def find_key(session: Session, user: str, key_id: str) -> SSHKey:
    key = None
    if key_id.isdigit():
        key = session.scalar(select(SSHKey).where(SSHKey.user_name == user, SSHKey.id == int(key_id)))
    elif key_id.startswith("SHA256:"):
        key = session.scalar(select(SSHKey).where(SSHKey.user_name == user, SSHKey.fingerprint == key_id))
    if key is None:
        raise AnimusError(404, "ssh_key_not_found", f"You have no SSH key {key_id[:80]!r}")
    return key


def key_of_user(session: Session, user: str, public_key: str) -> SSHKey | None:
    """The registered key of `user` matching an offered public key, or None (also for garbage)."""
    try:
        fingerprint = asyncssh.import_public_key(public_key.strip()).get_fingerprint("sha256")
    except (asyncssh.KeyImportError, ValueError, TypeError):
        return None
    return session.scalar(select(SSHKey).where(SSHKey.user_name == user, SSHKey.fingerprint == fingerprint))


def touch(key: SSHKey, when: dt.datetime | None = None) -> None:
    key.last_used_at = when or utcnow()


def key_of_fingerprint(session: Session, user: str, fingerprint: str) -> SSHKey | None:
    return session.scalar(select(SSHKey).where(SSHKey.user_name == user, SSHKey.fingerprint == fingerprint))
