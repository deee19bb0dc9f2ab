"""A local cache of file digests, so that pushing a folder again hashes only what changed.

``animus.datasets.push`` stats every file anyway. A file whose path, device, inode,
size, modification time and change time (all to the nanosecond) are those it had
when it was last hashed gets its sha256 (and its tabular profile) from here instead
of being read again, as DVC's state database and git's index do.

Any doubt means a re-hash:

- an entry is only trusted if the file's mtime and ctime were both older than the
  moment its hash was taken by more than ``RACY_SECONDS``: a write in the same
  timestamp tick as the hashing could leave mtime unchanged (git's "racily clean"
  files), so such a file is hashed again next time;
- ctime cannot be set by tools such as ``touch -d`` or ``rsync -t``, and changes with
  every write, rename or chmod; a replaced file (editors' save-by-rename) has a new
  inode;
- an entry is written only if the file's stat is the same after hashing as before;
- a cache that cannot be opened or read (locked, corrupt, another schema, a
  read-only home) is ignored with a warning and the push hashes everything.

Nothing here is trusted by the server: the object store verifies the sha256 of
every uploaded byte, so a wrong cache entry can only make a push fail, never store
wrong content. The cache is a SQLite file (mode 0600: it lists file paths) at
``$ANIMUS_CACHE_DIR/hashes.sqlite``, by default in the user's cache directory;
``push(..., cache=False)`` / ``animus datasets push --no-cache`` bypass it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

SCHEMA_VERSION = 1
#: how much older than its hashing a file's mtime and ctime must be for the entry to count
RACY_SECONDS = 2.0
_IN_CHUNK = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    hashed_at_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    -- the tabular profile as JSON; profiler is the profile format it was made with, or
    -- NULL when the file was hashed without profiling
    profile TEXT,
    profiler TEXT
)
"""


def default_path() -> Path:
    base = os.environ.get("ANIMUS_CACHE_DIR") or platformdirs.user_cache_dir("animus")
    return Path(base) / "hashes.sqlite"


def stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True)
class Cached:
    sha256: str
    #: the profile, when the file was profiled with the current profile format
    profile: dict[str, Any] | None
    profiled: bool


class HashCache:
    """Digests of files by (path, device, inode, size, mtime, ctime); see the module docstring."""

    def __init__(self, path: Path | None = None, profiler: str = "") -> None:
        self.path = Path(path) if path else default_path()
        self.profiler = profiler
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection | None:
        if self._db is not None:
            return self._db
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                db.execute("DROP TABLE IF EXISTS files")
                db.execute(_SCHEMA)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
        except (OSError, sqlite3.Error) as e:
            self._warn(e)
            return None
        self._db = db
        return db

    def _warn(self, error: Exception) -> None:
        print(f"animus: the hash cache {self.path} is not usable ({error}); hashing every file", file=sys.stderr)

    def lookup(
        self, files: Iterable[tuple[str, os.stat_result]], want_profile: Iterable[str] = ()
    ) -> dict[str, Cached]:
        """Entries still valid for these (absolute path, stat) pairs.

        A path in `want_profile` (a tabular file to be profiled) only counts if its
        entry has a profile made with the current profile format.
        """
        stats = dict(files)
        needs_profile = set(want_profile)
        db = self._connect()
        if db is None or not stats:
            return {}
        found: dict[str, Cached] = {}
        paths = list(stats)
        try:
            for i in range(0, len(paths), _IN_CHUNK):
                chunk = paths[i : i + _IN_CHUNK]
                rows = db.execute(
                    "SELECT path, dev, ino, size, mtime_ns, ctime_ns, hashed_at_ns, sha256, profile, profiler "
                    f"FROM files WHERE path IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                for path, dev, ino, size, mtime_ns, ctime_ns, hashed_at_ns, sha, profile, profiler in rows:
                    st = stats[path]
                    if stat_key(st) != (dev, ino, size, mtime_ns, ctime_ns):
                        continue
                    racy = hashed_at_ns - int(RACY_SECONDS * 1e9)
                    if not (mtime_ns < racy and ctime_ns < racy):
                        continue
                    profiled = profiler == self.profiler
                    if path in needs_profile and not profiled:
                        continue
                    prof = json.loads(profile) if profiled and profile else None
                    found[path] = Cached(sha, prof, profiled)
        except (sqlite3.Error, ValueError) as e:
            self._warn(e)
            return {}
        return found

    def store(self, entries: Iterable[tuple[str, os.stat_result, int, str, dict[str, Any] | None, bool]]) -> None:
        """Record (absolute path, stat before hashing, hashed_at_ns, sha256, profile, profiled) rows.

        A file whose stat changed while it was hashed is left out (and any old entry
        for it dropped): its digest may not be the digest of what is there now.
        """
        db = self._connect()
        if db is None:
            return
        rows, stale = [], []
        for path, st, hashed_at_ns, sha, profile, profiled in entries:
            try:
                now = os.stat(path)
            except OSError:
                now = None
            if now is None or stat_key(now) != stat_key(st):
                stale.append((path,))
                continue
            rows.append(
                (
                    path,
                    *stat_key(st),
                    hashed_at_ns,
                    sha,
                    json.dumps(profile) if profile is not None else None,
                    self.profiler if profiled else None,
                )
            )
        try:
            with db:
                db.execute("BEGIN")
                db.executemany("DELETE FROM files WHERE path = ?", stale)
                db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        except sqlite3.Error as e:
            self._warn(e)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def now_ns() -> int:
    return time.time_ns()
