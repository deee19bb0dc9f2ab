"""Database engine, sessions and schema revisions.

A fresh, empty database is migrated to the newest revision at start-up; a database
at any other revision than the code's stops start-up with a message naming the
command that upgrades it (``animus-hub upgrade-db``), as JupyterHub does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

ALEMBIC_DIR = Path(__file__).parent / "alembic"


class DatabaseRevisionError(RuntimeError):
    """The database schema is not the one this version of Animus expects."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url` with the settings each backend needs."""
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"check_same_thread": False, "timeout": 10})
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # no ping before each checkout (a round trip per request); connections are recycled
    # before servers or proxies drop them, and a dropped one answers 503 once
    kwargs.setdefault("pool_pre_ping", False)
    kwargs.setdefault("pool_recycle", 1800)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    # '%' would be read as interpolation by configparser
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` to `revision` (the newest by default)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def ensure_schema(engine: Engine, url: str) -> None:
    """Create the schema in an empty database; refuse one at another revision."""
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        return
    if current is None:
        tables = set(inspect(engine).get_table_names())
        if not tables:
            log.info("Empty database: creating the Animus schema at revision %s", head)
            upgrade(url)
            return
        raise DatabaseRevisionError(
            "The database has tables but no Animus schema revision. "
            "Point Animus at an empty database or at one created by Animus."
        )
    raise DatabaseRevisionError(
        f"The database is at schema revision {current}, this Animus needs {head}. "
        "Back the database up, then run `animus-hub upgrade-db` (with the same --db-url) to migrate it."
    )
