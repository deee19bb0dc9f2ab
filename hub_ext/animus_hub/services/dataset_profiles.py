"""Schema and statistics of tabular dataset files, and schema diffs between versions.

Bytes never reach animus-api, so the pushing client profiles its CSV, JSON lines and
Parquet files (``animus.profiling``) and sends each profile inside its manifest
entry (``{path, sha256, size, profile}``). The server checks the shape and size of
each profile (``parse_profile``) and stores it in ``dataset_file_profile`` with the
manifest rows of the pending upload: it becomes visible with the version and is
frozen with it (insert-only triggers of migration 0004). The statistics are the
client's claims about the bytes, bound to the file's sha256; the server does not
recompute them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from sqlalchemy import and_, func, insert, or_, select
from sqlalchemy.orm import Session, aliased

from ..errors import AnimusError
from ..orm import Dataset, DatasetFile, DatasetFileProfile, DatasetVersion
from ..schemas import Strict
from .projects import iso

#: serialized size of one profile
MAX_PROFILE_BYTES = 256 * 1024
MAX_COLUMNS = 1000
NAME_MAX = 256
STRING_STAT_MAX = 256
BAD_ROW_SAMPLES = 20
#: entries per list in a diff (counts are always complete)
DIFF_LIST_MAX = 1000
FORMATS = ("csv", "tsv", "jsonl", "parquet")

Stat = Annotated[str, Field(max_length=STRING_STAT_MAX)] | int | float | bool | None


class ColumnProfile(Strict):
    name: str = Field(min_length=1, max_length=NAME_MAX)
    type: str = Field(pattern=r"^[A-Za-z][\x20-\x7e]{0,63}$", description="printable ASCII, at most 64")
    nulls: int = Field(ge=0)
    min: Stat = None
    max: Stat = None
    mean: float | int | None = None
    distinct: int = Field(ge=0)

    @field_validator("mean", "min", "max")
    @classmethod
    def _finite(cls, v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


class BadRow(Strict):
    line: int = Field(ge=0)
    reason: str = Field(max_length=200)


class FileProfile(Strict):
    profile_version: Literal[1] = 1
    format: Literal["csv", "tsv", "jsonl", "parquet"]
    rows: int = Field(ge=0)
    bad_rows: int = Field(default=0, ge=0)
    bad_row_samples: list[BadRow] = Field(default_factory=list, max_length=BAD_ROW_SAMPLES)
    columns_truncated: bool = False
    distinct_error: float = Field(default=0.0, ge=0, le=1)
    columns: list[ColumnProfile] = Field(max_length=MAX_COLUMNS)

    @field_validator("columns")
    @classmethod
    def _unique_names(cls, cols: list[ColumnProfile]) -> list[ColumnProfile]:
        seen: set[str] = set()
        for c in cols:
            if c.name in seen:
                raise ValueError(f"column {c.name[:100]!r} is listed twice")
            seen.add(c.name)
        return cols


def parse_profile(raw: Any, path: str) -> dict[str, Any]:
    """A profile checked for shape and size, as it will be stored; 413/422 otherwise."""
    size = len(json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > MAX_PROFILE_BYTES:
        raise AnimusError(
            413,
            "profile_too_large",
            f"{path[:200]!r}: the profile is {size} bytes; at most {MAX_PROFILE_BYTES}",
            {"path": path[:200], "limit": MAX_PROFILE_BYTES},
        )
    if not isinstance(raw, dict):
        raise AnimusError(422, "invalid_profile", f"{path[:200]!r}: a profile is a JSON object", {"path": path[:200]})
    try:
        profile = FileProfile.model_validate(raw)
    except ValidationError as e:
        err = e.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(p) for p in err["loc"]) or "(profile)"
        raise AnimusError(
            422,
            "invalid_profile",
            f"{path[:200]!r}: profile.{field}: {err['msg']}",
            {"path": path[:200], "field": field},
        ) from None
    for c in profile.columns:
        if c.nulls > profile.rows:
            raise AnimusError(
                422,
                "invalid_profile",
                f"{path[:200]!r}: column {c.name[:100]!r} has more nulls than the file has rows",
                {"path": path[:200]},
            )
    return profile.model_dump()


def profile_rows(version_id: int, entries: Iterable[Any]) -> list[dict[str, Any]]:
    """Rows of ``dataset_file_profile`` for the manifest entries that carry a profile."""
    return [
        {
            "version_id": version_id,
            "path": f.path,
            "sha256": f.sha256,
            "format": f.profile["format"],
            "row_count": f.profile["rows"],
            "profile": f.profile,
        }
        for f in entries
        if getattr(f, "profile", None) is not None
    ]


def insert_profiles(session: Session, version_id: int, entries: Sequence[Any]) -> int:
    rows = profile_rows(version_id, entries)
    if rows:
        session.execute(insert(DatasetFileProfile), rows)
    return len(rows)


# --- reading ---------------------------------------------------------------------------


def _profile_json(p: DatasetFileProfile) -> dict[str, Any]:
    return {"path": p.path, "sha256": p.sha256, **p.profile}


def version_schema(
    session: Session, version: DatasetVersion, limit: int, cursor: str | None, path: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    from .pagination import page

    stmt = select(DatasetFileProfile).where(DatasetFileProfile.version_id == version.id)
    if path:
        stmt = stmt.where(DatasetFileProfile.path == path)
    rows, next_cursor = page(session, stmt, DatasetFileProfile.id, limit, cursor)
    return [_profile_json(p) for p in rows], next_cursor


def _columns(profile: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["type"] for c in profile.get("columns", [])}


def table_diff(path: str, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    ca, cb = _columns(a), _columns(b)
    return {
        "path": path,
        "format": {"from": a.get("format"), "to": b.get("format")},
        "rows": {"from": a.get("rows"), "to": b.get("rows"), "change": b.get("rows", 0) - a.get("rows", 0)},
        "columns_added": [{"name": n, "type": t} for n, t in cb.items() if n not in ca],
        "columns_removed": [{"name": n, "type": t} for n, t in ca.items() if n not in cb],
        "type_changes": [{"name": n, "from": ca[n], "to": t} for n, t in cb.items() if n in ca and ca[n] != t],
    }


def diff_versions(session: Session, dataset: Dataset, a: DatasetVersion, b: DatasetVersion) -> dict[str, Any]:
    """Files added, removed and changed (by sha256) from `a` to `b`; schema changes of tabular files in both."""
    fa, fb = aliased(DatasetFile), aliased(DatasetFile)

    def only_in(x: DatasetVersion, y: DatasetVersion) -> tuple[list[dict[str, Any]], int]:
        fx, fy = aliased(DatasetFile), aliased(DatasetFile)
        cond = and_(fy.version_id == y.id, fy.path == fx.path)
        base = select(fx).outerjoin(fy, cond).where(fx.version_id == x.id, fy.id.is_(None))
        count = session.scalar(select(func.count()).select_from(base.subquery())) or 0
        rows = session.scalars(base.order_by(fx.path).limit(DIFF_LIST_MAX)).all()
        return [{"path": f.path, "sha256": f.sha256, "size": f.size} for f in rows], int(count)

    added, added_count = only_in(b, a)
    removed, removed_count = only_in(a, b)
    both = (
        select(fa.path, fa.sha256, fb.sha256, fa.size, fb.size)
        .join(fb, and_(fb.version_id == b.id, fb.path == fa.path))
        .where(fa.version_id == a.id)
    )
    # references to external objects have no sha256 (""): the pinned object decides
    changed_q = both.where(
        or_(
            fa.sha256 != fb.sha256,
            and_(
                fa.sha256 == "",
                or_(
                    fa.source_key.is_distinct_from(fb.source_key),
                    fa.source_etag.is_distinct_from(fb.source_etag),
                    fa.source_version_id.is_distinct_from(fb.source_version_id),
                ),
            ),
        )
    )
    changed_count = session.scalar(select(func.count()).select_from(changed_q.subquery())) or 0
    common_count = session.scalar(select(func.count()).select_from(both.subquery())) or 0
    changed = [
        {"path": p, "from_sha256": sa_, "to_sha256": sb, "from_size": na, "to_size": nb}
        for p, sa_, sb, na, nb in session.execute(changed_q.order_by(fa.path).limit(DIFF_LIST_MAX))
    ]
    # tabular files changed between the versions and profiled in both (same sha256 → same schema)
    pa, pb = aliased(DatasetFileProfile), aliased(DatasetFileProfile)
    tables = [
        table_diff(p, x, y)
        for p, x, y in session.execute(
            select(pa.path, pa.profile, pb.profile)
            .join(pb, and_(pb.version_id == b.id, pb.path == pa.path))
            .where(pa.version_id == a.id, pa.sha256 != pb.sha256)
            .order_by(pa.path)
            .limit(DIFF_LIST_MAX)
        )
    ]

    def ref(v: DatasetVersion) -> dict[str, Any]:
        return {"version": v.version, "digest": v.digest, "committed_at": iso(v.committed_at)}

    return {
        "dataset": dataset.name,
        "from": ref(a),
        "to": ref(b),
        "files": {
            "added": added,
            "removed": removed,
            "changed": changed,
            "added_count": added_count,
            "removed_count": removed_count,
            "changed_count": int(changed_count),
            "unchanged_count": int(common_count) - int(changed_count),
            "truncated": max(added_count, removed_count, int(changed_count)) > DIFF_LIST_MAX,
        },
        "tables": tables,
    }
