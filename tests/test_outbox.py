"""The event outbox: an event exists exactly when its change commits."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from animus_hub import db as dbmod
from animus_hub.events import mark_dispatched, pending, record_event
from animus_hub.orm import OutboxEvent, Project


@pytest.fixture
def factory(fresh_db_url):
    engine = dbmod.make_engine(fresh_db_url)
    dbmod.ensure_schema(engine, fresh_db_url)
    yield dbmod.make_session_factory(engine)
    engine.dispose()


def test_event_is_recorded_with_its_change_and_vanishes_on_rollback(factory):
    with factory() as s:
        p = Project(slug="kept", display_name="kept", created_by="a")
        s.add(p)
        s.flush()
        kept = record_event(s, "ProjectCreated", {"created_by": "a"}, p)
        s.commit()
        q = Project(slug="gone", display_name="gone", created_by="a")
        s.add(q)
        s.flush()
        record_event(s, "ProjectCreated", {"created_by": "a"}, q)
        s.rollback()
        events = s.scalars(select(OutboxEvent)).all()
    assert [e.id for e in events] == [kept.id]
    assert uuid.UUID(kept.id).version == 4
    assert kept.payload == {"created_by": "a", "project": "kept"}


def test_pending_events_come_oldest_first_until_dispatched(factory):
    with factory() as s:
        ids = [record_event(s, "RunFinished", {"n": i}).id for i in range(3)]
        s.commit()
        assert [e.id for e in pending(s)] == ids
        mark_dispatched(s, pending(s)[0])
        s.commit()
        assert [e.id for e in pending(s)] == ids[1:]


def test_unknown_event_types_are_refused(factory):
    with factory() as s, pytest.raises(ValueError):
        record_event(s, "SomethingHappened", {})
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(OutboxEvent)) == 0
