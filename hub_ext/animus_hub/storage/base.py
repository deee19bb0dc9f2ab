"""The object-store interface shared by the local directory store and S3.

The control plane only authorises, signs and checks presence: clients move bytes
themselves with presigned URLs (or a direct path on the same machine), so the
methods that touch payloads here are for small control-plane objects only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import re
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from traitlets import Integer, MetaHasTraits
from traitlets.config import LoggingConfigurable

from ..errors import AnimusError

T = TypeVar("T")

MAX_KEY_BYTES = 1024
#: the longest a presigned URL may live: SigV4's own limit (7 days)
MAX_EXPIRES_IN = 7 * 24 * 3600
#: S3's limit for one list page
MAX_LIST_LIMIT = 1000
SHA256_HEADER = "x-amz-checksum-sha256"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def invalid_key(key: object, why: str) -> AnimusError:
    return AnimusError(400, "invalid_object_key", f"Invalid object key {key!r}: {why}", {"key": str(key)[:200]})


def validate_key(key: str) -> str:
    """Return `key` if it is a safe object key, else raise a 400 AnimusError.

    Keys are relative, '/'-separated UTF-8 paths of at most 1024 bytes with no
    empty, '.' or '..' segments and no control characters (NUL included), so a
    key names the same object on S3 and as a file under the local store's root.
    """
    if not isinstance(key, str) or not key:
        raise invalid_key(key, "it must be a non-empty string")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid_key(key, "it is not valid UTF-8") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise invalid_key(key, f"it is longer than {MAX_KEY_BYTES} bytes")
    if _CONTROL.search(key):
        raise invalid_key(key, "it contains a control character")
    if key.startswith("/"):
        raise invalid_key(key, "it must not start with '/'")
    if "\\" in key:
        raise invalid_key(key, "it must not contain '\\'")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise invalid_key(key, "empty, '.' and '..' path segments are not allowed")
    return key


def validate_prefix(prefix: str) -> str:
    """A list prefix: empty, or a key prefix (its last segment may be partial or empty)."""
    if prefix == "":
        return prefix
    head, _, last = prefix.rpartition("/")
    validate_key((head + "/" if head else "") + (last or "x"))
    return prefix


def normalise_sha256(value: str) -> str:
    """A sha256 digest as 64 lowercase hex characters (400 otherwise)."""
    digest = value.lower() if isinstance(value, str) else ""
    if not _SHA256_HEX.fullmatch(digest):
        raise AnimusError(
            400, "invalid_sha256", "sha256 must be 64 hexadecimal characters", {"sha256": str(value)[:80]}
        )
    return digest


def sha256_to_base64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def sha256_from_base64(value: str) -> str | None:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


def check_expires_in(expires_in: int) -> int:
    if not isinstance(expires_in, int) or isinstance(expires_in, bool) or not 1 <= expires_in <= MAX_EXPIRES_IN:
        raise AnimusError(
            400,
            "invalid_expiry",
            f"expires_in must be between 1 and {MAX_EXPIRES_IN} seconds",
            {"expires_in": expires_in},
        )
    return expires_in


def check_content_length(content_length: int | None) -> int | None:
    if content_length is not None and (
        not isinstance(content_length, int) or isinstance(content_length, bool) or content_length < 0
    ):
        raise AnimusError(400, "invalid_content_length", "content_length must be a non-negative integer")
    return content_length


def check_filename(filename: str | None) -> str | None:
    if filename is None:
        return None
    if not filename or len(filename) > 255 or _CONTROL.search(filename) or "/" in filename or "\\" in filename:
        raise AnimusError(
            400, "invalid_filename", "filename must be 1-255 characters without '/', '\\' or control characters"
        )
    return filename


def content_disposition(filename: str) -> str:
    """An attachment header any browser reads (RFC 6266: an ASCII fallback plus UTF-8)."""
    fallback = "".join(c if c.isascii() and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    last_modified: datetime | None = None
    #: hex digest, when the store knows it without reading the object
    sha256: str | None = None


class _ABCTraitsMeta(MetaHasTraits, ABCMeta):
    """Lets a traitlets class have abstract methods (instantiating the base fails)."""


class ObjectStore(LoggingConfigurable, metaclass=_ABCTraitsMeta):
    """Where datasets' blobs and runs' artifacts live; a `Type` trait of the app (`storage_class`).

    Blocking work (boto3, file I/O) runs in this store's thread pool, never on
    the event loop. Every method validates its keys with `validate_key()`.
    """

    io_threads = Integer(8, help="Threads for blocking storage calls (boto3, file I/O).").tag(config=True)

    #: True if `presign_batch` works: many small objects uploaded in one request
    supports_batch_upload = False

    _executor: ThreadPoolExecutor | None = None

    async def run_in_thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.io_threads, thread_name_prefix=type(self).__name__)
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def setup(self) -> None:  # noqa: B027 (optional hook)
        """Check the configuration and prepare the store; called once at start-up."""

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # --- presigned URLs (no I/O) ---------------------------------------------------

    @abstractmethod
    def presign_get(self, key: str, expires_in: int, filename: str | None = None) -> str:
        """A URL a client can GET (Range allowed) for `expires_in` seconds.

        With `filename`, the response asks browsers to save it under that name.
        """

    @abstractmethod
    def presign_put(
        self,
        key: str,
        expires_in: int,
        content_length: int | None = None,
        sha256: str | None = None,
        local: bool = False,
    ) -> str:
        """A URL a client can PUT the object's bytes to for `expires_in` seconds.

        With `content_length`, a body of another length is refused. With `sha256`
        (hex), the client must send `upload_headers(sha256)` and the store refuses a
        body with another digest, storing nothing: content-addressed uploads rely on it.
        `local=True` asks for a URL that a client on this machine reaches most
        directly, where the store has one (the local store's gateway port).
        """

    def presign_batch(
        self, objects: Sequence[tuple[str, int, str]], expires_in: int, local: bool = False
    ) -> dict[str, Any]:
        """One request that uploads several (key, size, sha256) objects; see `supports_batch_upload`.

        Returns ``{url, method, content_length, body_prefix}``: the body is
        `body_prefix` followed by the objects' bytes in order.
        """
        raise AnimusError(400, "batch_upload_unsupported", "This object store takes one upload per object")

    @staticmethod
    def upload_headers(sha256: str | None = None) -> dict[str, str]:
        """Headers a client sends with a presigned PUT that was signed with `sha256`."""
        if sha256 is None:
            return {}
        return {SHA256_HEADER: sha256_to_base64(normalise_sha256(sha256))}

    # --- metadata and control-plane objects ----------------------------------------

    @abstractmethod
    async def head(self, key: str) -> ObjectInfo | None:
        """The object's metadata, or None if there is no such object."""

    async def exists(self, key: str) -> bool:
        return await self.head(key) is not None

    async def head_many(self, keys: Sequence[str], concurrency: int = 32) -> list[ObjectInfo | None]:
        """`head` of each key, in order, with at most `concurrency` requests at a time."""
        gate = asyncio.Semaphore(concurrency)

        async def one(key: str) -> ObjectInfo | None:
            async with gate:
                return await self.head(key)

        return list(await asyncio.gather(*(one(k) for k in keys)))

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Delete the object; deleting a missing object is not an error (as in S3)."""

    @abstractmethod
    async def list(self, prefix: str = "", limit: int = MAX_LIST_LIMIT, start_after: str = "") -> list[ObjectInfo]:
        """Up to `limit` objects whose keys start with `prefix` and come after `start_after`.

        Keys come in the store's listing order, which is stable: the next page starts
        after the last key of this one. AWS S3 and the local store use UTF-8 byte
        order; SeaweedFS lists depth-first ("a/1" before "a-b"), so callers must not
        assume byte order.
        """

    @abstractmethod
    async def copy(self, src_key: str, dst_key: str) -> None:
        """Copy inside the store, without moving the bytes through this process."""

    @abstractmethod
    async def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        """Store a small control-plane object (a manifest, an export), atomically."""

    @abstractmethod
    async def get_bytes(self, key: str, max_bytes: int) -> bytes:
        """Read a small control-plane object; 404 if missing, 413 if larger than `max_bytes`."""

    @abstractmethod
    async def verify_sha256(self, key: str, expected: str) -> bool:
        """True if the object exists and its content has this sha256 (hex)."""

    @abstractmethod
    async def sha256(self, key: str) -> str | None:
        """The object's sha256 (hex), or None if there is no such object.

        The store's own checksum when it has one; otherwise the object is read (in
        this store's threads) and hashed: used once per file, to give path-addressed
        files (MLflow's) a content address.
        """

    def local_path(self, key: str) -> Path | None:
        """A path clients on this machine can read directly, if the store has one."""
        validate_key(key)
        return None

    @staticmethod
    def _check_list_args(prefix: str, limit: int, start_after: str) -> None:
        validate_prefix(prefix)
        if start_after:
            validate_prefix(start_after)
        if not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
            raise AnimusError(400, "invalid_limit", f"limit must be between 1 and {MAX_LIST_LIMIT}", {"limit": limit})


def object_too_large(key: str, size: int, max_bytes: int) -> AnimusError:
    return AnimusError(
        413,
        "object_too_large",
        f"Object {key!r} is {size} bytes, more than {max_bytes}",
        {"size": size, "limit": max_bytes},
    )
