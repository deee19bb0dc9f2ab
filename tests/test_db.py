"""The schema: migrations on both backends, drift, and the revision check at start-up."""

from __future__ import annotations

import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from animus_hub import db as dbmod
from animus_hub.orm import Base


def test_empty_database_gets_the_newest_schema_at_start(fresh_db_url):
    engine = dbmod.make_engine(fresh_db_url)
    dbmod.ensure_schema(engine, fresh_db_url)
    assert dbmod.current_revision(engine) == dbmod.head_revision()
    assert {"project", "project_member", "audit_event", "outbox_event", "token"} <= set(
        inspect(engine).get_table_names()
    )


def test_models_and_migrations_do_not_drift(fresh_db_url):
    dbmod.upgrade(fresh_db_url)
    engine = dbmod.make_engine(fresh_db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"orm.py and the migrations differ; write a migration: {diff}"


def test_downgrade_then_upgrade_round_trips(fresh_db_url):
    dbmod.upgrade(fresh_db_url)
    dbmod.downgrade(fresh_db_url, "base")
    engine = dbmod.make_engine(fresh_db_url)
    assert "project" not in inspect(engine).get_table_names()
    dbmod.upgrade(fresh_db_url)
    assert dbmod.current_revision(engine) == dbmod.head_revision()


def _stamp(url: str, revision: str) -> None:
    engine = dbmod.make_engine(url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})


def test_start_up_refuses_a_database_at_another_revision(fresh_db_url):
    dbmod.upgrade(fresh_db_url)
    _stamp(fresh_db_url, "0000_older")
    with pytest.raises(dbmod.DatabaseRevisionError, match="animus-hub upgrade-db"):
        dbmod.ensure_schema(dbmod.make_engine(fresh_db_url), fresh_db_url)


def test_animus_api_exits_with_a_clear_message_on_a_wrong_revision(fresh_db_url):
    dbmod.upgrade(fresh_db_url)
    _stamp(fresh_db_url, "0000_older")
    proc = subprocess.run(
        [sys.executable, "-m", "animus_hub.app", "--db-url", fresh_db_url, "--config", "/nonexistent.py"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "0000_older" in proc.stderr and "animus-hub upgrade-db" in proc.stderr


def test_start_up_refuses_a_foreign_database(fresh_db_url):
    engine = dbmod.make_engine(fresh_db_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE someone_elses (id integer)"))
    with pytest.raises(dbmod.DatabaseRevisionError, match="no Animus schema revision"):
        dbmod.ensure_schema(engine, fresh_db_url)


def test_upgrade_db_command_migrates_and_reports(fresh_db_url):
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "animus_hub.cli", *args, "--db-url", fresh_db_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    behind = run("db-revision")
    assert behind.returncode == 1 and '"up_to_date": false' in behind.stdout
    done = run("upgrade-db")
    assert done.returncode == 0, done.stderr
    assert dbmod.head_revision() in done.stdout
    assert run("db-revision").returncode == 0
