"""The leak scanner: secret values used by the tests must appear in no database, API response or log.

- ``register(value)``: a test declares a value that must never be echoed (secret-store
  values, webhook secrets after creation, ...). Tokens issued once are returned once by
  design: do not register those.
- Every HTTP response the test process receives through ``requests`` (HubStack.api, the
  SDK's Client, the hub's API) is appended to ``<basetemp>/leakscan/responses.log``.
- Before a throwaway PostgreSQL database is dropped, every table is dumped as text to
  ``<basetemp>/leakscan/pg-<name>.txt`` (``pgdb.BEFORE_DROP``); SQLite files, stack logs
  and runner working directories stay under the basetemp.
- At the end of the session ``scan()`` greps everything under the basetemp for each
  registered value in its plain, base64 and percent-encoded forms; a hit fails the run.
"""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path
from urllib.parse import quote, quote_plus

import psycopg

MAX_FILE_BYTES = 64 * 1024 * 1024
_values: set[str] = set()
_lock = threading.Lock()
_dir: Path | None = None
_exempt = threading.local()


def register(value: str) -> str:
    """Declare `value` a secret of the tests (returned, for convenience)."""
    assert len(value) >= 8, "register values long enough not to match by chance"
    _values.add(value)
    return value


def values() -> set[str]:
    return set(_values)


def forms(value: str) -> set[bytes]:
    raw = value.encode()
    out = {raw, quote(value, safe="").encode(), quote_plus(value).encode()}
    for enc in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        out.add(enc)
        out.add(enc.rstrip(b"="))
    return out


class unrecorded:
    """Responses received inside this block are not recorded: a test reading a secret store directly
    (to check what it holds) is not an API echoing a value."""

    def __enter__(self) -> None:
        _exempt.on = True

    def __exit__(self, *exc) -> None:
        _exempt.on = False


def set_dir(path: Path) -> None:
    global _dir
    _dir = path
    path.mkdir(parents=True, exist_ok=True)


def record_response(method: str, url: str, status: int, body: bytes) -> None:
    if _dir is None or getattr(_exempt, "on", False):
        return
    with _lock, open(_dir / "responses.log", "ab") as f:
        f.write(f"\n=== {status} {method} {url}\n".encode())
        f.write(body)


def dump_pg(dsn_admin: str, name: str) -> None:
    """Every table of database `name` as text, before it is dropped."""
    if _dir is None:
        return
    dsn = dsn_admin.rsplit("/", 1)[0] + "/" + name
    try:
        with psycopg.connect(dsn) as conn, open(_dir / f"pg-{name}.txt", "w") as out:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
                ).fetchall()
            ]
            for t in tables:
                out.write(f"=== {t}\n")
                for row in conn.execute(f'SELECT * FROM "{t}"'):  # noqa: S608 (names from the catalogue)
                    out.write(repr(row) + "\n")
    except psycopg.Error as e:
        (_dir / f"pg-{name}.error").write_text(str(e))


def scan(root: Path, secrets: set[str] | None = None) -> list[str]:
    """Files under `root` holding any form of any of `secrets`: 'path: secret #n (form)'."""
    secrets = values() if secrets is None else secrets
    needles = [(i, f) for i, v in enumerate(sorted(secrets)) for f in forms(v)]
    hits = []
    if not needles:
        return hits
    for dirpath, _dirs, files in os.walk(root, followlinks=False):
        for fname in files:
            path = Path(dirpath) / fname
            try:
                if path.is_symlink() or path.stat().st_size > MAX_FILE_BYTES:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            for i, needle in needles:
                if needle in data:
                    hits.append(f"{path}: registered secret #{i} ({'plain' if needle.isascii() else 'encoded'})")
                    break
    return hits
