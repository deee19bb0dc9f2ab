"""The embedded profile's object store: files in a directory, served by the object gateway.

Layout under `root`: `objects/<key>` holds the objects, `tmp/` the uploads in
progress (same filesystem, so publishing is an atomic rename). Presigned URLs
point at the object gateway (`animus_hub.objectgateway`), a separate process that
checks the HMAC signature this store makes with the key in `signing_key_file`.
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import json
import os
import secrets
import stat
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlencode

from traitlets import Unicode, default

from ..errors import AnimusError, not_found
from ..keyfiles import read_or_create
from .base import (
    ObjectInfo,
    ObjectStore,
    check_content_length,
    check_expires_in,
    check_filename,
    normalise_sha256,
    object_too_large,
    validate_key,
)

SIGNING_KEY_BYTES = 32
SIGNATURE_VERSION = "animus-object-v1"
READ_CHUNK = 1024 * 1024
#: objects per batch upload, and the longest batch header the gateway reads
MAX_BATCH_OBJECTS = 1000
MAX_BATCH_HEADER = 512 * 1024


def load_signing_key(path: Path) -> bytes:
    """Read the URL-signing key, creating it (0600, random) if missing.

    The API and the gateway may both start at once: the key is written to a temp
    file and published with link(), which fails if the other got there first.
    """
    key = read_or_create(path, lambda: secrets.token_bytes(SIGNING_KEY_BYTES))
    if len(key) < SIGNING_KEY_BYTES:
        raise AnimusError(
            500, "storage_misconfigured", f"The signing key file {path} holds fewer than {SIGNING_KEY_BYTES} bytes"
        )
    return key


class UrlSigner:
    """HMAC-SHA256 signatures of object-gateway URLs.

    What is signed is a JSON array (unambiguous whatever the key contains) of the
    method, key, expiry and the optional length, sha256 and download filename.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    def signature(
        self,
        method: str,
        key: str,
        expires: int,
        content_length: int | None = None,
        sha256: str | None = None,
        filename: str | None = None,
    ) -> str:
        message = [SIGNATURE_VERSION, method, key, expires, content_length, sha256, filename]
        payload = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()

    def query(
        self,
        method: str,
        key: str,
        expires: int,
        content_length: int | None = None,
        sha256: str | None = None,
        filename: str | None = None,
    ) -> dict[str, str]:
        params = {"m": method, "exp": str(expires)}
        if content_length is not None:
            params["len"] = str(content_length)
        if sha256 is not None:
            params["sha256"] = sha256
        if filename is not None:
            params["fn"] = filename
        params["sig"] = self.signature(method, key, expires, content_length, sha256, filename)
        return params

    def verify(self, signature: str, **signed: Any) -> bool:
        return hmac.compare_digest(signature.encode("ascii", "replace"), self.signature(**signed).encode("ascii"))


def batch_header(objects: Sequence[tuple[str, int, str]]) -> bytes:
    """The first line of a batch upload's body: the objects it carries, in order, as JSON."""
    rows = [[key, size, sha256] for key, size, sha256 in objects]
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def parse_batch_header(line: bytes) -> list[tuple[str, int, str]]:
    """The objects of a batch header (`batch_header`); 400 for anything malformed."""

    def bad(message: str) -> AnimusError:
        return AnimusError(400, "invalid_batch", message)

    try:
        rows = json.loads(line)
    except (UnicodeDecodeError, ValueError):
        raise bad("The batch header is not a JSON line") from None
    if not isinstance(rows, list) or not 1 <= len(rows) <= MAX_BATCH_OBJECTS:
        raise bad(f"The batch header must list 1 to {MAX_BATCH_OBJECTS} objects")
    objects: list[tuple[str, int, str]] = []
    seen: set[str] = set()
    for row in rows:
        if not (isinstance(row, list) and len(row) == 3 and isinstance(row[0], str) and isinstance(row[2], str)):
            raise bad("Each object in the batch header is [key, size, sha256]")
        key, size, digest = validate_key(row[0]), check_content_length(row[1]), normalise_sha256(row[2])
        if size is None:
            raise bad("Each object in the batch header needs a size")
        if key in seen:
            raise bad(f"Object key {key!r} is listed twice in the batch")
        seen.add(key)
        objects.append((key, size, digest))
    return objects


class LocalObjectStore(ObjectStore):
    """Objects as files under `root`, presigned URLs served by the object gateway."""

    supports_batch_upload = True

    root = Unicode(help="Directory of the store: objects live in <root>/objects (env ANIMUS_OBJECTS_ROOT).").tag(
        config=True
    )

    @default("root")
    def _root_default(self) -> str:
        return os.environ.get("ANIMUS_OBJECTS_ROOT", "")

    gateway_url = Unicode(
        help="Public URL of the object gateway that clients reach, e.g. "
        "http://127.0.0.1:8000/services/animus-objects (env ANIMUS_OBJECTS_URL).",
    ).tag(config=True)

    @default("gateway_url")
    def _gateway_url_default(self) -> str:
        return os.environ.get("ANIMUS_OBJECTS_URL", "")

    direct_url = Unicode(
        help="The object gateway's own listen URL, without the proxy in between, e.g. "
        "http://127.0.0.1:8092/services/animus-objects: upload URLs for clients on this machine "
        "that ask for them (`local=true`) use it, everything else gets gateway_url. Empty: always "
        "gateway_url (env ANIMUS_OBJECTS_DIRECT_URL).",
    ).tag(config=True)

    @default("direct_url")
    def _direct_url_default(self) -> str:
        return os.environ.get("ANIMUS_OBJECTS_DIRECT_URL", "")

    signing_key_file = Unicode(
        help="File holding the URL-signing key shared with the gateway; created (0600) if missing. "
        "Default <root>/signing_key (env ANIMUS_OBJECTS_SIGNING_KEY_FILE).",
    ).tag(config=True)

    @default("signing_key_file")
    def _signing_key_file_default(self) -> str:
        return os.environ.get("ANIMUS_OBJECTS_SIGNING_KEY_FILE", "") or (
            str(Path(self.root) / "signing_key") if self.root else ""
        )

    _signer: UrlSigner | None = None

    # --- layout ----------------------------------------------------------------------

    @property
    def root_path(self) -> Path:
        if not self.root:
            raise AnimusError(500, "storage_misconfigured", "LocalObjectStore.root is not set")
        return Path(self.root)

    @property
    def objects_dir(self) -> Path:
        return self.root_path / "objects"

    @property
    def tmp_dir(self) -> Path:
        return self.root_path / "tmp"

    def object_path(self, key: str) -> Path:
        return self.objects_dir / validate_key(key)

    @property
    def signer(self) -> UrlSigner:
        if self._signer is None:
            if not self.signing_key_file:
                raise AnimusError(500, "storage_misconfigured", "LocalObjectStore.signing_key_file is not set")
            self._signer = UrlSigner(load_signing_key(Path(self.signing_key_file)))
        return self._signer

    def prepare_dirs(self) -> None:
        for d in (self.root_path, self.objects_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)

    async def setup(self) -> None:
        await self.run_in_thread(self.prepare_dirs)
        await self.run_in_thread(lambda: self.signer)
        if not self.gateway_url:
            self.log.warning("LocalObjectStore.gateway_url is not set: presigned URLs cannot be made")

    # --- presigned URLs ----------------------------------------------------------------

    def _base(self, local: bool = False) -> str:
        # the signature covers the request, not the host it is sent to: the direct and the
        # proxied URL of one upload are equally valid, so `local` changes no access rule
        base = self.direct_url if local and self.direct_url else self.gateway_url
        if not base:
            raise AnimusError(500, "storage_misconfigured", "LocalObjectStore.gateway_url is not set")
        return base.rstrip("/")

    def _url(self, key: str, params: dict[str, str], local: bool = False) -> str:
        return f"{self._base(local)}/o/{quote(key, safe='/')}?{urlencode(params)}"

    def presign_get(self, key: str, expires_in: int, filename: str | None = None) -> str:
        validate_key(key)
        expires = int(time.time()) + check_expires_in(expires_in)
        return self._url(key, self.signer.query("GET", key, expires, filename=check_filename(filename)))

    def presign_put(
        self,
        key: str,
        expires_in: int,
        content_length: int | None = None,
        sha256: str | None = None,
        local: bool = False,
    ) -> str:
        validate_key(key)
        expires = int(time.time()) + check_expires_in(expires_in)
        digest = normalise_sha256(sha256) if sha256 is not None else None
        params = self.signer.query("PUT", key, expires, check_content_length(content_length), digest)
        return self._url(key, params, local)

    def presign_batch(
        self, objects: Sequence[tuple[str, int, str]], expires_in: int, local: bool = False
    ) -> dict[str, Any]:
        """One POST that uploads several objects: the body is `body_prefix` then their bytes, concatenated.

        What is signed is the body's length and the sha256 of its first line, which
        lists every object's key, size and sha256 in order: the gateway splits the
        rest by the sizes and stores only the objects whose bytes have their digest.
        """
        if not 1 <= len(objects) <= MAX_BATCH_OBJECTS:
            raise AnimusError(400, "invalid_batch", f"A batch holds 1 to {MAX_BATCH_OBJECTS} objects")
        head = batch_header(objects)
        parse_batch_header(head)  # the same checks the gateway makes
        if len(head) > MAX_BATCH_HEADER:
            raise AnimusError(400, "invalid_batch", "The batch's object list is too long: use fewer objects")
        length = len(head) + sum(size for _, size, _ in objects)
        expires = int(time.time()) + check_expires_in(expires_in)
        params = self.signer.query("BATCH", "", expires, length, hashlib.sha256(head).hexdigest())
        return {
            "url": f"{self._base(local)}/batch?{urlencode(params)}",
            "method": "POST",
            "content_length": length,
            "body_prefix": head.decode("utf-8"),
        }

    def local_path(self, key: str) -> Path | None:
        return self.object_path(key)

    # --- atomic writes (blocking: call through run_in_thread) ------------------------------------

    def open_temp(self) -> tuple[Path, IO[bytes]]:
        """A new temp file beside the objects (same filesystem, so rename is atomic)."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.tmp_dir / f"{secrets.token_hex(12)}.part"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        return path, os.fdopen(fd, "wb")

    def publish(self, tmp: Path, key: str, sync_dir: bool = True) -> Path:
        """Atomically move a complete, fsynced temp file to `key` (replacing any old object).

        The rename is durable when this returns, unless `sync_dir=False`: then the
        caller fsyncs the parent directory itself (once for many renames).
        """
        dst = self.object_path(key)
        for attempt in range(3):
            try:
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, dst)  # onto a directory: IsADirectoryError
                break
            except FileNotFoundError:
                # a concurrent delete pruned the (empty) parent directory: make it again
                if attempt == 2:
                    raise
            except (NotADirectoryError, FileExistsError, IsADirectoryError):
                tmp.unlink(missing_ok=True)
                raise AnimusError(
                    409,
                    "object_key_conflict",
                    f"Object key {key!r} conflicts with an existing object (one is a prefix directory of the other)",
                    {"key": key},
                ) from None
        if sync_dir:
            _fsync_dir(dst.parent)
        return dst

    def write_atomic(self, key: str, data: bytes) -> Path:
        validate_key(key)
        tmp, f = self.open_temp()
        try:
            with f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            return self.publish(tmp, key)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def object_info(self, key: str, st: os.stat_result) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=st.st_size,
            # size and mtime, as static file servers do: reading the file for an md5 would cost a full read
            etag=f'"{st.st_size:x}-{st.st_mtime_ns:x}"',
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
        )

    def _stat(self, key: str) -> ObjectInfo | None:
        try:
            st = self.object_path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return self.object_info(key, st) if stat.S_ISREG(st.st_mode) else None

    def _delete(self, key: str) -> None:
        path = self.object_path(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        # prune empty parents so that a later key may reuse the name as a file
        parent = path.parent
        while parent != self.objects_dir:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def _copy(self, src_key: str, dst_key: str) -> None:
        src = self.object_path(src_key)
        validate_key(dst_key)
        tmp, out = self.open_temp()
        try:
            try:
                inp = open(src, "rb")  # noqa: SIM115
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise not_found("object", src_key) from None
            with inp, out:
                while chunk := inp.read(READ_CHUNK):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            self.publish(tmp, dst_key)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _read(self, key: str, max_bytes: int) -> bytes:
        path = self.object_path(key)
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                data = f.read(max_bytes + 1) if size <= max_bytes else b""
                if size > max_bytes or len(data) > max_bytes:
                    raise object_too_large(key, max(size, len(data)), max_bytes)
                return data
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise not_found("object", key) from None

    def _sha256(self, key: str) -> str | None:
        h = hashlib.sha256()
        try:
            with open(self.object_path(key), "rb") as f:
                while chunk := f.read(READ_CHUNK):
                    h.update(chunk)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        return h.hexdigest()

    def _walk(self, directory: Path, rel: str, prefix: str, start_after: str) -> Iterator[tuple[str, os.stat_result]]:
        """Keys under `directory` in S3 order: a directory sorts as its name + '/'."""
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        named = []
        for e in entries:
            try:
                is_dir = e.is_dir(follow_symlinks=False)
            except OSError:
                continue
            named.append((rel + e.name + ("/" if is_dir else ""), e, is_dir))
        named.sort(key=lambda t: t[0])
        for name, entry, is_dir in named:
            if is_dir:
                # descend only where keys could match the prefix and sort after start_after
                if not (name.startswith(prefix) or prefix.startswith(name)):
                    continue
                if start_after and not start_after.startswith(name) and name < start_after:
                    continue
                yield from self._walk(Path(entry.path), name, prefix, start_after)
            elif name.startswith(prefix) and name > start_after:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    yield name, st

    def _list(self, prefix: str, limit: int, start_after: str) -> list[ObjectInfo]:
        found = []
        for key, st in self._walk(self.objects_dir, "", prefix, start_after):
            found.append(self.object_info(key, st))
            if len(found) >= limit:
                break
        return found

    # --- the interface ---------------------------------------------------------------------

    async def head(self, key: str) -> ObjectInfo | None:
        validate_key(key)
        return await self.run_in_thread(self._stat, key)

    async def head_many(self, keys: Sequence[str], concurrency: int = 32) -> list[ObjectInfo | None]:
        # a stat is microseconds: one thread call for the lot, not a thread hop per key
        for key in keys:
            validate_key(key)
        return await self.run_in_thread(lambda: [self._stat(k) for k in keys])

    async def delete(self, key: str) -> None:
        validate_key(key)
        await self.run_in_thread(self._delete, key)

    async def list(self, prefix: str = "", limit: int = 1000, start_after: str = "") -> list[ObjectInfo]:
        self._check_list_args(prefix, limit, start_after)
        return await self.run_in_thread(self._list, prefix, limit, start_after)

    async def copy(self, src_key: str, dst_key: str) -> None:
        validate_key(src_key)
        validate_key(dst_key)
        await self.run_in_thread(self._copy, src_key, dst_key)

    async def put_bytes(self, key: str, data: bytes) -> ObjectInfo:
        validate_key(key)
        await self.run_in_thread(self.write_atomic, key, bytes(data))
        info = await self.head(key)
        assert info is not None  # noqa: S101 (we just wrote it)
        return ObjectInfo(info.key, info.size, info.etag, info.last_modified, hashlib.sha256(data).hexdigest())

    async def get_bytes(self, key: str, max_bytes: int) -> bytes:
        validate_key(key)
        return await self.run_in_thread(self._read, key, max_bytes)

    async def verify_sha256(self, key: str, expected: str) -> bool:
        validate_key(key)
        expected = normalise_sha256(expected)
        actual = await self.run_in_thread(self._sha256, key)
        return actual is not None and hmac.compare_digest(actual, expected)

    async def sha256(self, key: str) -> str | None:
        validate_key(key)
        return await self.run_in_thread(self._sha256, key)


def fsync_file(path: Path) -> None:
    """Flush a closed file's data to disk (Linux and macOS flush the inode through any descriptor)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    _fsync_dir(path)


def _load_syncfs() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


_syncfs = _load_syncfs()


def sync_filesystem(path: Path) -> bool:
    """Write back every dirty page and inode of the filesystem holding `path` and wait for it
    (Linux syncfs(2), which reports write-back errors since Linux 5.8).

    One call makes a whole batch of new files durable, where an fsync per file costs a disk
    flush each. Returns False where syncfs is not available: the caller fsyncs file by file.
    """
    if _syncfs is None:
        return False
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs({path}): {os.strerror(err)}")
    finally:
        os.close(fd)
    return True


def _fsync_dir(path: Path) -> None:
    """Make a rename durable (the directory entry is what changed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
