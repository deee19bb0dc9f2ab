"""Datasets: a registry of immutable, content-addressed versions (DESIGN.md §4).

A version is a manifest (path → sha256, size, media type) whose own digest
identifies it. Bytes live once per project in the blob space (``services.blobs``)
and never pass through animus-api; clients move them with presigned URLs.

The push protocol:

1. ``create_upload``: a pending ``DatasetVersion`` (no number: invisible to readers);
2. ``add_files``: the manifest, in batches (a 100,000-file manifest does not fit
   one request body);
3. ``missing_blobs``: pages of presigned PUT URLs for the blobs the project's
   storage does not have yet (dedup across versions and datasets; an interrupted
   push asks again and gets only what is still missing);
4. ``commit_upload``: every blob verified present with its size (the store
   enforced the digest at upload), then, in one transaction, the next version
   number, the manifest digest and the ``DatasetVersionCreated`` event.

Restricted datasets: ``can_read`` is the one check, applied by ``find_dataset``
(every dataset route goes through it) and ``visible_datasets`` (the list).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import mimetypes
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import AnimusError
from ..events import record_event
from ..orm import (
    Dataset,
    DatasetFile,
    DatasetFileProfile,
    DatasetReaderGroup,
    DatasetVersion,
    Project,
    Role,
    Run,
    RunInput,
    utcnow,
)
from ..storage.base import ObjectStore
from . import dataset_profiles as profiles
from .blobs import blob_key, upload_plan
from .pagination import page
from .projects import iso
from .sqlutil import chunks

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
PATH_MAX_BYTES = 1024
MEDIA_TYPE_MAX = 255
#: files per add_files request (the request body limit usually binds first)
MAX_FILES_PER_REQUEST = 10_000
#: files per version
MAX_FILES_PER_VERSION = 1_000_000
#: presigned URLs per page (missing blobs, file downloads)
MAX_URLS_PER_PAGE = 1000
#: concurrent HEAD requests while verifying blobs
HEAD_CONCURRENCY = 32
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_EXTRA_MEDIA_TYPES = {
    ".parquet": "application/vnd.apache.parquet",
    ".jsonl": "application/jsonl",
    ".ndjson": "application/jsonl",
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
}


# --- manifests -------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestFile:
    path: str
    sha256: str
    size: int
    media_type: str = ""
    #: schema and statistics of a tabular file (``services.dataset_profiles``)
    profile: dict[str, Any] | None = None


def manifest_digest(entries: Iterable[tuple[str, str, int]]) -> str:
    """The digest of a manifest: sha256 over its entries sorted by path, one JSON array per line.

    Each line is ``["<path>","<sha256 hex>",<size>]\\n`` (compact JSON, UTF-8, no
    ASCII escaping). Media types are not part of it: they describe, not identify.
    The SDK computes the same digest locally (``animus.datasets.manifest_digest``).
    """
    h = hashlib.sha256()
    for path, sha, size in sorted(entries):
        h.update(json.dumps([path, sha, size], ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        h.update(b"\n")
    return "sha256:" + h.hexdigest()


def guess_media_type(path: str) -> str:
    name = path.rsplit("/", 1)[-1].lower()
    for ext, media_type in _EXTRA_MEDIA_TYPES.items():
        if name.endswith(ext):
            return media_type
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _bad(reason: str, message: str, **details: Any) -> AnimusError:
    return AnimusError(422, reason, message, details)


def validate_path(path: Any) -> str:
    """A manifest path: relative, '/'-separated UTF-8 of at most 1024 bytes, no '.', '..' or empty segments."""
    if not isinstance(path, str) or not path:
        raise _bad("invalid_path", "Each file needs a non-empty string path")
    shown = path[:200]
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad("invalid_path", f"Path {shown!r} is not valid UTF-8", path=shown) from None
    if len(encoded) > PATH_MAX_BYTES:
        raise _bad("invalid_path", f"Path {shown!r} is longer than {PATH_MAX_BYTES} bytes", path=shown)
    if _CONTROL.search(path):
        raise _bad("invalid_path", f"Path {shown!r} contains a control character (NUL included)", path=shown)
    if path.startswith("/"):
        raise _bad("invalid_path", f"Path {shown!r} is absolute; paths are relative to the dataset root", path=shown)
    if "\\" in path:
        raise _bad("invalid_path", f"Path {shown!r} contains '\\'; separate directories with '/'", path=shown)
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise _bad("invalid_path", f"Path {shown!r} has an empty, '.' or '..' segment", path=shown)
    return path


def parse_files(raw: Any) -> list[ManifestFile]:
    """Validate one batch of manifest entries ``{path, sha256, size[, media_type]}``."""
    if not isinstance(raw, list) or not raw:
        raise _bad("validation_failed", "files must be a non-empty list of {path, sha256, size}")
    if len(raw) > MAX_FILES_PER_REQUEST:
        raise AnimusError(
            413,
            "too_many_files",
            f"At most {MAX_FILES_PER_REQUEST} files per request; send the manifest in batches",
            {"limit": MAX_FILES_PER_REQUEST},
        )
    files: list[ManifestFile] = []
    seen: set[str] = set()
    sizes: dict[str, int] = {}
    for item in raw:
        if not isinstance(item, dict) or set(item) - {"path", "sha256", "size", "media_type", "profile"}:
            raise _bad("validation_failed", "Each file is an object {path, sha256, size[, media_type, profile]}")
        path = validate_path(item.get("path"))
        if path in seen:
            raise _bad("duplicate_path", f"Path {path!r} is listed twice", path=path)
        seen.add(path)
        sha = item.get("sha256")
        if not isinstance(sha, str) or not SHA256_RE.match(sha):
            raise _bad("invalid_digest", f"{path!r}: sha256 must be 64 lowercase hex characters", path=path)
        size = item.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise _bad("validation_failed", f"{path!r}: size must be a non-negative integer", path=path)
        if sizes.setdefault(sha, size) != size:
            raise _bad("size_mismatch", f"{path!r}: the same sha256 is listed with two sizes", sha256=sha)
        media_type = item.get("media_type")
        if media_type is None:
            media_type = guess_media_type(path)
        elif not isinstance(media_type, str) or len(media_type) > MEDIA_TYPE_MAX or _CONTROL.search(media_type):
            raise _bad("validation_failed", f"{path!r}: media_type must be a string of at most {MEDIA_TYPE_MAX}")
        profile = item.get("profile")
        if profile is not None:
            profile = profiles.parse_profile(profile, path)
        files.append(ManifestFile(path, sha, size, media_type, profile))
    return files


# --- access --------------------------------------------------------------------------


def reader_groups(session: Session, dataset: Dataset) -> list[str]:
    return sorted(
        session.scalars(select(DatasetReaderGroup.group_name).where(DatasetReaderGroup.dataset_id == dataset.id))
    )


def sees_every_dataset(principal: Any, role: Role | None) -> bool:
    """Maintainers and owners set the policy, so they always see restricted datasets; so do platform admins."""
    return bool(principal.is_admin) or (role is not None and role >= Role.maintainer)


def can_read(session: Session, dataset: Dataset, principal: Any, role: Role | None) -> bool:
    """The one rule for restricted datasets: readers are the named groups, plus maintainers and up."""
    if not dataset.restricted or sees_every_dataset(principal, role):
        return True
    groups = set(principal.groups)
    return bool(groups) and bool(groups & set(reader_groups(session, dataset)))


def _visible_condition(principal: Any, role: Role | None) -> Any:
    if sees_every_dataset(principal, role):
        return true()
    readable = select(DatasetReaderGroup.dataset_id).where(DatasetReaderGroup.group_name.in_(sorted(principal.groups)))
    return or_(Dataset.restricted.is_(False), Dataset.id.in_(readable))


def dataset_not_found(name: str, denied: bool = False) -> AnimusError:
    err = AnimusError(404, "dataset_not_found", f"Dataset {name!r} not found")
    # the caller sees the same answer either way; the audit trail sees the difference
    err.denied = denied  # type: ignore[attr-defined]
    return err


def find_dataset(session: Session, project: Project, name: str, principal: Any, role: Role | None) -> Dataset:
    """The dataset named `name`, if the caller may read it; 404 otherwise (existence does not leak)."""
    dataset = session.scalar(select(Dataset).where(Dataset.project_id == project.id, Dataset.name == name))
    if dataset is None:
        raise dataset_not_found(name)
    if not can_read(session, dataset, principal, role):
        raise dataset_not_found(name, denied=True)
    return dataset


# --- datasets ---------------------------------------------------------------------


def dataset_json(session: Session, d: Dataset, latest: DatasetVersion | None = None) -> dict[str, Any]:
    return {
        "name": d.name,
        "description": d.description,
        "tags": d.tags or {},
        "owners": d.owners or [],
        "restricted": d.restricted,
        "reader_groups": reader_groups(session, d) if d.restricted else [],
        "latest_version": latest.version if latest is not None else None,
        "latest_digest": latest.digest if latest is not None else None,
        "created_at": iso(d.created_at),
        "created_by": d.created_by,
        "updated_at": iso(d.updated_at),
    }


def latest_version(session: Session, dataset: Dataset) -> DatasetVersion | None:
    return session.scalar(
        select(DatasetVersion)
        .where(DatasetVersion.dataset_id == dataset.id, DatasetVersion.state == "committed")
        .order_by(DatasetVersion.version.desc())
        .limit(1)
    )


def list_datasets(
    session: Session, project: Project, principal: Any, role: Role | None, limit: int, cursor: str | None
) -> tuple[list[Dataset], str | None]:
    stmt = select(Dataset).where(Dataset.project_id == project.id, _visible_condition(principal, role))
    return page(session, stmt, Dataset.id, limit, cursor)


def create_dataset(
    session: Session,
    project: Project,
    by: str,
    name: str,
    description: str = "",
    tags: dict[str, str] | None = None,
    owners: list[str] | None = None,
) -> Dataset:
    exists = session.scalar(select(Dataset.id).where(Dataset.project_id == project.id, Dataset.name == name))
    if exists is not None:
        raise AnimusError(409, "dataset_exists", f"Dataset {name!r} already exists in project {project.slug!r}")
    now = utcnow()
    dataset = Dataset(
        project_id=project.id,
        name=name,
        description=description,
        tags=dict(tags or {}),
        owners=list(owners) if owners is not None else [by],
        restricted=False,
        created_at=now,
        created_by=by,
        updated_at=now,
    )
    session.add(dataset)
    session.flush()
    return dataset


def update_dataset(
    dataset: Dataset,
    description: str | None = None,
    tags: dict[str, str] | None = None,
    owners: list[str] | None = None,
) -> dict[str, Any]:
    """Change the mutable metadata; returns what changed (for the audit trail)."""
    changes: dict[str, Any] = {}
    if description is not None and description != dataset.description:
        changes["description"] = True
        dataset.description = description
    if tags is not None and tags != dataset.tags:
        changes["tags"] = {"from": dataset.tags, "to": tags}
        dataset.tags = dict(tags)
    if owners is not None and owners != dataset.owners:
        changes["owners"] = {"from": dataset.owners, "to": owners}
        dataset.owners = list(owners)
    if changes:
        dataset.updated_at = utcnow()
    return changes


def set_reader_groups(session: Session, dataset: Dataset, groups: Sequence[str]) -> dict[str, Any]:
    """Restrict the dataset to `groups` (an empty list lifts the restriction)."""
    before = reader_groups(session, dataset)
    wanted = sorted(set(groups))
    session.execute(delete(DatasetReaderGroup).where(DatasetReaderGroup.dataset_id == dataset.id))
    if wanted:
        session.execute(insert(DatasetReaderGroup), [{"dataset_id": dataset.id, "group_name": g} for g in wanted])
    dataset.restricted = bool(wanted)
    dataset.updated_at = utcnow()
    return {"from": before, "to": wanted}


# --- versions ----------------------------------------------------------------------


def version_json(v: DatasetVersion, dataset: Dataset, consumers: list[str] | None = None) -> dict[str, Any]:
    body = {
        "dataset": dataset.name,
        "version": v.version,
        "digest": v.digest,
        "state": v.state,
        "file_count": v.file_count,
        "total_size": v.total_size,
        "message": v.message,
        "source_type": v.source_type,
        "source": {"name": v.source_name, "uri": v.source_uri} if v.source_name else None,
        "produced_by_run_id": v.produced_by_run_id,
        "created_at": iso(v.created_at),
        "created_by": v.created_by,
        "committed_at": iso(v.committed_at),
        "committed_by": v.committed_by,
    }
    if consumers is not None:
        body["consumed_by_runs"] = consumers
    return body


def parse_version_ref(ref: str) -> int | None:
    """A version number, or None for "latest"."""
    if ref == "latest":
        return None
    if not ref.isdigit() or len(ref) > 9 or int(ref) < 1:
        raise AnimusError(400, "invalid_argument", "A version is a positive integer or 'latest'", {"version": ref[:20]})
    return int(ref)


def find_version(session: Session, dataset: Dataset, ref: str) -> DatasetVersion:
    number = parse_version_ref(ref)
    version = (
        latest_version(session, dataset)
        if number is None
        else session.scalar(
            select(DatasetVersion).where(
                DatasetVersion.dataset_id == dataset.id,
                DatasetVersion.version == number,
                DatasetVersion.state == "committed",
            )
        )
    )
    if version is None:
        raise AnimusError(
            404, "dataset_version_not_found", f"Dataset {dataset.name!r} has no version {ref!r}", {"version": ref[:20]}
        )
    return version


def list_versions(
    session: Session, dataset: Dataset, limit: int, cursor: str | None
) -> tuple[list[DatasetVersion], str | None]:
    stmt = select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id, DatasetVersion.state == "committed")
    return page(session, stmt, DatasetVersion.id, limit, cursor)


def consumers(session: Session, version: DatasetVersion, limit: int = 100) -> list[str]:
    """Runs that recorded this version as an input (lineage; filled by the Runs work)."""
    return list(
        session.scalars(
            select(RunInput.run_id).where(RunInput.dataset_version_id == version.id).distinct().limit(limit)
        )
    )


def list_files(
    session: Session, version: DatasetVersion, limit: int, cursor: str | None, prefix: str | None = None
) -> tuple[list[DatasetFile], str | None]:
    stmt = select(DatasetFile).where(DatasetFile.version_id == version.id)
    if prefix:
        stmt = stmt.where(DatasetFile.path.startswith(prefix, autoescape=True))
    return page(session, stmt, DatasetFile.id, limit, cursor)


def find_file(session: Session, version: DatasetVersion, path: str) -> DatasetFile:
    f = session.scalar(select(DatasetFile).where(DatasetFile.version_id == version.id, DatasetFile.path == path))
    if f is None:
        raise AnimusError(404, "file_not_found", f"Version {version.version} has no file {path[:200]!r}")
    return f


def file_json(f: DatasetFile) -> dict[str, Any]:
    """A manifest entry; ``sha256`` is null for a reference to an external object (read it to know)."""
    body: dict[str, Any] = {"path": f.path, "sha256": f.sha256 or None, "size": f.size, "media_type": f.media_type}
    if f.source_key is not None:
        body["source"] = {"key": f.source_key, "etag": f.source_etag, "version_id": f.source_version_id}
    return body


def file_download(store: ObjectStore, project_id: int, f: DatasetFile, expires: int, local: bool) -> dict[str, Any]:
    """A file with a presigned GET URL, and its direct path on this machine when asked and available."""
    key = blob_key(project_id, f.sha256)
    body = {**file_json(f), "url": store.presign_get(key, expires, filename=f.path.rsplit("/", 1)[-1])}
    if local:
        path = store.local_path(key)
        if path is not None:
            body["local_path"] = str(path)
    return body


#: checks that a version is still referenced: each returns human-readable references.
#: The Models and retention work append theirs here.
ReferenceCheck = Callable[[Session, DatasetVersion], list[str]]


def _run_inputs(session: Session, version: DatasetVersion) -> list[str]:
    return [f"run {r}" for r in consumers(session, version, limit=20)]


REFERENCE_CHECKS: list[ReferenceCheck] = [_run_inputs]


def version_references(session: Session, version: DatasetVersion) -> list[str]:
    return [ref for check in REFERENCE_CHECKS for ref in check(session, version)]


def delete_version(session: Session, version: DatasetVersion, by: str) -> None:
    """Mark a committed version deleted (its number is never reused); refused while referenced."""
    refs = version_references(session, version)
    if refs:
        raise AnimusError(
            409,
            "version_in_use",
            f"Version {version.version} is referenced ({', '.join(refs[:5])}); it cannot be deleted",
            {"references": refs},
        )
    version.state = "deleted"
    version.deleted_at = utcnow()
    version.deleted_by = by


def version_for_input(session: Session, project_id: int, name: str, digest: str) -> int | None:
    """The committed version a run input names (dataset name + manifest digest), to link lineage."""
    if not digest.startswith("sha256:"):
        return None
    return session.scalar(
        select(DatasetVersion.id)
        .join(Dataset, DatasetVersion.dataset_id == Dataset.id)
        .where(
            Dataset.project_id == project_id,
            Dataset.name == name,
            DatasetVersion.digest == digest,
            DatasetVersion.state == "committed",
        )
        .order_by(DatasetVersion.version.desc())
        .limit(1)
    )


# --- uploads (the push protocol) ---------------------------------------------------------


def upload_json(session: Session, upload: DatasetVersion, dataset: Dataset) -> dict[str, Any]:
    count, total = session.execute(
        select(func.count(DatasetFile.id), func.coalesce(func.sum(DatasetFile.size), 0)).where(
            DatasetFile.version_id == upload.id
        )
    ).one()
    return {
        "id": upload.upload_id,
        "dataset": dataset.name,
        "state": upload.state,
        "version": upload.version,
        "file_count": int(count),
        "total_size": int(total),
        "message": upload.message,
        "created_at": iso(upload.created_at),
        "created_by": upload.created_by,
    }


def create_upload(
    session: Session, project: Project, dataset: Dataset, by: str, message: str = "", run_id: str | None = None
) -> DatasetVersion:
    if run_id is not None:
        run = session.get(Run, run_id)
        if run is None or run.project_id != project.id:
            raise AnimusError(404, "run_not_found", f"Run {run_id!r} not found")
    upload = DatasetVersion(
        dataset_id=dataset.id,
        state="pending",
        message=message,
        produced_by_run_id=run_id,
        created_at=utcnow(),
        created_by=by,
    )
    session.add(upload)
    session.flush()
    return upload


def find_upload(
    session: Session, dataset: Dataset, upload_id: str, principal: Any, role: Role | None
) -> DatasetVersion:
    """A pending upload of `dataset`, visible to who started it (and maintainers and up)."""
    upload = session.scalar(
        select(DatasetVersion).where(DatasetVersion.dataset_id == dataset.id, DatasetVersion.upload_id == upload_id)
    )
    if upload is None or not (upload.created_by == principal.name or sees_every_dataset(principal, role)):
        raise AnimusError(404, "upload_not_found", f"Upload {upload_id[:64]!r} not found")
    if upload.state != "pending":
        raise AnimusError(
            409,
            "upload_committed",
            f"Upload {upload_id!r} was already committed as version {upload.version}",
            {"version": upload.version},
        )
    return upload


def add_files(session: Session, upload: DatasetVersion, files: Sequence[ManifestFile]) -> int:
    """Add a batch of manifest entries to a pending upload; paths must be new to it."""
    existing_count = session.scalar(select(func.count(DatasetFile.id)).where(DatasetFile.version_id == upload.id)) or 0
    if existing_count + len(files) > MAX_FILES_PER_VERSION:
        raise AnimusError(
            413,
            "too_many_files",
            f"A dataset version holds at most {MAX_FILES_PER_VERSION} files",
            {"limit": MAX_FILES_PER_VERSION},
        )
    # the unique (version_id, path) index finds duplicates; per-batch lookups would cost a
    # scan of the upload each on a table whose statistics lag behind a large push
    try:
        session.execute(
            insert(DatasetFile),
            [
                {
                    "version_id": upload.id,
                    "path": f.path,
                    "sha256": f.sha256,
                    "size": f.size,
                    "media_type": f.media_type,
                }
                for f in files
            ],
        )
        profiles.insert_profiles(session, upload.id, files)
    except IntegrityError:
        session.rollback()
        dup = _first_existing_path(session, upload.id, [f.path for f in files])
        raise _bad(
            "duplicate_path",
            f"Path {dup!r} is already in this upload" if dup else "A path of this batch is already in this upload",
            path=dup,
        ) from None
    return len(files)


def _first_existing_path(session: Session, version_id: int, paths: Sequence[str]) -> str | None:
    for chunk in chunks(paths):
        found = session.scalar(
            select(DatasetFile.path).where(DatasetFile.version_id == version_id, DatasetFile.path.in_(chunk)).limit(1)
        )
        if found is not None:
            return found
    return None


def _known_blobs(session: Session, project_id: int, shas: Sequence[str]) -> dict[str, int]:
    """Blobs (sha256 → size) that committed versions of this project already reference.

    Committed blobs are verified at their commit and kept while referenced, so
    they need no HEAD request again.
    """
    known: dict[str, int] = {}
    for chunk in chunks(list(shas)):
        rows = session.execute(
            select(DatasetFile.sha256, DatasetFile.size)
            .join(DatasetVersion, DatasetFile.version_id == DatasetVersion.id)
            .join(Dataset, DatasetVersion.dataset_id == Dataset.id)
            .where(
                Dataset.project_id == project_id,
                DatasetVersion.state == "committed",
                DatasetFile.sha256.in_(chunk),
            )
            .distinct()
        )
        known.update({sha: size for sha, size in rows})
    return known


async def _absent(store: ObjectStore, project_id: int, blobs: dict[str, int]) -> tuple[list[str], list[str]]:
    """(missing, wrong_size) among `blobs` (sha256 → expected size), with bounded concurrent HEADs."""
    shas = list(blobs)
    infos = await store.head_many([blob_key(project_id, sha) for sha in shas], HEAD_CONCURRENCY)
    missing, wrong = [], []
    for sha, info in zip(shas, infos, strict=True):
        if info is None:
            missing.append(sha)
        elif info.size != blobs[sha]:
            wrong.append(sha)
    return sorted(missing), sorted(wrong)


def _decode_sha_cursor(cursor: str | None) -> str:
    if not cursor:
        return ""
    if not SHA256_RE.match(cursor):
        raise AnimusError(400, "invalid_cursor", "The cursor is not one this API issued")
    return cursor


async def missing_blobs(
    session: Session,
    store: ObjectStore,
    project_id: int,
    upload: DatasetVersion,
    limit: int,
    cursor: str | None,
    expires: int,
    local: bool = False,
    batch: bool = False,
) -> dict[str, Any]:
    """One page of the upload's blobs (ordered by sha256) with presigned uploads for those not in storage.

    `local` and `batch`: see ``blobs.upload_plan``; batch uploads are listed apart
    (``batches``), so a client that does not ask for them sees the same page as before.
    """
    after = _decode_sha_cursor(cursor)
    rows = session.execute(
        select(DatasetFile.sha256, func.max(DatasetFile.size))
        .where(DatasetFile.version_id == upload.id, DatasetFile.sha256 > after)
        .group_by(DatasetFile.sha256)
        .order_by(DatasetFile.sha256)
        .limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    blobs = {sha: int(size) for sha, size in rows}
    known = _known_blobs(session, project_id, list(blobs))
    unknown = {sha: size for sha, size in blobs.items() if sha not in known}
    missing, wrong = await _absent(store, project_id, unknown)
    uploads, batches = upload_plan(store, project_id, {sha: blobs[sha] for sha in missing}, expires, local, batch)
    return {
        "items": uploads,
        "batches": batches,
        "present": len(blobs) - len(missing) - len(wrong),
        "wrong_size": wrong,
        "expires_in": expires,
        "next_cursor": rows[-1][0] if more and rows else None,
    }


async def commit_upload(
    session: Session, store: ObjectStore, project: Project, dataset: Dataset, upload: DatasetVersion, by: str
) -> DatasetVersion:
    """Verify every blob, then number the version and record its digest and event (one transaction)."""
    entries = session.execute(
        select(DatasetFile.path, DatasetFile.sha256, DatasetFile.size).where(DatasetFile.version_id == upload.id)
    ).all()
    if not entries:
        raise _bad("empty_dataset", "The upload has no files; a dataset version holds at least one file")
    unhashed = sorted(p for p, sha, _ in entries if not sha)
    if unhashed:
        # a snapshot of an external source whose client has not copied every object yet
        raise AnimusError(
            409,
            "snapshot_incomplete",
            f"{len(unhashed)} file(s) of this snapshot have not been copied yet (no sha256 given); "
            "copy them (the import resumes), then commit again",
            {"missing_count": len(unhashed), "paths": unhashed[:100]},
        )
    blobs: dict[str, int] = {}
    for _, sha, size in entries:
        if blobs.setdefault(sha, size) != size:
            raise _bad("size_mismatch", "The same sha256 is listed with two sizes in this upload", sha256=sha)
    known = _known_blobs(session, project.id, list(blobs))
    wrong = sorted(sha for sha, size in known.items() if blobs[sha] != size)
    missing, wrong_stored = await _absent(store, project.id, {s: n for s, n in blobs.items() if s not in known})
    wrong += wrong_stored
    if missing or wrong:
        raise AnimusError(
            409,
            "blobs_missing",
            f"{len(missing)} blob(s) are not uploaded and {len(wrong)} have another size than the manifest says; "
            "upload the missing ones (the push resumes), then commit again",
            {"missing": missing[:100], "wrong_size": wrong[:100], "missing_count": len(missing)},
        )
    digest = manifest_digest((p, s, n) for p, s, n in entries)
    return number_version(session, project, dataset, upload, by, digest, len(entries), sum(n for _, _, n in entries))


def number_version(
    session: Session,
    project: Project,
    dataset: Dataset,
    upload: DatasetVersion,
    by: str,
    digest: str,
    file_count: int,
    total_size: int,
) -> DatasetVersion:
    """Give a verified pending version the next number, its digest and its event (same transaction)."""
    # one writer numbers versions of a dataset at a time (SQLite serialises writers anyway)
    session.execute(select(Dataset.id).where(Dataset.id == dataset.id).with_for_update())
    last = session.scalar(select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_id == dataset.id))
    upload.version = (last or 0) + 1
    upload.state = "committed"
    upload.digest = digest
    upload.file_count = file_count
    upload.total_size = total_size
    upload.committed_at = utcnow()
    upload.committed_by = by
    session.flush()
    record_event(
        session,
        "DatasetVersionCreated",
        {
            "dataset": dataset.name,
            "version": upload.version,
            "digest": digest,
            "file_count": upload.file_count,
            "total_size": upload.total_size,
            "produced_by_run_id": upload.produced_by_run_id,
            "source_type": upload.source_type,
            "source_uri": upload.source_uri,
            "user": by,
        },
        project,
    )
    return upload


def abandon_upload(session: Session, upload: DatasetVersion) -> None:
    """Forget a pending upload and its manifest rows (blobs stay: they may be shared)."""
    session.execute(delete(DatasetFileProfile).where(DatasetFileProfile.version_id == upload.id))
    session.execute(delete(DatasetFile).where(DatasetFile.version_id == upload.id))
    session.delete(upload)


def purge_stale_uploads(session: Session, older_than: dt.timedelta) -> int:
    """Delete pending uploads started longer ago than `older_than` (for the scheduler's retention job)."""
    cutoff = utcnow() - older_than
    ids = list(
        session.scalars(
            select(DatasetVersion.id).where(DatasetVersion.state == "pending", DatasetVersion.created_at < cutoff)
        )
    )
    for chunk in chunks(ids):
        session.execute(delete(DatasetFileProfile).where(DatasetFileProfile.version_id.in_(chunk)))
        session.execute(delete(DatasetFile).where(DatasetFile.version_id.in_(chunk)))
        session.execute(delete(DatasetVersion).where(DatasetVersion.id.in_(chunk)))
    return len(ids)
