"""The audit trail in the database: same transaction, append-only, hash-chained, verifiable."""

from __future__ import annotations

import audit_tamper
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from animus.auditchain import GENESIS_HASH, event_hash, verify
from animus_hub import audit
from animus_hub import db as dbmod
from animus_hub.audit import Actor, verify_database
from animus_hub.orm import AuditEvent, Project, utcnow

ALICE = Actor(name="alice", kind="user", source="127.0.0.1", request_id="r1")


@pytest.fixture
def session_factory(fresh_db_url):
    engine = dbmod.make_engine(fresh_db_url)
    dbmod.ensure_schema(engine, fresh_db_url)
    factory = dbmod.make_session_factory(engine)
    factory.engine = engine
    yield factory
    engine.dispose()


def _append(factory, n: int) -> None:
    with factory() as s:
        for i in range(n):
            audit.record(s, ALICE, "project.update", resource=f"project/p{i}", project="p", details={"i": i})
        s.commit()


def test_events_chain_from_genesis_and_verify(session_factory):
    _append(session_factory, 5)
    with session_factory() as s:
        events = list(audit.iter_events(s))
        assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
        assert events[0]["prev_hash"] == GENESIS_HASH
        assert all(b["prev_hash"] == a["hash"] for a, b in zip(events, events[1:], strict=False))
        assert all(event_hash(e) == e["hash"] for e in events)
        assert verify_database(s).ok


def test_audit_event_commits_and_rolls_back_with_the_change(session_factory):
    with session_factory() as s:
        s.add(Project(slug="kept", display_name="kept", created_by="alice"))
        audit.record(s, ALICE, "project.create", project="kept")
        s.commit()
        s.add(Project(slug="dropped", display_name="dropped", created_by="alice"))
        audit.record(s, ALICE, "project.create", project="dropped")
        s.rollback()
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == 1
        assert s.scalar(select(AuditEvent.project)) == "kept"
        # the rolled-back append did not advance the chain
        audit.record(s, ALICE, "project.create", project="again")
        s.commit()
        assert verify_database(s).ok


def test_secret_looking_details_are_redacted(session_factory):
    with session_factory() as s:
        e = audit.record(
            s, ALICE, "x.create", details={"password": "hunter2", "nested": {"api_token": "t"}, "name": "n"}
        )
        s.commit()
        assert e.details == {"password": "[redacted]", "nested": {"api_token": "[redacted]"}, "name": "n"}


@pytest.mark.parametrize("statement", ["UPDATE audit_event SET actor = 'mallory'", "DELETE FROM audit_event"])
def test_database_refuses_update_and_delete(session_factory, statement):
    _append(session_factory, 2)
    with pytest.raises(DBAPIError, match="append-only"):
        with session_factory.engine.begin() as conn:
            conn.execute(text(statement))
    with session_factory() as s:
        assert verify_database(s).ok


def test_verify_names_an_edited_event(session_factory):
    _append(session_factory, 6)
    audit_tamper.edit_row(session_factory.engine, 3, "mallory")
    with session_factory() as s:
        result = verify_database(s)
    assert not result.ok and result.bad_seq == 3 and "edited" in result.problem


def test_verify_names_the_event_after_a_deletion(session_factory):
    _append(session_factory, 6)
    audit_tamper.delete_row(session_factory.engine, 4)
    with session_factory() as s:
        result = verify_database(s)
    assert not result.ok and result.bad_seq == 5 and "missing" in result.problem


def test_verify_detects_events_cut_from_the_end(session_factory):
    _append(session_factory, 6)
    audit_tamper.delete_row(session_factory.engine, 6)
    with session_factory() as s:
        result = verify_database(s)
    assert not result.ok and "recorded head is seq 6" in result.problem


def test_verify_names_reordered_events(session_factory):
    _append(session_factory, 6)
    audit_tamper.swap_rows(session_factory.engine, 2, 3)
    with session_factory() as s:
        result = verify_database(s)
    assert not result.ok and result.bad_seq == 2


def test_verify_names_an_inserted_event(session_factory):
    _append(session_factory, 4)
    with session_factory() as s:
        last = audit.event_to_dict(s.get(AuditEvent, 4))
    # a forged event slipped in as seq 5 that does not chain from seq 4
    forged = {**last, "seq": 5, "id": "forged-0000", "actor": "mallory", "prev_hash": "f" * 64}
    forged["hash"] = event_hash(forged)
    forged["time"] = utcnow()
    audit_tamper.insert_row(session_factory.engine, forged)
    with session_factory() as s:
        result = verify_database(s)
    assert not result.ok and result.bad_seq == 5


def test_verify_of_an_exported_list_detects_tampering():
    events, prev = [], GENESIS_HASH
    for i in range(1, 4):
        e = {
            "seq": i,
            "id": f"e{i}",
            "time": "2026-01-01T00:00:00.000000Z",
            "actor": "a",
            "actor_kind": "user",
            "source": "",
            "request_id": "",
            "action": "x",
            "resource": "",
            "project": "",
            "outcome": "success",
            "details": {},
            "prev_hash": prev,
        }
        e["hash"] = prev = event_hash(e)
        events.append(e)
    assert verify(events).ok
    events[1] = {**events[1], "outcome": "denied"}
    result = verify(events)
    assert not result.ok and result.bad_seq == 2


def test_concurrent_writers_keep_one_linear_chain(session_factory):
    """Writers in parallel threads, each reading the head only under a write lock (an SQLite
    read before a transaction's first write could see a head another writer is moving)."""
    import threading

    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(15):
                with session_factory() as s:
                    audit.record(s, ALICE, "project.update", resource=f"project/w{k}", details={"i": i})
                    s.commit()
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    with session_factory() as s:
        assert [e["seq"] for e in audit.iter_events(s)] == list(range(1, 61))
        assert verify_database(s).ok
