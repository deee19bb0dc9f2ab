"""The run queue's choice of what starts next, on a real database (SQLite and PostgreSQL).

Fair share across projects and priority inside a project, also when one project's
backlog is far longer than the rows a round looks at (a project whose runs all have
a low priority must not be pushed out of the candidates by another's backlog).
"""

from __future__ import annotations

import datetime as dt

from animus_hub import db as dbmod
from animus_hub.orm import Experiment, Project, Run, RunJob, utcnow
from animus_hub.services import batch


def _queue(session, slug: str, priorities: list[int], start: dt.datetime) -> list[str]:
    p = Project(slug=slug, display_name=slug, created_by="t")
    session.add(p)
    session.flush()
    e = Experiment(project_id=p.id, name="Default", created_by="t")
    session.add(e)
    session.flush()
    ids = []
    for i, prio in enumerate(priorities):
        r = Run(project_id=p.id, experiment_id=e.id, kind="batch", status="queued", created_by="t")
        r.created_at = start + dt.timedelta(milliseconds=i)
        session.add(r)
        session.flush()
        session.add(
            RunJob(
                run_id=r.id,
                project_id=p.id,
                state="queued",
                command=["true"],
                priority=prio,
                next_attempt_at=start,
                released=True,
                updated_at=start,
            )
        )
        ids.append(r.id)
    session.flush()
    return ids


def test_a_low_priority_project_is_not_starved_by_a_long_backlog(fresh_db_url):
    dbmod.upgrade(fresh_db_url)
    engine = dbmod.make_engine(fresh_db_url)
    try:
        factory = dbmod.make_session_factory(engine)
        start = utcnow() - dt.timedelta(minutes=5)
        with factory() as s:
            busy = _queue(s, "busy", [10] * 120, start)
            quiet = _queue(s, "quiet", [0, 0, 5], start + dt.timedelta(seconds=1))
            s.commit()
            # the busy project's backlog alone fills the rows one round scans
            chosen = batch.pick(s, capacity=4, project_quota=4, now=utcnow(), scan=100)
        # fair share: two slots each, alternating; inside "quiet" the priority-5 run first
        assert sorted(chosen[:2]) == sorted([busy[0], quiet[2]])
        assert set(chosen) == {busy[0], busy[1], quiet[2], quiet[0]}
        assert chosen.index(quiet[2]) < chosen.index(quiet[0])
    finally:
        engine.dispose()


def test_pick_respects_the_quota_and_capacity(fresh_db_url):
    dbmod.upgrade(fresh_db_url)
    engine = dbmod.make_engine(fresh_db_url)
    try:
        factory = dbmod.make_session_factory(engine)
        start = utcnow() - dt.timedelta(minutes=5)
        with factory() as s:
            a = _queue(s, "proj-a", [0, 1, 2, 3, 4], start)
            _queue(s, "proj-b", [], start)
            s.commit()
            assert batch.pick(s, capacity=10, project_quota=3, now=utcnow()) == [a[4], a[3], a[2]]
            assert batch.pick(s, capacity=1, project_quota=3, now=utcnow()) == [a[4]]
            assert batch.pick(s, capacity=0, project_quota=3, now=utcnow()) == []
    finally:
        engine.dispose()


def test_ties_on_active_runs_go_to_the_project_with_fewer_recent_dispatches(fresh_db_url):
    dbmod.upgrade(fresh_db_url)
    engine = dbmod.make_engine(fresh_db_url)
    try:
        factory = dbmod.make_session_factory(engine)
        start = utcnow() - dt.timedelta(minutes=5)
        with factory() as s:
            high = _queue(s, "high", [10, 10, 10], start)
            low = _queue(s, "low", [0, 0, 0], start)
            s.commit()
            pids = {p.slug: p.id for p in s.query(Project).all()}
            # without history a tie goes to the higher-priority head
            assert batch.pick(s, capacity=1, project_quota=4, now=utcnow()) == [high[0]]
            # "high" had the last dispatches: the slot goes to "low", whatever its priority
            recent = {pids["high"]: 3, pids["low"]: 1}
            assert batch.pick(s, capacity=1, project_quota=4, now=utcnow(), recent=recent) == [low[0]]
            # fewest active runs still comes first; recent dispatches break the ties
            assert batch.pick(s, capacity=4, project_quota=4, now=utcnow(), recent=recent) == [
                low[0],
                high[0],
                low[1],
                high[1],
            ]
    finally:
        engine.dispose()
