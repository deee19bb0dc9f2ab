"""The project blob space shared by datasets and run artifacts.

Every file's bytes live once per project under their sha256, so a dataset version
and an artifact with the same content share one object, and a new dataset version
that changes one file uploads one file.
"""

from __future__ import annotations


def blob_key(project_id: int, sha256: str) -> str:
    """Where a blob lives: once per project under its digest (hex, lowercase)."""
    return f"projects/{project_id}/blobs/sha256/{sha256[:2]}/{sha256}"
