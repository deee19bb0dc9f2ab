"""Throwaway PostgreSQL databases for tests, on the machine's server (ANIMUS_TEST_PG)."""

from __future__ import annotations

import os
import uuid

import psycopg

PG_ADMIN_DSN = os.environ.get("ANIMUS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
#: called with (admin DSN, database name) before a database is dropped (the leak scanner dumps it)
BEFORE_DROP: list = []


def create_pg_database(admin_dsn: str | None = None, prefix: str = "animus_test") -> tuple[str, str]:
    """A new empty database on the server of `admin_dsn` (default ANIMUS_TEST_PG): (its name, its SQLAlchemy URL)."""
    admin_dsn = admin_dsn or PG_ADMIN_DSN
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return name, f"{base}/{name}"


def drop_pg_database(name: str, admin_dsn: str | None = None) -> None:
    admin_dsn = admin_dsn or PG_ADMIN_DSN
    for hook in BEFORE_DROP:
        hook(admin_dsn, name)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
