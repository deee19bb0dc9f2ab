"""Datasets from Python: push a folder as a new immutable version, get a version back.

    import animus.datasets as ds

    v = ds.push("churn", "data/churn/", message="January extract")   # → version 3
    v = ds.get("churn", version=3)          # or version=None for the latest
    v.files()                               # the manifest
    with v.open("train.csv") as f: ...
    v.download("/tmp/churn")
    df = v.to_pandas("train.csv")           # CSV, Parquet, JSON lines (pandas installed)

Bytes go straight between this machine and object storage (presigned URLs, or a
direct path when Animus runs on this machine); the API only sees the manifest.
A push hashes files in a thread pool, uploads only the blobs the project does not
have yet (a new version that changes one file uploads one file) and commits
atomically: an interrupted push leaves nothing visible, and running it again
uploads only what is still missing. When a run is active, ``get()`` records the
version as a run input (name, digest, source), as MLflow records dataset inputs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter

from animus_hub._version import __version__

from .client import AnimusAPIError, Client
from .hashcache import HashCache, now_ns
from .profiling import PROFILE_VERSION, ProfileError, hash_and_profile, parquet_supported, table_format

MANIFEST_BATCH = 2000
#: bytes of manifest entries (profiles included) per request, under the API's 1 MiB body limit
MANIFEST_BATCH_BYTES = 768 * 1024
#: the largest profile the API accepts (``services.dataset_profiles.MAX_PROFILE_BYTES``)
MAX_PROFILE_BYTES = 256 * 1024
PAGE = 1000
HASH_CHUNK = 4 * 1024 * 1024
DOWNLOAD_CHUNK = 1024 * 1024
#: bytes per socket write of an upload (urllib3 sends a file body 16 KiB at a time by default)
UPLOAD_BLOCK = 1024 * 1024
COMMIT_ATTEMPTS = 3


class DatasetError(Exception):
    """A push or pull failed for a reason the caller must fix."""


class SourceChangedError(DatasetError):
    """An object of an external source is no longer the one a version pinned: it was not read."""


def _seg(value: str) -> str:
    return quote(value, safe="")


def _project(project: str | None) -> str:
    project = project or os.environ.get("ANIMUS_PROJECT")
    if not project:
        raise DatasetError("No project: pass project=... or set ANIMUS_PROJECT")
    return project


def manifest_digest(entries: list[tuple[str, str, int]]) -> str:
    """The version digest the server computes (``services.datasets.manifest_digest``)."""
    h = hashlib.sha256()
    for path, sha, size in sorted(entries):
        h.update(json.dumps([path, sha, size], ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        h.update(b"\n")
    return "sha256:" + h.hexdigest()


_buffers = threading.local()


def sha256_file(path: Path, progress: _Progress | None = None) -> str:
    h = hashlib.sha256()
    with path.open("rb", buffering=0) as f:
        # one buffer per thread: a fresh 4 MiB bytearray per file is zeroed memory each time,
        # which costs more than hashing a small file
        buf = getattr(_buffers, "buf", None)
        if buf is None:
            buf = _buffers.buf = bytearray(HASH_CHUNK)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
            if progress is not None:
                progress.update(n)
    return h.hexdigest()


# --- progress -------------------------------------------------------------------------


class _Progress:
    """A byte counter shown with tqdm when installed, else as a line on stderr every few seconds."""

    def __init__(self, total: int, desc: str, enabled: bool = True, interval: float = 2.0):
        self.total, self.desc, self.done = total, desc, 0
        self._lock = threading.Lock()
        self._bar = None
        self._enabled = enabled
        self._interval = interval
        self._last = time.monotonic()
        self._start = self._last
        if enabled:
            try:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False)
            except ImportError:
                pass

    def update(self, n: int) -> None:
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(n)
                return
            now = time.monotonic()
            if self._enabled and now - self._last >= self._interval:
                self._last = now
                self._line()

    def _line(self) -> None:
        rate = self.done / max(time.monotonic() - self._start, 1e-9)
        pct = 100.0 * self.done / self.total if self.total else 100.0
        print(f"{self.desc}: {pct:5.1f}% {_human(self.done)}/{_human(self.total)} ({_human(rate)}/s)", file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self._enabled and time.monotonic() - self._start >= self._interval:
            self._line()


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


# --- versions ----------------------------------------------------------------------------


class DatasetVersion:
    """A committed, immutable version of a dataset."""

    def __init__(self, client: Client, project: str, data: dict[str, Any]):
        self.client = client
        self.project = project
        self.data = data
        self.name: str = data["dataset"]
        self.version: int = data["version"]
        self.digest: str = data["digest"]
        self.file_count: int = data.get("file_count", 0)
        self.total_size: int = data.get("total_size", 0)

    def __repr__(self) -> str:
        return f"<animus DatasetVersion {self.project}/{self.name}:{self.version} {self.digest[:19]} files={self.file_count}>"

    @property
    def _base(self) -> str:
        return f"/projects/{_seg(self.project)}/datasets/{_seg(self.name)}/versions/{self.version}"

    @property
    def source(self) -> str:
        return f"animus://{self.project}/datasets/{self.name}/versions/{self.version}"

    @property
    def label(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def source_type(self) -> str:
        """Where the version came from: "upload", "external_reference" or "external_snapshot"."""
        return self.data.get("source_type") or "upload"

    def verify(self, progress: bool = False) -> dict[str, Any]:
        """Check every file where it lives: referenced source objects against their captured ETag and
        version id, blobs for presence and size. Returns ``{checked, ok, changed: [...], missing: [...]}``."""
        report: dict[str, Any] = {"checked": 0, "ok": 0, "changed": [], "missing": []}
        params: dict[str, Any] = {"limit": PAGE}
        while True:
            page = self.client.request("GET", self._base + "/verify", params=params)
            for key in ("checked", "ok"):
                report[key] += page[key]
            report["changed"] += page["changed"]
            report["missing"] += page["missing"]
            if progress:
                print(f"verify {self.label}: {report['checked']}/{self.file_count}", file=sys.stderr)
            if not page.get("next_cursor"):
                return report
            params["cursor"] = page["next_cursor"]

    def files(self, prefix: str | None = None) -> list[dict[str, Any]]:
        """The manifest: ``{path, sha256, size, media_type}`` per file."""
        return list(self._pages(prefix=prefix))

    def _pages(self, urls: bool = False, prefix: str | None = None) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"limit": PAGE, "prefix": prefix}
        if urls:
            params.update(urls="true", local="true" if _same_machine(self.client) else None)
        while True:
            page = self.client.request("GET", self._base + "/files", params=params)
            yield from page["items"]
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    def open(self, path: str, mode: str = "rb") -> IO[Any]:
        """Read one file: from its direct path when on the same machine, else streamed from storage."""
        if mode not in ("r", "rb"):
            raise ValueError("dataset versions are read-only: open them with 'r' or 'rb'")
        info = self.client.request(
            "GET",
            self._base + "/download",
            params={"path": path, "local": "true" if _same_machine(self.client) else None},
        )
        local = info.get("local_path")
        if local and os.access(local, os.R_OK):
            return open(local, mode)  # noqa: SIM115 (the caller closes it)
        r = requests.get(info["url"], headers=info.get("headers") or {}, stream=True, timeout=60)
        if r.status_code != 200:
            r.close()
            _raise_for_download(r.status_code, path, self.label)
        r.raw.decode_content = True
        raw: IO[bytes] = r.raw
        return io.TextIOWrapper(raw, encoding="utf-8") if mode == "r" else raw

    def download(self, directory: str | os.PathLike[str], workers: int = 8, progress: bool = True) -> Path:
        """Write every file under `directory` (verified by sha256); files already there and intact are kept."""
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        bar = _Progress(self.total_size, f"pull {self.name}:{self.version}", progress)
        errors: list[str] = []

        changed: list[str] = []

        def fetch(item: dict[str, Any]) -> None:
            try:
                _fetch_file(root, item, bar)
            except SourceChangedError as e:
                changed.append(str(e))
            except Exception as e:  # noqa: BLE001 (collected and reported together)
                errors.append(f"{item['path']}: {e}")

        with ThreadPoolExecutor(max(1, workers)) as pool:
            for item in self._pages(urls=True):
                pool.submit(fetch, item)
        bar.close()
        if changed:
            raise SourceChangedError(
                f"{len(changed)} file(s) of {self.label} changed in their external source and were not read: "
                + "; ".join(changed[:5])
            )
        if errors:
            raise DatasetError(f"{len(errors)} file(s) failed to download: " + "; ".join(errors[:5]))
        return root

    def schema(self, path: str | None = None) -> list[dict[str, Any]]:
        """Profiles of the version's tabular files: ``{path, sha256, format, rows, bad_rows, columns: [...]}``.

        Each column has ``name``, ``type``, ``nulls``, ``min``, ``max``, ``mean`` and
        ``distinct`` (an estimate above 2048 distinct values). ``path`` selects one file.
        """
        params: dict[str, Any] = {"limit": 100, "path": path}
        out: list[dict[str, Any]] = []
        while True:
            page = self.client.request("GET", self._base + "/schema", params=params)
            out += page["items"]
            if not page.get("next_cursor"):
                return out
            params["cursor"] = page["next_cursor"]

    def to_pandas(self, path: str | None = None, **kwargs: Any) -> Any:
        """A pandas DataFrame of one tabular file (CSV, Parquet, JSON lines), or of all of them concatenated."""
        try:
            import pandas as pd
        except ImportError:
            raise DatasetError("to_pandas() needs pandas: pip install pandas") from None
        paths = [path] if path else [f["path"] for f in self.files() if _reader(f["path"]) is not None]
        if not paths:
            raise DatasetError(f"{self.name}:{self.version} has no CSV, Parquet or JSON lines file")
        frames = []
        for p in paths:
            kind = _reader(p)
            if kind is None:
                raise DatasetError(f"{p!r}: not a CSV, Parquet or JSON lines file (by its extension)")
            with self.open(p, "rb") as f:
                # pandas loads the whole table anyway; a buffer also gives Parquet the seeks it needs
                data = io.BytesIO(f.read())
            if kind == "csv":
                frames.append(pd.read_csv(data, **kwargs))
            elif kind == "tsv":
                frames.append(pd.read_csv(data, sep="\t", **kwargs))
            elif kind == "parquet":
                frames.append(pd.read_parquet(data, **kwargs))
            else:
                frames.append(pd.read_json(data, lines=True, **kwargs))
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _reader(path: str) -> str | None:
    name = path.lower()
    for ext, kind in (
        (".csv", "csv"),
        (".tsv", "tsv"),
        (".parquet", "parquet"),
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
    ):
        if name.endswith(ext):
            return kind
    return None


def _same_machine(client: Client) -> bool:
    host = urlsplit(client.url).hostname or ""
    return host in ("127.0.0.1", "localhost", "::1")


def _safe_target(root: Path, path: str) -> Path:
    target = (root / path).resolve()
    if not target.is_relative_to(root.resolve()):
        raise DatasetError(f"refusing to write outside {root}: {path!r}")
    return target


def _raise_for_download(status: int, path: str, label: str = "") -> None:
    where = f" of {label}" if label else ""
    if status == 412:
        raise SourceChangedError(
            f"{path!r}{where} changed in its external source since it was captured (HTTP 412: ETag differs); "
            "it was not read. `animus datasets verify` lists what changed; import the source again for a new version"
        )
    if status == 404:
        raise SourceChangedError(f"{path!r}{where} is gone from its external source (HTTP 404); it was not read")
    raise DatasetError(f"download of {path!r} failed: HTTP {status}")


def _stream_to(out: IO[bytes], item: dict[str, Any], bar: _Progress) -> tuple[str, int]:
    """Copy one file (direct path or pinned URL) into `out`; its sha256 and size."""
    h = hashlib.sha256()
    n = 0
    local = item.get("local_path")
    if local and os.access(local, os.R_OK):
        with open(local, "rb") as src:
            while chunk := src.read(DOWNLOAD_CHUNK):
                h.update(chunk)
                out.write(chunk)
                n += len(chunk)
                bar.update(len(chunk))
        return h.hexdigest(), n
    # reference entries carry headers (a signed If-Match): the store answers 412, not other bytes
    with requests.get(item["url"], headers=item.get("headers") or {}, stream=True, timeout=60) as r:
        if r.status_code != 200:
            _raise_for_download(r.status_code, item["path"])
        for chunk in r.iter_content(DOWNLOAD_CHUNK):
            h.update(chunk)
            out.write(chunk)
            n += len(chunk)
            bar.update(len(chunk))
    return h.hexdigest(), n


def _fetch_file(root: Path, item: dict[str, Any], bar: _Progress) -> None:
    target = _safe_target(root, item["path"])
    expected = item.get("sha256")  # None for a reference to an external object
    if expected and target.is_file() and target.stat().st_size == item["size"] and sha256_file(target) == expected:
        bar.update(item["size"])
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.animus-part")
    try:
        with tmp.open("wb") as out:
            sha, size = _stream_to(out, item, bar)
        if expected is not None and sha != expected:
            raise DatasetError("content does not match its sha256")
        if size != item["size"]:
            raise DatasetError(f"got {size} bytes, the manifest says {item['size']}")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)


# --- push -----------------------------------------------------------------------------------


def _collect(path: Path) -> list[tuple[str, Path]]:
    if path.is_file():
        return [(path.name, path)]
    if not path.is_dir():
        raise DatasetError(f"{path} is neither a file nor a directory")
    files = [(p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file()]
    if not files:
        raise DatasetError(f"{path} holds no files: a dataset version holds at least one file")
    return sorted(files)


class _BigBlockAdapter(HTTPAdapter):
    """Sends request bodies UPLOAD_BLOCK bytes per write instead of urllib3's 16 KiB."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        pool_kwargs.setdefault("blocksize", UPLOAD_BLOCK)
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)


class _BatchBody:
    """A batch upload's body, read as it is sent: the signed object list, then each file's bytes."""

    def __init__(self, prefix: bytes, parts: list[tuple[Path, int]], bar: _Progress):
        self._prefix: bytes = prefix
        self._parts = [(p, n) for p, n in parts if n > 0]
        self._length = len(prefix) + sum(n for _, n in parts)
        self._bar = bar
        self._file: IO[bytes] | None = None
        self._path: Path | None = None
        self._left = 0

    def __len__(self) -> int:  # requests sends it as Content-Length
        return self._length

    def read(self, n: int = -1) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix, b""
            return data
        while self._file is None:
            if not self._parts:
                return b""
            self._path, self._left = self._parts.pop(0)
            self._file = self._path.open("rb", buffering=0)
        want = self._left if n is None or n < 0 else min(n, self._left)
        data = self._file.read(want)
        if not data:
            self.close()
            raise DatasetError(f"{self._path} changed during the push (it is shorter than when it was hashed)")
        self._left -= len(data)
        self._bar.update(len(data))
        if self._left == 0:
            self._file.close()
            self._file = None
        return data

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _Uploader:
    """PUTs blobs (and batches of small blobs) with a small pool; one requests.Session per thread."""

    def __init__(self, workers: int):
        self.workers = max(1, workers)
        self._local = threading.local()

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
            adapter = _BigBlockAdapter()
            s.mount("http://", adapter)
            s.mount("https://", adapter)
        return s

    def put_batch(self, batch: dict[str, Any], by_sha: dict[str, Path], bar: _Progress) -> None:
        """Send several small blobs in one request (``ObjectStore.presign_batch``)."""
        parts = [(by_sha[b["sha256"]], b["size"]) for b in batch["blobs"]]
        body = _BatchBody(batch["body_prefix"].encode("utf-8"), parts, bar)
        try:
            r = self._session().request(batch.get("method", "POST"), batch["url"], data=body, timeout=600)
        finally:
            body.close()
        if r.status_code >= 300:
            try:
                error = r.json()
            except ValueError:
                error = {"message": r.text[:200]}
            rejected = [
                by_sha.get(x.get("expected", ""), x.get("key")) for x in error.get("details", {}).get("rejected", [])
            ]
            which = f" (not stored: {', '.join(map(str, rejected[:5]))})" if rejected else ""
            raise DatasetError(
                f"upload of {len(parts)} files failed: HTTP {r.status_code} {error.get('message', '')}{which}"
            )

    def put(self, item: dict[str, Any], path: Path, bar: _Progress) -> None:
        with path.open("rb") as f:
            # an empty file object would be sent chunked; stores want Content-Length: 0
            body: Any = f if item["size"] > 0 else b""
            r = self._session().put(item["url"], data=body, headers=item.get("headers") or {}, timeout=600)
        if r.status_code >= 300:
            raise DatasetError(f"upload of {path} failed: HTTP {r.status_code} {r.text[:200]}")
        bar.update(item["size"])


def push(
    name: str,
    path: str | os.PathLike[str],
    project: str | None = None,
    message: str = "",
    *,
    client: Client | None = None,
    hash_workers: int | None = None,
    upload_workers: int = 8,
    progress: bool = True,
    run_id: str | None = None,
    force: bool = False,
    profile: bool = True,
    cache: bool = True,
) -> DatasetVersion:
    """Version a folder (or one file) as the next version of dataset `name` (created if missing).

    If the content is identical to the latest version, that version is returned
    and nothing is created (``force=True`` creates a new version anyway). CSV, TSV,
    JSON lines and Parquet files are profiled while they are hashed (schema and
    statistics, see ``animus.profiling``; ``profile=False`` skips it) and the
    profiles are stored with the version. Digests of files unchanged since an
    earlier push come from a local cache (``animus.hashcache``; ``cache=False``
    hashes every file); the store verifies every uploaded byte either way.
    """
    client = client or Client()
    project = _project(project)
    files = _collect(Path(path))
    by_sha: dict[str, Path] = {}
    stats = [p.stat() for _, p in files]
    results = _digests(name, files, stats, profile, cache, hash_workers, progress)
    manifest = []
    for (rel, p), st, (sha, prof) in zip(files, stats, results, strict=True):
        entry: dict[str, Any] = {"path": rel, "sha256": sha, "size": st.st_size}
        if prof is not None:
            entry["profile"] = prof
        manifest.append(entry)
        by_sha.setdefault(sha, p)
    base = f"/projects/{_seg(project)}/datasets/{_seg(name)}"
    try:
        info = client.request("GET", base)
    except AnimusAPIError as e:
        if e.status != 404:
            raise
        info = client.request("POST", f"/projects/{_seg(project)}/datasets", json_body={"name": name})
    local_digest = manifest_digest([(m["path"], m["sha256"], m["size"]) for m in manifest])
    if not force and info.get("latest_digest") == local_digest:
        return DatasetVersion(client, project, client.request("GET", f"{base}/versions/{info['latest_version']}"))
    batches = _batches(manifest)
    body: dict[str, Any] = {"message": message, "files": next(batches)}
    if run_id:
        body["run_id"] = run_id
    upload = client.request("POST", f"{base}/uploads", json_body=body)
    up = f"{base}/uploads/{upload['id']}"
    for batch in batches:
        client.request("POST", f"{up}/files", json_body={"files": batch})
    uploader = _Uploader(upload_workers)
    for attempt in range(COMMIT_ATTEMPTS):
        _upload_missing(client, up, uploader, by_sha, progress)
        try:
            data = client.request("POST", f"{up}/commit")
            return DatasetVersion(client, project, data)
        except AnimusAPIError as e:
            # a blob vanished or a URL expired between pages: ask again what is missing
            if e.reason != "blobs_missing" or attempt == COMMIT_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _digests(
    name: str,
    files: list[tuple[str, Path]],
    stats: list[os.stat_result],
    profile: bool,
    cache: bool,
    hash_workers: int | None,
    progress: bool,
) -> list[tuple[str, dict[str, Any] | None]]:
    """(sha256, profile) per file: from the hash cache where still valid, else read in a thread pool."""
    profiler = f"{PROFILE_VERSION}:{__version__}"
    hashes = HashCache(profiler=profiler) if cache else None
    absolute = [os.path.abspath(p) for _, p in files]
    want_profile = [a for a, (rel, _) in zip(absolute, files, strict=True) if profile and table_format(rel)]
    cached = hashes.lookup(zip(absolute, stats, strict=True), want_profile) if hashes else {}
    results: list[tuple[str, dict[str, Any] | None]] = [("", None)] * len(files)
    todo = []
    for i, a in enumerate(absolute):
        hit = cached.get(a)
        if hit is None:
            todo.append(i)
        else:
            results[i] = (hit.sha256, hit.profile if profile else None)
    bar = _Progress(sum(stats[i].st_size for i in todo), f"hash {name}", progress)
    started = now_ns()
    with ThreadPoolExecutor(hash_workers or min(32, (os.cpu_count() or 4) * 2)) as pool:
        for i, r in zip(
            todo, pool.map(lambda i: _hash_file(files[i][0], files[i][1], bar, profile), todo), strict=True
        ):
            results[i] = r
    bar.close()
    if hashes is not None:
        # a Parquet file hashed without pyarrow was not profiled: profile it once pyarrow is there
        hashes.store(
            (absolute[i], stats[i], started, *results[i], profile and not _unprofiled_parquet(files[i][0]))
            for i in todo
        )
        hashes.close()
    return results


def _unprofiled_parquet(rel: str) -> bool:
    return table_format(rel) == "parquet" and not parquet_supported()


def _hash_file(rel: str, path: Path, bar: _Progress, profile: bool) -> tuple[str, dict[str, Any] | None]:
    """sha256 of a file and, for a tabular one, its profile (computed from the same read for CSV and JSON lines)."""
    fmt = table_format(rel) if profile else None
    if fmt == "parquet" and not parquet_supported():
        _warn_once("animus: Parquet files are not profiled: profiling Parquet needs pyarrow (pip install pyarrow)")
        fmt = None
    if fmt is None:
        return sha256_file(path, bar), None
    try:
        sha, prof = hash_and_profile(path, fmt, bar.update)
    except ProfileError as e:
        print(f"animus: {rel}: not profiled: {e}", file=sys.stderr)
        return sha256_file(path), None
    if prof is not None and len(json.dumps(prof).encode("utf-8")) > MAX_PROFILE_BYTES:
        print(f"animus: {rel}: not profiled: the profile is larger than {MAX_PROFILE_BYTES} bytes", file=sys.stderr)
        prof = None
    return sha, prof


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        print(message, file=sys.stderr)


def _batches(manifest: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Manifest entries in request-sized batches (at most MANIFEST_BATCH entries and about MANIFEST_BATCH_BYTES)."""
    batch: list[dict[str, Any]] = []
    size = 0
    for entry in manifest:
        n = len(json.dumps(entry).encode("utf-8")) + 2
        if batch and (len(batch) >= MANIFEST_BATCH or size + n > MANIFEST_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += n
    yield batch


def _upload_missing(client: Client, up: str, uploader: _Uploader, by_sha: dict[str, Path], progress: bool) -> int:
    """Upload every blob the server says is missing, page by page (URLs are fetched just before use).

    Small blobs come in batches (one request each) where the store offers them, and
    on this machine the URLs go straight to the local store's gateway. The next page
    is asked for while the previous one uploads: at most two pages are in flight.
    """
    params: dict[str, Any] = {"limit": PAGE, "batch": "true", "local": "true" if _same_machine(client) else None}
    bar = _Progress(0, "upload", progress)
    sent = 0
    pending: list[Any] = []
    with ThreadPoolExecutor(uploader.workers) as pool:
        while True:
            page = client.request("GET", f"{up}/missing", params=params)
            batches = page.get("batches") or []
            bar.total += sum(i["size"] for i in page["items"]) + sum(b["size"] for x in batches for b in x["blobs"])
            # big batches first: they are the longest tasks
            futures = [pool.submit(uploader.put_batch, batch, by_sha, bar) for batch in batches]
            futures += [pool.submit(uploader.put, item, by_sha[item["sha256"]], bar) for item in page["items"]]
            sent += len(page["items"]) + sum(len(x["blobs"]) for x in batches)
            for fut in pending:
                fut.result()
            pending = futures
            if not page.get("next_cursor"):
                break
            params["cursor"] = page["next_cursor"]
        for fut in pending:
            fut.result()
    bar.close()
    return sent


# --- get ---------------------------------------------------------------------------------


def get(
    name: str,
    version: int | str | None = None,
    project: str | None = None,
    *,
    client: Client | None = None,
    record: bool = True,
    context: str = "",
) -> DatasetVersion:
    """A committed version (the latest when `version` is None).

    With an active run (``animus.start_run``), the version is recorded as one of
    its inputs: name, digest and source, so the run links to exactly this data.
    """
    client = client or Client()
    project = _project(project)
    ref = "latest" if version is None else str(version)
    data = client.request("GET", f"/projects/{_seg(project)}/datasets/{_seg(name)}/versions/{_seg(ref)}")
    v = DatasetVersion(client, project, data)
    if record:
        from .tracking import active_run

        run = active_run()
        if run is not None and run.project == project:
            run.client.request(
                "POST",
                f"/projects/{_seg(project)}/runs/{run.id}/inputs",
                json_body={
                    "datasets": [
                        {
                            "name": name,
                            "digest": v.digest,
                            "source_type": "animus",
                            "source": json.dumps({"uri": v.source}),
                            "context": context,
                        }
                    ]
                },
            )
    return v


def list_datasets(project: str | None = None, *, client: Client | None = None) -> list[dict[str, Any]]:
    client = client or Client()
    return list(client.paginate(f"/projects/{_seg(_project(project))}/datasets", page_size=500))


def list_versions(name: str, project: str | None = None, *, client: Client | None = None) -> list[dict[str, Any]]:
    client = client or Client()
    return list(client.paginate(f"/projects/{_seg(_project(project))}/datasets/{_seg(name)}/versions", page_size=500))


def diff(
    name: str,
    a: int | str,
    b: int | str | None = None,
    project: str | None = None,
    *,
    client: Client | None = None,
) -> dict[str, Any]:
    """What changed from version `a` to version `b` (default: the latest) of dataset `name`.

    ``files``: ``added``, ``removed``, ``changed`` (by sha256) with counts; ``tables``:
    for changed tabular files profiled in both versions, ``columns_added``,
    ``columns_removed``, ``type_changes`` and ``rows`` (from, to, change).
    """
    client = client or Client()
    return client.request(
        "GET",
        f"/projects/{_seg(_project(project))}/datasets/{_seg(name)}/diff",
        params={"from": str(a), "to": "latest" if b is None else str(b)},
    )


def pull(
    name: str,
    directory: str | os.PathLike[str],
    version: int | str | None = None,
    project: str | None = None,
    *,
    client: Client | None = None,
    progress: bool = True,
) -> DatasetVersion:
    """Download a version into `directory`."""
    v = get(name, version, project, client=client)
    v.download(directory, progress=progress)
    return v


# --- external S3 sources ----------------------------------------------------------------------


def list_sources(project: str | None = None, *, client: Client | None = None) -> list[dict[str, Any]]:
    """The external S3 sources the platform lets this project import from: ``{name, bucket, prefixes}``."""
    client = client or Client()
    return client.request("GET", f"/projects/{_seg(_project(project))}/external-sources")["items"]


def _ensure_dataset(client: Client, project: str, name: str) -> str:
    base = f"/projects/{_seg(project)}/datasets/{_seg(name)}"
    try:
        client.request("GET", base)
    except AnimusAPIError as e:
        if e.status != 404:
            raise
        client.request("POST", f"/projects/{_seg(project)}/datasets", json_body={"name": name})
    return base


def import_external(
    name: str,
    uri: str,
    source: str,
    project: str | None = None,
    message: str = "",
    *,
    snapshot: bool = False,
    client: Client | None = None,
    workers: int = 8,
    progress: bool = True,
    workdir: str | os.PathLike[str] | None = None,
    profile: bool = True,
) -> DatasetVersion:
    """A new version of dataset `name` (created if missing) from the S3 prefix `uri` of external `source`.

    By reference (the default) nothing is copied: animus-api lists the prefix and pins
    every object by ETag (and version id on a versioned bucket); reading goes to the
    source and refuses an object that changed since. With ``snapshot=True`` this
    machine copies every object into the project (through ``workdir``, a temporary
    directory by default, which needs room for the whole prefix): the version is then
    immune to later changes in the source.
    """
    client = client or Client()
    project = _project(project)
    base = _ensure_dataset(client, project, name)
    body = {"source": source, "uri": uri, "mode": "snapshot" if snapshot else "reference", "message": message}
    data = client.request("POST", f"{base}/imports", json_body=body)
    if not snapshot:
        return DatasetVersion(client, project, data)
    return _complete_snapshot(client, project, base, data["id"], workers, progress, workdir, profile)


def _complete_snapshot(
    client: Client,
    project: str,
    base: str,
    upload_id: str,
    workers: int,
    progress: bool,
    workdir: str | os.PathLike[str] | None,
    profile: bool,
) -> DatasetVersion:
    """Copy the captured objects of a snapshot upload, report their sha256, upload the new blobs, commit."""
    up = f"{base}/uploads/{upload_id}"
    with tempfile.TemporaryDirectory(prefix="animus-import-", dir=workdir) as tmp:
        root = Path(tmp)
        by_sha: dict[str, Path] = {}
        bar = _Progress(0, "copy from source", progress)
        params: dict[str, Any] = {"limit": PAGE}
        with ThreadPoolExecutor(max(1, workers)) as pool:
            while True:
                # URLs are fetched page by page, just before use: they are short-lived
                page = client.request("GET", f"{up}/sources", params=params)
                bar.total += sum(i["size"] for i in page["items"])
                copied = list(pool.map(lambda item: _copy_source(root, item, bar, profile), page["items"]))
                entries = []
                for item, (path, sha, prof) in zip(page["items"], copied, strict=True):
                    entry: dict[str, Any] = {"path": item["path"], "sha256": sha, "size": item["size"]}
                    if prof is not None:
                        entry["profile"] = prof
                    entries.append(entry)
                    by_sha.setdefault(sha, path)
                for batch in _batches(entries) if entries else ():
                    client.request("POST", f"{up}/files", json_body={"files": batch})
                if not page.get("next_cursor"):
                    break
                params["cursor"] = page["next_cursor"]
        bar.close()
        uploader = _Uploader(workers)
        for attempt in range(COMMIT_ATTEMPTS):
            _upload_missing(client, up, uploader, by_sha, progress)
            try:
                return DatasetVersion(client, project, client.request("POST", f"{up}/commit"))
            except AnimusAPIError as e:
                if e.reason != "blobs_missing" or attempt == COMMIT_ATTEMPTS - 1:
                    raise
    raise AssertionError("unreachable")


def _copy_source(root: Path, item: dict[str, Any], bar: _Progress, profile: bool) -> tuple[Path, str, Any]:
    """Download one captured object (pinned by ETag / version id): its local path, sha256 and profile."""
    target = _safe_target(root, item["path"])
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out:
        sha, size = _stream_to(out, item, bar)
    if size != item["size"]:
        raise DatasetError(f"{item['path']!r}: got {size} bytes from the source, {item['size']} were captured")
    prof = None
    if profile and table_format(item["path"]) is not None:
        _, prof = _hash_file(item["path"], target, _Progress(0, "", False), True)
    return target, sha, prof


__all__ = [
    "DatasetError",
    "DatasetVersion",
    "SourceChangedError",
    "diff",
    "get",
    "import_external",
    "list_datasets",
    "list_sources",
    "list_versions",
    "manifest_digest",
    "pull",
    "push",
]
