"""Raw-SQL tampering with stored audit rows, as an attacker with database access would.

The append-only triggers are switched off for the change and restored afterwards,
so each tamper can be undone and the trail verified intact again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine


@contextmanager
def triggers_disabled(engine: Engine) -> Iterator[Connection]:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
            try:
                yield conn
            finally:
                conn.execute(text("ALTER TABLE audit_event ENABLE TRIGGER USER"))
        else:
            saved = conn.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_event'")
            ).all()
            for name, _ in saved:
                conn.execute(text(f'DROP TRIGGER "{name}"'))
            try:
                yield conn
            finally:
                for _, sql in saved:
                    conn.execute(text(sql))


def edit_row(engine: Engine, seq: int, actor: str) -> str:
    """Change one event's actor; returns the old value."""
    with triggers_disabled(engine) as conn:
        old = conn.execute(text("SELECT actor FROM audit_event WHERE seq = :s"), {"s": seq}).scalar_one()
        conn.execute(text("UPDATE audit_event SET actor = :a WHERE seq = :s"), {"a": actor, "s": seq})
    return old


def delete_row(engine: Engine, seq: int) -> dict:
    with triggers_disabled(engine) as conn:
        row = dict(conn.execute(text("SELECT * FROM audit_event WHERE seq = :s"), {"s": seq}).mappings().one())
        conn.execute(text("DELETE FROM audit_event WHERE seq = :s"), {"s": seq})
    return row


def insert_row(engine: Engine, row: dict) -> None:
    with triggers_disabled(engine) as conn:
        cols = ", ".join(row)
        conn.execute(
            text(f"INSERT INTO audit_event ({cols}) VALUES ({', '.join(':' + c for c in row)})"), _bindable(conn, row)
        )


def swap_rows(engine: Engine, a: int, b: int) -> None:
    """Swap the positions of two events in the chain (their seq numbers)."""
    with triggers_disabled(engine) as conn:
        conn.execute(text("UPDATE audit_event SET seq = -1 WHERE seq = :a"), {"a": a})
        conn.execute(text("UPDATE audit_event SET seq = :a WHERE seq = :b"), {"a": a, "b": b})
        conn.execute(text("UPDATE audit_event SET seq = :b WHERE seq = -1"), {"b": b})


def _bindable(conn: Connection, row: dict) -> dict:
    import json

    out = dict(row)
    if isinstance(out.get("details"), dict | list):
        out["details"] = json.dumps(out["details"])
    return out
