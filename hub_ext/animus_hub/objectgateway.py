"""animus-objects: the data-plane HTTP server of the local object store.

Clients GET and PUT object bytes here with URLs presigned by animus-api
(`LocalObjectStore`), so payloads never pass through the control plane. The
signature and expiry are checked before anything is read or written; uploads
stream to a temp file (never buffered whole) and are published by an atomic
rename. A signed `sha256` makes the upload fail, storing nothing, unless the body
has that digest. No database: the signing key file is the only shared state.

In the embedded profile this is a hub-managed JupyterHub service; the hub passes
the listen URL and URL prefix as JUPYTERHUB_SERVICE_URL / JUPYTERHUB_SERVICE_PREFIX.
Run it with ``python -m animus_hub.objectgateway --root DIR [--signing-key-file F]``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import re
import signal
import stat
import sys
import time
from http import HTTPStatus
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

from tornado import httputil, iostream, web
from tornado.httpserver import HTTPServer
from traitlets import Bool, Integer, Unicode, default, validate
from traitlets.config import Application

from ._version import __version__
from .errors import AnimusError, not_found
from .logsetup import configure_logging
from .storage.base import SHA256_HEADER, content_disposition, sha256_from_base64, validate_key
from .storage.local import (
    MAX_BATCH_HEADER,
    LocalObjectStore,
    fsync_dir,
    fsync_file,
    parse_batch_header,
    sync_filesystem,
)

READ_CHUNK = 256 * 1024
#: bytes per socket read and per data_received call (tornado's default, 64 KiB, costs a
#: thread hop and a write per 64 KiB of upload)
BODY_CHUNK = 1024 * 1024
#: bodies of anything but an object upload (there should be none) stay small
SMALL_BODY = 64 * 1024
#: uploads left behind by a crash are removed at start-up after this long
STALE_UPLOAD_SECONDS = 24 * 3600
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")

log = logging.getLogger("animus.objects")
# clean-ups scheduled from synchronous callbacks; held so they are not garbage-collected mid-way
_background: set[asyncio.Task] = set()


def _in_background(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


def signature_error(reason: str, message: str) -> AnimusError:
    return AnimusError(403, reason, message)


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """A single `bytes=` range as inclusive (start, end); None means the whole object.

    Raises 416 for a range outside the object. Multi-range requests are answered
    with the whole object, which RFC 9110 allows.
    """
    m = _RANGE.fullmatch(header.strip())
    if not m or m.groups() == ("", ""):
        return None
    first, last = m.groups()
    if first == "":
        length = int(last)
        if length == 0 or size == 0:
            raise AnimusError(416, "range_not_satisfiable", "The requested range is empty", {"size": size})
        return max(0, size - length), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise AnimusError(416, "range_not_satisfiable", "The requested range is outside the object", {"size": size})
    return start, end


class GatewayHandler(web.RequestHandler):
    """JSON errors, never a traceback; no cookies, no caching of answers."""

    @property
    def store(self) -> LocalObjectStore:
        return self.settings["store"]

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Content-Type-Options", "nosniff")

    def write_json(self, body: dict[str, Any]) -> None:
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(body))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # refusals are in the request log already; tornado's own message would print
        # the query string, and a presigned URL's query string is a credential
        if isinstance(value, AnimusError) and value.status < 500:
            return
        if isinstance(value, web.HTTPError) and value.status_code < 500:
            return
        log.error("Unhandled error in %s %s", self.request.method, self.request.path, exc_info=(typ, value, tb))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, AnimusError):
            error = exc
        elif isinstance(exc, web.HTTPError) and exc.status_code < 500:
            phrase = HTTPStatus(exc.status_code).phrase if exc.status_code in HTTPStatus._value2member_map_ else "Error"
            error = AnimusError(exc.status_code, phrase.lower().replace(" ", "_"), exc.log_message or phrase)
        else:
            error = AnimusError(500, "internal_error", "An internal error occurred")
        self.clear_header("Content-Disposition")
        self.clear_header("ETag")
        self.clear_header("Content-Length")
        self.set_status(error.status)
        for name, value in error.headers.items():
            self.set_header(name, value)
        self.write_json(error.to_json())


def verify_presigned(handler: GatewayHandler, key: str, wanted: str) -> dict[str, Any]:
    """The signed fields of a presigned request for `key` and method `wanted`, or a 403."""
    args = {name: handler.get_query_argument(name, None) for name in ("m", "exp", "sig", "len", "sha256", "fn")}
    if not (args["m"] and args["exp"] and args["sig"]):
        raise signature_error("signature_missing", "This URL carries no signature: ask the API for a presigned URL")
    try:
        expires = int(args["exp"])
        length = int(args["len"]) if args["len"] is not None else None
    except ValueError:
        raise signature_error("signature_invalid", "The URL's signature does not match") from None
    signed = {
        "method": args["m"],
        "key": key,
        "expires": expires,
        "content_length": length,
        "sha256": args["sha256"],
        "filename": args["fn"],
    }
    if not handler.store.signer.verify(args["sig"], **signed):
        raise signature_error("signature_invalid", "The URL's signature does not match")
    if signed["method"] != wanted:
        raise signature_error("signature_invalid", f"This URL was signed for {signed['method']}, not {wanted}")
    if expires < time.time():
        raise signature_error("url_expired", "This URL has expired: ask the API for a new one")
    return signed


def check_declared_length(handler: GatewayHandler, signed_length: int | None, limit: int) -> None:
    """Refuse, before reading the body, a Content-Length other than the signed one or above `limit`."""
    declared = handler.request.headers.get("Content-Length")
    if signed_length is not None and (declared is None or declared.strip() != str(signed_length)):
        raise AnimusError(
            403,
            "content_length_mismatch",
            f"This URL was signed for a body of {signed_length} bytes",
            {"expected": signed_length, "actual": declared},
        )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise AnimusError(413, "object_too_large", f"Uploads are limited to {limit} bytes", {"limit": limit})


class HealthHandler(GatewayHandler):
    def get(self) -> None:
        self.write_json({"status": "ok", "version": __version__})


class NotFoundHandler(GatewayHandler):
    def prepare(self) -> None:
        raise AnimusError(404, "not_found", "No such route")


@web.stream_request_body
class ObjectHandler(GatewayHandler):
    """GET/HEAD/PUT /o/<key> with a presigned query string."""

    SUPPORTED_METHODS = ("GET", "HEAD", "PUT")

    key = ""
    _file: IO[bytes] | None = None
    _tmp: Path | None = None
    _lock: asyncio.Lock | None = None

    # --- before anything is read or written -----------------------------------------

    async def prepare(self) -> None:
        self.key = self.path_args[0] if self.path_args else ""
        self.signed = self.check_signature()
        validate_key(self.key)
        if self.request.method == "PUT":
            await self.begin_upload()

    def check_signature(self) -> dict[str, Any]:
        wanted = "GET" if self.request.method in ("GET", "HEAD") else "PUT"
        return verify_presigned(self, self.key, wanted)

    async def begin_upload(self) -> None:
        limit = self.settings["max_upload_size"]
        check_declared_length(self, self.signed["content_length"], limit)
        self.expected_sha256 = self.signed["sha256"]
        header = self.request.headers.get(SHA256_HEADER)
        if header is not None:
            from_header = sha256_from_base64(header)
            if from_header is None:
                raise AnimusError(400, "invalid_sha256", f"{SHA256_HEADER} must be a base64 sha256 digest")
            if self.expected_sha256 is not None and from_header != self.expected_sha256:
                raise AnimusError(400, "sha256_mismatch", f"{SHA256_HEADER} differs from the signed sha256")
            self.expected_sha256 = from_header
        self.request.connection.set_max_body_size(limit)
        self._lock = asyncio.Lock()
        self._hash = hashlib.sha256()
        self._size = 0
        self._tmp, self._file = await self.store.run_in_thread(self.store.open_temp)

    # --- the upload -------------------------------------------------------------------

    async def data_received(self, chunk: bytes) -> None:
        # awaiting the write before taking more data is the back-pressure: memory stays
        # at a chunk or two whatever the body's size
        if self._lock is None:
            return
        async with self._lock:
            if self._file is None:
                return
            self._size += len(chunk)
            await self.store.run_in_thread(self._write, self._file, chunk)

    def _write(self, f: IO[bytes], chunk: bytes) -> None:
        f.write(chunk)
        self._hash.update(chunk)

    @staticmethod
    def _close_synced(f: IO[bytes]) -> None:
        with f:
            f.flush()
            os.fsync(f.fileno())

    async def put(self, _key: str) -> None:
        assert self._lock is not None and self._tmp is not None  # noqa: S101 (begin_upload ran)
        async with self._lock:
            f, self._file = self._file, None
            if f is not None:
                await self.store.run_in_thread(self._close_synced, f)
        digest = self._hash.hexdigest()
        signed_length = self.signed["content_length"]
        if signed_length is not None and self._size != signed_length:
            await self.discard()
            raise AnimusError(
                400,
                "content_length_mismatch",
                f"The body has {self._size} bytes, not the signed {signed_length}",
                {"expected": signed_length, "actual": self._size},
            )
        if self.expected_sha256 is not None and not hmac.compare_digest(digest, self.expected_sha256):
            await self.discard()
            raise AnimusError(
                400,
                "sha256_mismatch",
                "The uploaded content does not have the expected sha256; nothing was stored",
                {"expected": self.expected_sha256, "actual": digest},
            )
        tmp, self._tmp = self._tmp, None
        await self.store.run_in_thread(self.store.publish, tmp, self.key)
        info = await self.store.head(self.key)
        etag = info.etag if info else ""
        self.set_header("ETag", etag)
        self.write_json({"key": self.key, "size": self._size, "sha256": digest, "etag": etag})

    async def discard(self) -> None:
        """Drop an unfinished upload (once any write in flight is done)."""
        if self._lock is None:
            return
        async with self._lock:
            f, self._file = self._file, None
            tmp, self._tmp = self._tmp, None
            if f is not None or tmp is not None:
                await self.store.run_in_thread(_remove, f, tmp)

    def on_connection_close(self) -> None:
        super().on_connection_close()
        _in_background(self.discard())

    def on_finish(self) -> None:
        if self._file is not None or self._tmp is not None:
            _in_background(self.discard())

    # --- downloads ---------------------------------------------------------------------

    async def get(self, _key: str) -> None:
        await self.send_object(include_body=True)

    async def head(self, _key: str) -> None:
        await self.send_object(include_body=False)

    async def send_object(self, include_body: bool) -> None:
        try:
            f, st = await self.store.run_in_thread(_open_regular, self.store.object_path(self.key))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise not_found("object", self.key) from None
        try:
            size = st.st_size
            info = self.store.object_info(self.key, st)
            self.set_header("Accept-Ranges", "bytes")
            self.set_header("ETag", info.etag)
            self.set_header("Last-Modified", httputil.format_timestamp(st.st_mtime))
            if self.signed["filename"]:
                self.set_header("Content-Disposition", content_disposition(self.signed["filename"]))
            header = self.request.headers.get("Range")
            try:
                span = parse_range(header, size) if header else None
            except AnimusError as e:
                e.headers["Content-Range"] = f"bytes */{size}"
                raise
            start, end = span if span else (0, size - 1)
            if span:
                self.set_status(206)
                self.set_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.set_header("Content-Type", "application/octet-stream")
            self.set_header("Content-Length", str(end - start + 1))
            if not include_body or size == 0:
                return
            if start:
                await self.store.run_in_thread(f.seek, start)
            remaining = end - start + 1
            while remaining > 0:
                chunk = await self.store.run_in_thread(f.read, min(READ_CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                self.write(chunk)
                try:
                    await self.flush()  # back-pressure: wait for the client before reading on
                except iostream.StreamClosedError:
                    return
        finally:
            await self.store.run_in_thread(f.close)


class BatchWriter:
    """Splits a batch upload's body into its objects: temp files, each hashed as it is written.

    Blocking: `feed` runs in the store's threads, one call at a time (the handler's
    lock). Objects whose bytes do not have their listed sha256 are dropped at once;
    the good ones wait, complete, in temp files until `publish`.
    """

    def __init__(self, store: LocalObjectStore, length: int, header_sha256: str) -> None:
        self.store = store
        self.length = length
        self.header_sha256 = header_sha256
        self.received = 0
        self.error: AnimusError | None = None
        self._header = bytearray()
        self.objects: list[tuple[str, int, str]] | None = None
        self._next = 0
        self._current: tuple[str, int, str] | None = None
        self._remaining = 0
        self._tmp: Path | None = None
        self._file: IO[bytes] | None = None
        self._hash: Any = None
        #: (temp file, key, size, sha256) of the objects whose bytes matched
        self.good: list[tuple[Path, str, int, str]] = []
        self.rejected: list[dict[str, Any]] = []

    @property
    def complete(self) -> bool:
        return self.objects is not None and self._current is None and self._next == len(self.objects)

    def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.error is not None:
            return  # the rest of the body is read and dropped: the answer is already decided
        try:
            self._feed(memoryview(chunk))
        except AnimusError as e:
            self.error = e
            self.abort()
        except OSError:
            log.exception("Batch upload failed writing to the store")
            self.error = AnimusError(500, "storage_error", "The object store could not write the upload")
            self.abort()

    def _feed(self, view: memoryview) -> None:
        pos = 0
        if self.objects is None:
            end = bytes(view[: MAX_BATCH_HEADER + 1]).find(b"\n")
            if end < 0:
                self._header += view
                if len(self._header) > MAX_BATCH_HEADER:
                    raise AnimusError(400, "invalid_batch", "The batch header is longer than the gateway reads")
                return
            self._header += view[: end + 1]
            pos = end + 1
            self._begin(bytes(self._header))
        while pos < len(view):
            if self._current is None:
                raise AnimusError(400, "invalid_batch", "The body is longer than its objects")
            take = min(self._remaining, len(view) - pos)
            piece = view[pos : pos + take]
            assert self._file is not None  # noqa: S101 (opened with the object)
            self._file.write(piece)
            self._hash.update(piece)
            pos += take
            self._remaining -= take
            if self._remaining == 0:
                self._end_object()
                self._start_next()

    def _begin(self, header: bytes) -> None:
        if not hmac.compare_digest(hashlib.sha256(header).hexdigest(), self.header_sha256 or ""):
            raise signature_error("signature_invalid", "The batch's object list is not the one the URL was signed for")
        self.objects = parse_batch_header(header.rstrip(b"\n"))
        total = len(header) + sum(size for _, size, _ in self.objects)
        if total != self.length:
            raise AnimusError(400, "invalid_batch", "The batch's objects do not add up to the signed length")
        self._start_next()

    def _start_next(self) -> None:
        assert self.objects is not None  # noqa: S101
        while self._next < len(self.objects):
            self._current = self.objects[self._next]
            self._next += 1
            self._remaining = self._current[1]
            self._tmp, self._file = self.store.open_temp()
            self._hash = hashlib.sha256()
            if self._remaining > 0:
                return
            self._end_object()  # an empty object is complete at once
        self._current = None

    def _end_object(self) -> None:
        assert self._current is not None and self._file is not None and self._tmp is not None  # noqa: S101
        key, size, expected = self._current
        self._file.close()
        digest = self._hash.hexdigest()
        if hmac.compare_digest(digest, expected):
            self.good.append((self._tmp, key, size, digest))
        else:
            self._tmp.unlink(missing_ok=True)
            self.rejected.append({"key": key, "reason": "sha256_mismatch", "expected": expected, "actual": digest})
        self._current, self._file, self._tmp = None, None, None

    def abort(self) -> None:
        """Remove every temp file (the object being written and the complete ones not published)."""
        _remove(self._file, self._tmp)
        self._current, self._file, self._tmp = None, None, None
        for tmp, *_ in self.good:
            tmp.unlink(missing_ok=True)
        self.good = []

    async def publish(self) -> list[dict[str, Any]]:
        """Make the good objects durable and visible; returns what was stored.

        A published object must be complete after a crash, and fsync per object
        (file, then its directory) costs a disk flush each: thousands per batch.
        So, per batch: the temp files are made durable before any is renamed, then
        the renames, then the renames are made durable, then the answer. On Linux
        each step is one syncfs(2) of the store's filesystem; elsewhere every temp
        file is fsynced (in parallel, so the filesystem can group the flushes) and
        each directory the renames touched once. A crash before the second step can
        only lose a rename (the object is missing and is asked for again); it can
        never leave a visible object with missing bytes.
        """
        store = self.store
        if self.good and await store.run_in_thread(sync_filesystem, store.tmp_dir):
            stored, _dirs = await store.run_in_thread(self._rename_all)
            await store.run_in_thread(sync_filesystem, store.objects_dir)
            return stored
        await asyncio.gather(*(store.run_in_thread(fsync_file, tmp) for tmp, *_ in self.good))
        stored, dirs = await store.run_in_thread(self._rename_all)
        await asyncio.gather(*(store.run_in_thread(fsync_dir, d) for d in dirs))
        return stored

    def _rename_all(self) -> tuple[list[dict[str, Any]], set[Path]]:
        stored: list[dict[str, Any]] = []
        dirs: set[Path] = set()
        for tmp, key, size, digest in self.good:
            try:
                dst = self.store.publish(tmp, key, sync_dir=False)
            except AnimusError as e:
                self.rejected.append({"key": key, "reason": e.reason, "expected": digest})
                continue
            dirs.add(dst.parent)
            stored.append({"key": key, "size": size, "sha256": digest})
        self.good = []
        return stored, dirs


@web.stream_request_body
class BatchUploadHandler(GatewayHandler):
    """POST /batch with a presigned query string: many small objects in one request.

    The body is the signed object list (`storage.local.batch_header`: one JSON line
    of [key, size, sha256]) followed by the objects' bytes back to back. Each object
    is stored only if its bytes have its sha256; the answer lists what was stored
    and, as a 400 `sha256_mismatch`, what was not. A body cut short stores nothing.
    """

    SUPPORTED_METHODS = ("POST",)

    _lock: asyncio.Lock | None = None
    _writer: BatchWriter | None = None

    async def prepare(self) -> None:
        signed = verify_presigned(self, "", "BATCH")
        if signed["content_length"] is None or not signed["sha256"]:
            raise signature_error("signature_invalid", "This URL was not signed for a batch upload")
        limit = self.settings["max_upload_size"]
        check_declared_length(self, signed["content_length"], limit)
        self.request.connection.set_max_body_size(limit)
        self._lock = asyncio.Lock()
        self._writer = BatchWriter(self.store, signed["content_length"], signed["sha256"])

    async def data_received(self, chunk: bytes) -> None:
        if self._lock is None:
            return
        async with self._lock:
            if self._writer is not None:
                await self.store.run_in_thread(self._writer.feed, chunk)

    async def post(self) -> None:
        assert self._lock is not None  # noqa: S101 (prepare ran)
        async with self._lock:
            writer, self._writer = self._writer, None
        assert writer is not None  # noqa: S101
        try:
            if writer.error is not None:
                raise writer.error
            if writer.received != writer.length or not writer.complete:
                raise AnimusError(
                    400,
                    "content_length_mismatch",
                    f"The body has {writer.received} bytes, not the signed {writer.length}",
                    {"expected": writer.length, "actual": writer.received},
                )
            stored = await writer.publish()
        except BaseException:
            await self.store.run_in_thread(writer.abort)
            raise
        if writer.rejected:
            raise AnimusError(
                400,
                "sha256_mismatch",
                f"{len(writer.rejected)} of {len(stored) + len(writer.rejected)} objects were not stored: "
                "their bytes do not have the listed sha256 (or their key is taken); the others were stored",
                {"stored": [o["key"] for o in stored], "rejected": writer.rejected},
            )
        self.write_json({"stored": stored, "rejected": []})

    async def discard(self) -> None:
        if self._lock is None:
            return
        async with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            await self.store.run_in_thread(writer.abort)

    def on_connection_close(self) -> None:
        super().on_connection_close()
        _in_background(self.discard())

    def on_finish(self) -> None:
        if self._writer is not None:
            _in_background(self.discard())


def _open_regular(path: Path) -> tuple[IO[bytes], os.stat_result]:
    f = open(path, "rb")  # noqa: SIM115 (closed by the caller)
    st = os.fstat(f.fileno())
    if not stat.S_ISREG(st.st_mode):
        f.close()
        raise IsADirectoryError(str(path))
    return f, st


def _remove(f: IO[bytes] | None, tmp: Path | None) -> None:
    if f is not None:
        f.close()
    if tmp is not None:
        tmp.unlink(missing_ok=True)


class ObjectGateway(Application):
    name = "animus-objects"
    version = __version__
    description = "The object gateway of the local object store: serves presigned GET/PUT of object bytes."

    root = Unicode(help="Directory of the local object store (env ANIMUS_OBJECTS_ROOT).").tag(config=True)

    @default("root")
    def _root_default(self) -> str:
        return os.environ.get("ANIMUS_OBJECTS_ROOT", "")

    signing_key_file = Unicode(
        help="URL-signing key shared with animus-api (env ANIMUS_OBJECTS_SIGNING_KEY_FILE; default <root>/signing_key)."
    ).tag(config=True)

    @default("signing_key_file")
    def _signing_key_file_default(self) -> str:
        return os.environ.get("ANIMUS_OBJECTS_SIGNING_KEY_FILE", "")

    service_url = Unicode(help="URL to listen on; the hub passes it as JUPYTERHUB_SERVICE_URL.").tag(config=True)

    @default("service_url")
    def _service_url_default(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8091")

    base_url = Unicode(help="URL prefix the proxy routes to this service (JUPYTERHUB_SERVICE_PREFIX).").tag(config=True)

    @default("base_url")
    def _base_url_default(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/animus-objects/")

    @validate("base_url")
    def _normalise_base_url(self, proposal: Any) -> str:
        return ("/" + proposal["value"].strip("/") + "/").replace("//", "/")

    max_upload_size = Integer(
        5 * 1024**3, help="Largest accepted object upload, in bytes (S3's single-PUT limit by default)."
    ).tag(config=True)

    log_json = Bool(False, help="Write log lines as JSON objects instead of text.").tag(config=True)

    flags = {"log-json": ({"ObjectGateway": {"log_json": True}}, "Write log lines as JSON objects.")}
    aliases = {
        "root": "ObjectGateway.root",
        "signing-key-file": "ObjectGateway.signing_key_file",
        "max-upload-size": "ObjectGateway.max_upload_size",
        "log-level": "Application.log_level",
    }

    def initialize(self, argv: list[str] | None = None) -> None:
        super().initialize(argv)
        self.init_logging()
        self.init_store()
        self.init_tornado_application()

    def init_logging(self) -> None:
        configure_logging(self.log_level, self.log_json)
        self.log = logging.getLogger("animus.objects")

    def init_store(self) -> None:
        if not self.root:
            raise ValueError("--root (or ANIMUS_OBJECTS_ROOT) is required")
        kwargs = {"root": self.root}
        if self.signing_key_file:
            kwargs["signing_key_file"] = self.signing_key_file
        self.store = LocalObjectStore(parent=self, log=self.log, **kwargs)
        self.store.prepare_dirs()
        self.store.signer  # noqa: B018 (load or create the key now, not on the first request)
        removed = remove_stale_uploads(self.store.tmp_dir, STALE_UPLOAD_SECONDS)
        if removed:
            self.log.info("Removed %d unfinished uploads left by an earlier run", removed)

    def init_tornado_application(self) -> None:
        routes = [
            (self.base_url + "o/(.+)", ObjectHandler),
            (self.base_url + "batch", BatchUploadHandler),
            (self.base_url + "health", HealthHandler),
        ]
        self.tornado_app = web.Application(
            routes,
            store=self.store,
            max_upload_size=self.max_upload_size,
            default_handler_class=NotFoundHandler,
            log_function=self.log_request,
            xsrf_cookies=False,
            serve_traceback=False,
        )

    def log_request(self, handler: web.RequestHandler) -> None:
        status = handler.get_status()
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
        if handler.request.path.endswith("/health") and status == 200:
            level = logging.DEBUG
        self.log.log(
            level,
            "%s %s %s %.1fms",
            status,
            handler.request.method,
            handler.request.path,  # never the query string: it is a bearer credential
            1000.0 * handler.request.request_time(),
        )

    async def serve(self) -> None:
        url = urlparse(self.service_url)
        host, port = url.hostname or "127.0.0.1", url.port or 8091
        server = HTTPServer(self.tornado_app, xheaders=True, max_body_size=SMALL_BODY, chunk_size=BODY_CHUNK)
        server.listen(port, address=host)
        self.log.info(
            "animus-objects %s listening on %s:%s%s (root %s)", __version__, host, port, self.base_url, self.root
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # the hub may start us under nohup (SIGINT ignored): handle both signals ourselves
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        self.log.info("animus-objects stopping")
        server.stop()
        try:
            await asyncio.wait_for(server.close_all_connections(), timeout=5)
        except TimeoutError:
            self.log.warning("Closing connections timed out")
        await self.store.close()

    def start(self) -> None:
        asyncio.run(self.serve())


def remove_stale_uploads(tmp_dir: Path, older_than: float) -> int:
    removed = 0
    cutoff = time.time() - older_than
    for entry in os.scandir(tmp_dir):
        try:
            if entry.name.endswith(".part") and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def main(argv: list[str] | None = None) -> None:
    app = ObjectGateway.instance()
    try:
        app.initialize(argv)
    except (ValueError, AnimusError) as e:
        print(f"animus-objects: configuration error: {e}", file=sys.stderr)
        sys.exit(2)
    app.start()


if __name__ == "__main__":
    main()
