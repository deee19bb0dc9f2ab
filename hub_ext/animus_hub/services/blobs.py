"""The project blob space shared by datasets and run artifacts.

Every file's bytes live once per project under their sha256, so a dataset version
and an artifact with the same content share one object, and a new dataset version
that changes one file uploads one file.
"""

from __future__ import annotations

from typing import Any

from ..storage.base import ObjectStore

#: blobs up to this size go into batch uploads, where the store offers them
BATCH_BLOB_MAX = 4 * 1024 * 1024
#: bytes and blobs per batch: big enough that per-request costs vanish, small enough
#: that a page of blobs still spreads over the client's parallel uploads
BATCH_BYTES = 16 * 1024 * 1024
BATCH_BLOBS = 1000
#: fewer small blobs than this in a page are sent one by one: a batch of one saves nothing
BATCH_MIN = 2


def blob_key(project_id: int, sha256: str) -> str:
    """Where a blob lives: once per project under its digest (hex, lowercase)."""
    return f"projects/{project_id}/blobs/sha256/{sha256[:2]}/{sha256}"


def upload_plan(
    store: ObjectStore, project_id: int, missing: dict[str, int], expires: int, local: bool, batch: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Presigned uploads for `missing` blobs (sha256 → size): (single PUTs, batch uploads).

    With `batch` and a store that supports it, blobs of at most BATCH_BLOB_MAX bytes
    are grouped into batch uploads (one request for many small files); the rest,
    and everything on other stores, get one presigned PUT each. `local` asks for
    URLs a client on this machine reaches directly (``ObjectStore.presign_put``).
    """
    singles: list[dict[str, Any]] = []
    groups: list[list[tuple[str, int]]] = []
    group_bytes = 0
    small = sum(1 for size in missing.values() if size <= BATCH_BLOB_MAX)
    batch = batch and store.supports_batch_upload and small >= BATCH_MIN
    for sha, size in sorted(missing.items()):
        if batch and size <= BATCH_BLOB_MAX:
            if not groups or len(groups[-1]) >= BATCH_BLOBS or group_bytes + size > BATCH_BYTES:
                groups.append([])
                group_bytes = 0
            groups[-1].append((sha, size))
            group_bytes += size
            continue
        singles.append(
            {
                "sha256": sha,
                "size": size,
                "url": store.presign_put(
                    blob_key(project_id, sha), expires, content_length=size, sha256=sha, local=local
                ),
                "headers": store.upload_headers(sha),
            }
        )
    batches = []
    for group in groups:
        signed = store.presign_batch([(blob_key(project_id, sha), size, sha) for sha, size in group], expires, local)
        batches.append({**signed, "blobs": [{"sha256": sha, "size": size} for sha, size in group]})
    return singles, batches
