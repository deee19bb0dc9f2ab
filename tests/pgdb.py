"""Throwaway PostgreSQL databases for tests, on the machine's server (ANIMUS_TEST_PG)."""

from __future__ import annotations

import os
import uuid

import psycopg

PG_ADMIN_DSN = os.environ.get("ANIMUS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
#: called with (admin DSN, database name) before a database is dropped (the leak scanner dumps it)
BEFORE_DROP: list = []


def create_pg_database() -> tuple[str, str]:
    """A new empty database: (its name, its SQLAlchemy URL)."""
    name = f"animus_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return name, f"{base}/{name}"


def drop_pg_database(name: str) -> None:
    for hook in BEFORE_DROP:
        hook(PG_ADMIN_DSN, name)
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
