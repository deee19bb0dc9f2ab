"""The run queue: the scheduler step that starts, watches and stops batch runs.

Each round (only on the replica holding the scheduler lease):

1. stop what must not run any more: attempts that ended (cancelled, failed,
   succeeded, or abandoned for a retry) whose processes may still be there;
2. fail active attempts that are past their timeout, whose heartbeat stopped, or
   whose runner is gone without a report (executors that can tell), retrying them
   when their budget allows;
3. start queued runs while there is capacity: fair share across projects, a
   concurrency quota per project, priority inside a project.

Every decision is a database transaction (``services.batch``); the executor is
called outside them. A crash between "claimed" and "launched" leaves a starting
attempt without a heartbeat, which step 2 fails as an infrastructure failure and
retries: nothing is lost and nothing that succeeded runs again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter, deque
from collections.abc import Callable

from sqlalchemy.orm import Session
from traitlets import Bool, Float, Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from .executors.base import Executor, LaunchSpec
from .orm import utcnow
from .services import batch

log = logging.getLogger("animus.runqueue")
RECENT_DISPATCHES = 256


class RunQueue(LoggingConfigurable):
    """Settings of the run queue and its runners (``c.RunQueue.*``)."""

    project_concurrency = Integer(
        4, help="Most attempts of one project active at once (its quota); the rest wait in its queue."
    ).tag(config=True)
    heartbeat_interval = Float(10.0, help="Seconds between a runner's heartbeats.").tag(config=True)
    heartbeat_timeout = Float(
        60.0,
        help="Seconds without a heartbeat after which a runner counts as lost: the attempt fails as an "
        "infrastructure failure and is retried (keep it several times heartbeat_interval).",
    ).tag(config=True)
    start_timeout = Float(
        300.0,
        help="Seconds a dispatched attempt may take to report that it runs (cloning, environment set-up "
        "and dataset download happen after that report, so this covers only the runner's start).",
    ).tag(config=True)
    retry_base_seconds = Float(
        5.0, help="Backoff before the first retry; doubles with each failure (with jitter)."
    ).tag(config=True)
    retry_max_seconds = Float(600.0, help="Longest backoff between two attempts.").tag(config=True)
    max_infrastructure_retries = Integer(
        3, help="Default number of retries after infrastructure failures (a run may ask for another number)."
    ).tag(config=True)
    token_ttl_seconds = Integer(
        6 * 3600,
        help="Lifetime of a run token beyond the run's timeout; it is revoked anyway when the attempt ends.",
    ).tag(config=True)
    log_max_bytes = Integer(
        8 * 1024 * 1024, help="Most bytes of output stored per run; past it a truncation marker ends the log."
    ).tag(config=True)
    allowed_repo_schemes = List(
        Unicode(), ["https", "ssh", "git", "http"], help="URL schemes a run's repository may use."
    ).tag(config=True)
    git_timeout = Float(60.0, help="Seconds a git ls-remote or commit check at submission may take.").tag(config=True)
    verify_commits = Bool(
        True, help="Check at submission that the commit exists in the repository (off: only the runner finds out)."
    ).tag(config=True)
    runner_api_url = Unicode(
        "", help="The API URL runners use (default: animus-api's own listen URL, without the proxy)."
    ).tag(config=True)

    def policy(self) -> batch.RetryPolicy:
        return batch.RetryPolicy(self.retry_base_seconds, self.retry_max_seconds)


class RunQueueStep:
    """The scheduler step (see ``scheduler.Scheduler.add_step``)."""

    name = "runs"

    def __init__(self, session_factory: Callable[[], Session], settings: RunQueue, executor: Executor, api_url: str):
        self.session_factory = session_factory
        self.settings = settings
        self.executor = executor
        self.api_url = api_url
        # the projects of the last dispatches: fair share's tie-break between projects with as
        # many active runs (memory only: after a restart it refills within a few rounds)
        self._recent: deque[int] = deque(maxlen=RECENT_DISPATCHES)

    async def run(self, scheduler) -> bool:
        released = await self._release()
        failed = await self._fail_overdue()
        started = await self._dispatch()
        return bool(released or failed or started)

    # --- 1. stop what ended ---------------------------------------------------------------

    async def _release(self) -> int:
        rows = await asyncio.to_thread(self._tx, batch.unreleased)
        mine = [r for r in rows if r[3] == self.executor.name or r[2] is None]
        if not mine:
            return 0

        async def one(run_id: str, attempt: int, handle: str | None) -> None:
            if handle:
                await self.executor.stop(handle, grace=2.0)
            await asyncio.to_thread(self._mark_released, run_id, attempt)

        await asyncio.gather(*(one(r, a, h) for r, a, h, _ in mine))
        return len(mine)

    def _mark_released(self, run_id: str, attempt: int) -> None:
        with self.session_factory() as s:
            batch.mark_released(s, run_id, attempt)
            s.commit()

    # --- 2. fail overdue and lost attempts -----------------------------------------------------

    async def _fail_overdue(self) -> int:
        now = utcnow()
        overdue = await asyncio.to_thread(
            self._tx,
            batch.overdue,
            now,
            dt.timedelta(seconds=self.settings.heartbeat_timeout),
            dt.timedelta(seconds=self.settings.start_timeout),
        )
        # an executor that can see its processes tells a dead runner at once
        for run_id, attempt, handle, executor in await asyncio.to_thread(self._tx, batch.active_handles):
            if executor == self.executor.name and all(o[0] != run_id for o in overdue):
                if await self.executor.alive(handle) is False:
                    overdue.append((run_id, attempt, "infrastructure", "the runner exited without reporting"))
        n = 0
        for run_id, attempt, kind, message in overdue:
            n += await asyncio.to_thread(self._fail, run_id, attempt, kind, message)
        return n

    def _fail(self, run_id: str, attempt: int, kind: str, message: str) -> int:
        with self.session_factory() as s:
            found = batch.locked(s, run_id, attempt)
            # re-read under the lock: a report may have ended the attempt meanwhile
            if found is None or found[1].status not in batch.ACTIVE_STATES:
                return 0
            project, run, job = found
            status = batch.fail_attempt(s, project, run, job, kind, message, self.settings.policy())
            s.commit()
        log.warning("run %s attempt %s failed (%s: %s); now %s", run_id, attempt, kind, message, status)
        return 1

    # --- 3. start queued runs ---------------------------------------------------------------

    async def _dispatch(self) -> int:
        claimed = await asyncio.to_thread(self._claim)
        if not claimed:
            return 0
        await asyncio.gather(*(self._launch(d) for d in claimed))
        return len(claimed)

    def _claim(self) -> list[batch.Dispatch]:
        out = []
        with self.session_factory() as s:
            free = self.executor.slots - batch.active_count(s)
            ids = batch.pick(s, free, self.settings.project_concurrency, utcnow(), recent=Counter(self._recent))
            s.rollback()
            ttl = dt.timedelta(seconds=self.settings.token_ttl_seconds)
            for run_id in ids:
                try:
                    d = batch.claim(s, run_id, self.executor.name, ttl)
                    s.commit()
                except Exception:
                    # the runs claimed so far must still be launched: a claim that is lost
                    # here would wait in "starting" until start_timeout
                    s.rollback()
                    log.exception("run %s: claiming failed; it stays queued", run_id)
                    break
                if d is not None:
                    out.append(d)
                    self._recent.append(d.project_id)
        return out

    async def _launch(self, d: batch.Dispatch) -> None:
        spec = LaunchSpec(
            run_id=d.run_id,
            project=d.project_slug,
            attempt=d.attempt,
            token=d.token,
            api_url=self.api_url,
            timeout_seconds=d.timeout_seconds,
            resources=d.resources,
            heartbeat_interval=self.settings.heartbeat_interval,
            image=d.image,
            priority=d.priority,
        )
        try:
            handle = await self.executor.launch(spec)
        except Exception as e:
            log.exception("run %s attempt %s: launch failed", d.run_id, d.attempt)
            await asyncio.to_thread(self._fail, d.run_id, d.attempt, "infrastructure", f"launch failed: {e}"[:500])
            return
        stale = await asyncio.to_thread(self._store_handle, d.run_id, d.attempt, handle)
        if stale:
            await self.executor.stop(handle)  # cancelled while it was being launched

    def _store_handle(self, run_id: str, attempt: int, handle: str) -> bool:
        with self.session_factory() as s:
            stale = batch.store_handle(s, run_id, attempt, handle)
            s.commit()
            return stale

    # --- plumbing ---------------------------------------------------------------------------

    def _tx(self, fn, *args):
        with self.session_factory() as s:
            result = fn(s, *args)
            s.rollback()
            return result

    async def close(self) -> None:
        await self.executor.close()
