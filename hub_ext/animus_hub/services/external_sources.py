"""Dataset versions from read-only external S3 sources (DESIGN.md §4: "source").

Two modes, both starting from one listing of the prefix that animus-api makes with
the source's own credentials (metadata only: key, size, ETag, VersionId when the
bucket is versioned):

- **reference**: nothing is copied. The version is committed at once; each entry
  records the object's key, ETag and version id, and has no sha256 (""). Reading
  goes to the source through presigned GETs pinned to the captured version id and
  always to the ETag (a signed ``If-Match``: a changed object answers 412, it is
  never silently read). ``verify`` HEADs every object and reports changed and
  missing ones. The version digest hashes ``[path, identity, size]`` lines, where
  identity is ``"s3:" + ["bucket","key","etag",version_id|null]`` (compact JSON) in
  place of the sha256: stable, deterministic and different whenever a pinned object is.
- **snapshot**: the bytes are copied into the project's blob space, content-addressed
  by sha256 like an upload. animus-api never sees them (and could not copy them
  server-side without reading them: the blob key is the sha256 of the content). It
  opens a pending upload whose entries are the captured objects without sha256; the
  client reads each through the same pinned presigned GETs (``/uploads/{id}/sources``),
  hashes it, reports the sha256 (``/uploads/{id}/files``), uploads the blobs the
  project lacks and commits. The committed version is an ordinary content-addressed
  version (later changes in the source do not touch it) that remembers, per file,
  the object it was copied from.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from ..errors import AnimusError
from ..orm import Dataset, DatasetFile, DatasetVersion, Project, utcnow
from ..storage.base import ObjectStore
from ..storage.external import ExternalObject, ExternalS3Source, parse_s3_uri, s3_uri
from . import dataset_profiles as profiles
from . import datasets as svc
from .blobs import blob_key
from .sqlutil import chunks

REFERENCE = "external_reference"
SNAPSHOT = "external_snapshot"
MODES = {"reference": REFERENCE, "snapshot": SNAPSHOT}
#: concurrent HEAD requests while verifying
HEAD_CONCURRENCY = 32
INSERT_CHUNK = 5000


def reference_identity(bucket: str, key: str, etag: str, version_id: str | None) -> str:
    """What stands for the sha256 of a reference entry in the version digest."""
    return "s3:" + json.dumps([bucket, key, etag, version_id], ensure_ascii=False, separators=(",", ":"))


def project_sources(sources: Mapping[str, ExternalS3Source], project: Project) -> list[ExternalS3Source]:
    return [s for _, s in sorted(sources.items()) if s.allows_project(project.slug)]


def find_source(sources: Mapping[str, ExternalS3Source], project: Project, name: str) -> ExternalS3Source:
    """The configured source `name`, if this project may use it (one answer for unknown and not allowed)."""
    source = sources.get(name)
    if source is None or not source.allows_project(project.slug):
        usable = [s.name for s in project_sources(sources, project)]
        raise AnimusError(
            422,
            "unknown_source",
            f"No external source {name[:64]!r} is configured for project {project.slug!r}"
            + (f" (available: {', '.join(usable)})" if usable else " (none is)"),
            {"source": name[:64], "available": usable},
        )
    return source


# --- capture --------------------------------------------------------------------------------


async def capture(source: ExternalS3Source, uri: str) -> tuple[str, str, list[tuple[str, ExternalObject]]]:
    """List `uri` through `source`: (bucket, prefix, [(manifest path, object)]), sorted by path.

    Folder markers (keys ending in '/' with no bytes, as consoles create them) are
    skipped; every other key must make a valid manifest path, as for uploads.
    """
    bucket, prefix = source.check_uri(uri)
    objects = await source.list_prefix(bucket, prefix, svc.MAX_FILES_PER_VERSION)
    if len(objects) > svc.MAX_FILES_PER_VERSION:
        raise AnimusError(
            413,
            "too_many_files",
            f"{s3_uri(bucket, prefix)} holds more than {svc.MAX_FILES_PER_VERSION} objects",
            {"limit": svc.MAX_FILES_PER_VERSION},
        )
    captured: list[tuple[str, ExternalObject]] = []
    for obj in objects:
        rel = obj.key[len(prefix) :]
        if rel.endswith("/") and obj.size == 0:
            continue
        try:
            path = svc.validate_path(rel)
        except AnimusError as e:
            e.message = f"Object key {obj.key[:200]!r} cannot be a dataset path: {e.message}"
            e.details = {**e.details, "key": obj.key[:200]}
            raise
        if not obj.etag:
            raise AnimusError(
                422,
                "source_unreadable",
                f"Source {source.name!r} gave no ETag for {obj.key[:200]!r}; it cannot be pinned",
                {"key": obj.key[:200]},
            )
        captured.append((path, obj))
    if not captured:
        raise AnimusError(
            422,
            "empty_source",
            f"{s3_uri(bucket, prefix)} holds no objects; a dataset version holds at least one file",
            {"uri": s3_uri(bucket, prefix)},
        )
    captured.sort(key=lambda item: item[0])
    return bucket, prefix, captured


def _insert_entries(session: Session, version: DatasetVersion, captured: Sequence[tuple[str, ExternalObject]]) -> None:
    rows = [
        {
            "version_id": version.id,
            "path": path,
            "sha256": "",
            "size": obj.size,
            "media_type": svc.guess_media_type(path),
            "source_key": obj.key,
            "source_etag": obj.etag,
            "source_version_id": obj.version_id,
        }
        for path, obj in captured
    ]
    for i in range(0, len(rows), INSERT_CHUNK):
        session.execute(insert(DatasetFile), rows[i : i + INSERT_CHUNK])


def _pending(
    session: Session, dataset: Dataset, source: ExternalS3Source, uri: str, mode: str, by: str, message: str
) -> DatasetVersion:
    version = DatasetVersion(
        dataset_id=dataset.id,
        state="pending",
        message=message,
        source_type=mode,
        source_name=source.name,
        source_uri=uri,
        created_at=utcnow(),
        created_by=by,
    )
    session.add(version)
    session.flush()
    return version


def register_reference(
    session: Session,
    project: Project,
    dataset: Dataset,
    source: ExternalS3Source,
    bucket: str,
    prefix: str,
    captured: Sequence[tuple[str, ExternalObject]],
    by: str,
    message: str = "",
) -> DatasetVersion:
    """Commit, in this transaction, a version referencing the captured objects (nothing copied)."""
    version = _pending(session, dataset, source, s3_uri(bucket, prefix), REFERENCE, by, message)
    _insert_entries(session, version, captured)
    digest = svc.manifest_digest(
        (path, reference_identity(bucket, obj.key, obj.etag, obj.version_id), obj.size) for path, obj in captured
    )
    return svc.number_version(
        session, project, dataset, version, by, digest, len(captured), sum(obj.size for _, obj in captured)
    )


def start_snapshot(
    session: Session,
    dataset: Dataset,
    source: ExternalS3Source,
    bucket: str,
    prefix: str,
    captured: Sequence[tuple[str, ExternalObject]],
    by: str,
    message: str = "",
) -> DatasetVersion:
    """A pending upload whose entries are the captured objects, still without sha256."""
    upload = _pending(session, dataset, source, s3_uri(bucket, prefix), SNAPSHOT, by, message)
    _insert_entries(session, upload, captured)
    return upload


def fill_snapshot(session: Session, upload: DatasetVersion, files: Sequence[svc.ManifestFile]) -> int:
    """Record the sha256 the client computed for captured objects of a snapshot upload.

    Each path must be one of the captured objects and keep its captured size; giving
    the same sha256 again is harmless (an interrupted import resumes).
    """
    current = {
        path: (sha, size)
        for chunk in chunks([f.path for f in files])
        for path, sha, size in session.execute(
            select(DatasetFile.path, DatasetFile.sha256, DatasetFile.size).where(
                DatasetFile.version_id == upload.id, DatasetFile.path.in_(chunk)
            )
        )
    }
    new = []
    for f in files:
        if f.path not in current:
            raise AnimusError(
                422,
                "not_in_snapshot",
                f"{f.path[:200]!r} is not one of the objects captured from {upload.source_uri}",
                {"path": f.path[:200]},
            )
        sha, size = current[f.path]
        if f.size != size:
            raise AnimusError(
                422,
                "size_mismatch",
                f"{f.path[:200]!r} was captured with {size} bytes, not {f.size}",
                {"path": f.path[:200], "size": size},
            )
        if sha and sha != f.sha256:
            raise AnimusError(
                422,
                "digest_mismatch",
                f"{f.path[:200]!r} was already copied with another sha256",
                {"path": f.path[:200]},
            )
        if not sha:
            new.append(f)
    for f in new:
        session.execute(
            update(DatasetFile)
            .where(DatasetFile.version_id == upload.id, DatasetFile.path == f.path)
            .values(sha256=f.sha256, media_type=f.media_type)
        )
    profiles.insert_profiles(session, upload.id, new)
    return len(files)


# --- reading ---------------------------------------------------------------------------------


def source_of(sources: Mapping[str, ExternalS3Source], project: Project, version: DatasetVersion) -> ExternalS3Source:
    """The source a version reads from, if the configuration still lets this project read there."""
    source = sources.get(version.source_name or "")
    label = f"version {version.version}" if version.version else "this import"
    if source is None or not source.allows_project(project.slug):
        raise AnimusError(
            409,
            "source_unavailable",
            f"{label} reads from external source {version.source_name!r}, "
            f"which is no longer configured for project {project.slug!r}",
            {"source": version.source_name},
        )
    try:
        source.check_uri(version.source_uri or "")
    except AnimusError:
        raise AnimusError(
            409,
            "source_unavailable",
            f"{label} reads {version.source_uri}, which source {source.name!r} may no longer read",
            {"source": source.name},
        ) from None
    return source


def is_reference(f: DatasetFile) -> bool:
    return not f.sha256 and f.source_key is not None


def reference_download(
    source: ExternalS3Source, version: DatasetVersion, f: DatasetFile, expires: int
) -> dict[str, Any]:
    """A reference entry with a presigned GET pinned to what was captured, and the headers to send."""
    bucket, _ = parse_s3_uri(version.source_uri)
    url, headers = source.presign_get(
        bucket,
        f.source_key or "",
        f.source_etag or "",
        f.source_version_id,
        expires,
        filename=f.path.rsplit("/", 1)[-1],
    )
    return {**svc.file_json(f), "url": url, "headers": headers}


def downloads(
    store: ObjectStore,
    sources: Mapping[str, ExternalS3Source],
    project: Project,
    version: DatasetVersion,
    rows: Sequence[DatasetFile],
    expires: int,
    local: bool,
) -> list[dict[str, Any]]:
    """Download entries for a page of files: blob URLs, or pinned source URLs for references."""
    source = source_of(sources, project, version) if any(is_reference(f) for f in rows) else None
    out = []
    for f in rows:
        if is_reference(f):
            assert source is not None
            out.append(reference_download(source, version, f, expires))
        else:
            out.append(svc.file_download(store, project.id, f, expires, local))
    return out


def _changed(f: DatasetFile, now: ExternalObject | None) -> dict[str, Any] | None:
    """None if the object is still exactly what was captured; otherwise what differs."""
    captured = {"etag": f.source_etag, "size": f.size, "version_id": f.source_version_id}
    if now is None:
        return {"path": f.path, "key": f.source_key, "state": "missing", "captured": captured}
    if now.etag != f.source_etag or now.size != f.size:
        return {
            "path": f.path,
            "key": f.source_key,
            "state": "changed",
            "captured": captured,
            "current": {"etag": now.etag, "size": now.size, "version_id": now.version_id},
        }
    return None


async def check_reference(source: ExternalS3Source, version: DatasetVersion, f: DatasetFile) -> None:
    """409 if the referenced object changed or disappeared since the version was registered."""
    bucket, _ = parse_s3_uri(version.source_uri)
    problem = _changed(f, await source.head(bucket, f.source_key or "", f.source_version_id))
    if problem is None:
        return
    if problem["state"] == "missing":
        raise AnimusError(
            409,
            "source_object_missing",
            f"{f.path!r} of version {version.version} is gone from the source "
            f"({s3_uri(bucket, f.source_key or '')} was deleted)",
            problem,
        )
    raise AnimusError(
        409,
        "source_changed",
        f"{f.path!r} changed in the source since version {version.version} was registered "
        f"(ETag {f.source_etag} then, {problem['current']['etag']} now); it is not read. "
        "Register a new version to use the new content.",
        problem,
    )


async def verify(
    store: ObjectStore,
    sources: Mapping[str, ExternalS3Source],
    project: Project,
    version: DatasetVersion,
    rows: Sequence[DatasetFile],
) -> dict[str, Any]:
    """HEAD every file of a page: referenced objects against their captured ETag/version, blobs for presence and size."""
    source = source_of(sources, project, version) if any(is_reference(f) for f in rows) else None
    bucket = parse_s3_uri(version.source_uri)[0] if source is not None else ""
    gate = asyncio.Semaphore(HEAD_CONCURRENCY)

    async def check(f: DatasetFile) -> dict[str, Any] | None:
        async with gate:
            if is_reference(f):
                assert source is not None
                return _changed(f, await source.head(bucket, f.source_key or "", f.source_version_id))
            info = await store.head(blob_key(project.id, f.sha256))
            if info is None:
                return {"path": f.path, "sha256": f.sha256, "state": "missing"}
            if info.size != f.size:
                return {"path": f.path, "sha256": f.sha256, "state": "changed", "size": info.size}
            return None

    problems = [p for p in await asyncio.gather(*(check(f) for f in rows)) if p is not None]
    return {
        "checked": len(rows),
        "ok": len(rows) - len(problems),
        "changed": [p for p in problems if p["state"] == "changed"],
        "missing": [p for p in problems if p["state"] == "missing"],
    }


def snapshot_progress(session: Session, upload: DatasetVersion) -> int:
    """How many captured objects of a snapshot upload still lack a sha256."""
    return int(
        session.scalar(
            select(func.count(DatasetFile.id)).where(DatasetFile.version_id == upload.id, DatasetFile.sha256 == "")
        )
        or 0
    )
