"""Key files made once, on first start: read them, or create them (0600, in a 0700 directory).

Several processes may start at once (animus-api and the object gateway both need the
URL-signing key, say). The new content is written to a temporary file, flushed, and
published with link(), which fails if another process got there first; everyone then
reads the file that won.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def read_or_create(path: Path, make: Callable[[], bytes]) -> bytes:
    """The bytes of `path`; when it is missing, `make()`'s bytes are published there first."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, make())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # another process may have created it first: keep theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()
