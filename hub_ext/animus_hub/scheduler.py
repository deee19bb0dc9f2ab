"""animus-scheduler: the background loop of the control plane (DESIGN.md §2).

In the embedded profile it is an asyncio task inside animus-api; with several
animus-api replicas every replica runs the loop, but only the one holding the
database lease does the work. The lease is one row taken and renewed with a
compare-and-set UPDATE (``holder = me OR expires_at < now``), so two replicas never
both act; if the leader dies, another takes over once its lease expires.

The loop runs its steps in order each round. A step is any object with a ``name``
and ``async run(scheduler) -> bool`` (True: it did work, go again without sleeping)
and ``async close()``: the webhook delivery step is the first; the runs scheduler
adds its own step with ``Scheduler.add_step``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import case, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from traitlets import Bool, Float, Unicode, default
from traitlets.config import LoggingConfigurable

from .orm import SchedulerLease, utcnow
from .services import webhooks as webhook_svc
from .webhook_delivery import AttemptResult, SecretUnavailable, WebhookDelivery, WebhookSender

log = logging.getLogger("animus.scheduler")

SessionFactory = Callable[[], Session]


class SchedulerStep(Protocol):
    name: str

    async def run(self, scheduler: Scheduler) -> bool: ...

    async def close(self) -> None: ...


class Lease:
    """A named lease in the database: `acquire()` takes or renews it (compare-and-set)."""

    def __init__(self, session_factory: SessionFactory, name: str, holder: str, ttl: float):
        self.session_factory = session_factory
        self.name = name
        self.holder = holder
        self.ttl = dt.timedelta(seconds=ttl)

    def acquire(self) -> bool:
        """True if this holder has the lease now (taken or renewed), False if another one does."""
        now = utcnow()
        t = SchedulerLease
        with self.session_factory() as s:
            taken = s.execute(
                update(t)
                .where(t.name == self.name, or_(t.holder == self.holder, t.expires_at.is_(None), t.expires_at < now))
                .values(
                    holder=self.holder,
                    expires_at=now + self.ttl,
                    term=case((t.holder == self.holder, t.term), else_=t.term + 1),
                    acquired_at=case((t.holder == self.holder, t.acquired_at), else_=now),
                )
            ).rowcount
            if taken == 1:
                s.commit()
                return True
            if s.scalar(select(t.name).where(t.name == self.name)) is not None:
                s.rollback()
                return False
            s.add(
                SchedulerLease(name=self.name, holder=self.holder, term=1, acquired_at=now, expires_at=now + self.ttl)
            )
            try:
                s.commit()
            except IntegrityError:
                s.rollback()
                return False  # another replica created it first
            return True

    def release(self) -> None:
        """Give the lease up now (on a clean stop), so another replica need not wait for it to expire."""
        with self.session_factory() as s:
            s.execute(
                update(SchedulerLease)
                .where(SchedulerLease.name == self.name, SchedulerLease.holder == self.holder)
                .values(expires_at=None)
            )
            s.commit()

    def current(self) -> tuple[str, int] | None:
        with self.session_factory() as s:
            row = s.execute(
                select(SchedulerLease.holder, SchedulerLease.term).where(
                    SchedulerLease.name == self.name, SchedulerLease.expires_at > utcnow()
                )
            ).first()
            return (row.holder, row.term) if row else None


class Scheduler(LoggingConfigurable):
    """The loop: each round, take or renew the lease, then run every step (``c.Scheduler.*``)."""

    enabled = Bool(
        True, help="Run the scheduler loop in this animus-api process (off: this replica never delivers webhooks)."
    ).tag(config=True)
    interval = Float(1.0, help="Seconds between rounds when there is nothing to do.").tag(config=True)
    lease_seconds = Float(
        15.0,
        help="Seconds the leader's lease lasts without renewal: how long the other replicas wait "
        "before taking over from a leader that died. Keep it well above `interval`.",
    ).tag(config=True)
    lease_name = Unicode("animus-scheduler", help="The lease row's name (replicas sharing it elect one leader).").tag(
        config=True
    )
    holder_id = Unicode(help="This replica's name in the lease; default: host name, pid and a random suffix.").tag(
        config=True
    )

    @default("holder_id")
    def _holder_default(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    def __init__(self, session_factory: SessionFactory, steps: list[SchedulerStep] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.session_factory = session_factory
        self.steps: list[SchedulerStep] = list(steps or [])
        self.lease = Lease(session_factory, self.lease_name, self.holder_id, self.lease_seconds)
        self.is_leader = False
        self._renew_at = 0.0
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None

    def add_step(self, step: SchedulerStep) -> None:
        self.steps.append(step)

    def wake(self) -> None:
        """Start the next round now (e.g. a delivery was just queued)."""
        self._wake.set()

    async def run_once(self) -> bool:
        """One round; returns whether any step did work."""
        if self.is_leader and time.monotonic() < self._renew_at:
            leader = True  # renewed less than a third of the lease ago: no database write
        else:
            started = time.monotonic()
            leader = await asyncio.to_thread(self.lease.acquire)
            self._renew_at = started + self.lease_seconds / 3
        if leader != self.is_leader:
            log.info("scheduler %s %s the lease %r", self.holder_id, "took" if leader else "lost", self.lease_name)
            self.is_leader = leader
        if not leader:
            return False
        busy = False
        for step in self.steps:
            try:
                busy = await step.run(self) or busy
            except Exception:
                log.exception("scheduler step %s failed; it runs again next round", step.name)
        return busy

    async def run_forever(self) -> None:
        while not self._stopping:
            busy = False
            try:
                busy = await self.run_once()
            except Exception:
                log.exception("scheduler round failed (database unavailable?); retrying")
            if self._stopping:
                break
            if not busy:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(0)

    def start(self) -> asyncio.Task | None:
        if not self.enabled:
            log.info("scheduler disabled in this process (Scheduler.enabled = False)")
            return None
        self._task = asyncio.get_running_loop().create_task(self.run_forever(), name="animus-scheduler")
        log.info("scheduler %s started (interval %.2fs, lease %r)", self.holder_id, self.interval, self.lease_name)
        return self._task

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current round, let in-flight work finish (bounded), give the lease up."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=timeout)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        for step in self.steps:
            try:
                await step.close()
            except Exception:
                log.exception("closing scheduler step %s failed", step.name)
        if self.is_leader:
            try:
                await asyncio.to_thread(self.lease.release)
            except Exception:
                log.exception("could not release the scheduler lease")
            self.is_leader = False


class WebhookDeliveryStep:
    """Fan outbox events out to deliveries, send due deliveries, record what happened.

    Sends run as tasks, at most `max_concurrency` at once; a slow receiver holds only
    its own slot. Their results are recorded in batches at the start of each round.
    """

    name = "webhooks"

    def __init__(self, session_factory: SessionFactory, settings: WebhookDelivery):
        self.session_factory = session_factory
        self.settings = settings
        self.sender = WebhookSender(settings)
        self._in_flight: dict[int, asyncio.Task] = {}
        self._results: list[AttemptResult] = []
        self._secrets: dict[tuple[int, str], str] = {}
        self._scheduler: Scheduler | None = None

    @property
    def hold(self) -> dt.timedelta:
        # a claim outlives any attempt (timeout) and the wait for its result to be recorded
        return dt.timedelta(seconds=2 * self.settings.timeout + 30)

    async def run(self, scheduler: Scheduler) -> bool:
        self._scheduler = scheduler
        free = self.settings.max_concurrency - len(self._in_flight)
        # Each round is one transaction (record, fan out, claim). Rounds wait until a quarter
        # of the slots are free again (or nothing is in flight), so a busy scheduler takes
        # and settles deliveries in batches instead of one transaction per finished send.
        if self._in_flight and free < max(1, self.settings.max_concurrency // 4):
            return False
        results, self._results = self._results, []
        try:
            recorded, fanned, claimed = await asyncio.to_thread(self._round, results, free, set(self._in_flight))
        except Exception:
            self._results = results + self._results  # try again next round; the claims still hold
            raise
        for c in claimed:
            self._in_flight[c.id] = asyncio.get_running_loop().create_task(self._deliver(c))
        return bool(recorded or fanned >= self.settings.batch_size or claimed)

    def _round(
        self, results: list[AttemptResult], free: int, in_flight: set[int]
    ) -> tuple[int, int, list[webhook_svc.ClaimedDelivery]]:
        with self.session_factory() as s:
            disabled = []
            if results:
                disabled = webhook_svc.record_results(
                    s, results, self.settings.backoff, dt.timedelta(seconds=self.settings.retry_horizon_seconds)
                )
            fanned = webhook_svc.fan_out(s, self.settings.batch_size)
            claimed = []
            if free > 0:
                claimed = webhook_svc.claim_due(s, min(free, self.settings.batch_size), self.hold, exclude=in_flight)
            s.commit()
        for wid in disabled:
            log.warning("webhook %s disabled: nothing reached its receiver within the retry horizon", wid)
        return len(results), fanned, claimed

    async def _record(self) -> int:
        """Record the results gathered so far (on close: the last attempts)."""
        if not self._results:
            return 0
        results, self._results = self._results, []

        def write() -> list[int]:
            with self.session_factory() as s:
                disabled = webhook_svc.record_results(
                    s, results, self.settings.backoff, dt.timedelta(seconds=self.settings.retry_horizon_seconds)
                )
                s.commit()
                return disabled

        try:
            disabled = await asyncio.to_thread(write)
        except Exception:
            self._results = results + self._results
            raise
        for wid in disabled:
            log.warning("webhook %s disabled: nothing reached its receiver within the retry horizon", wid)
        return len(results)

    def _secret(self, c: webhook_svc.ClaimedDelivery) -> str:
        key = (c.webhook_id, c.secret_encrypted)
        if key not in self._secrets:
            if len(self._secrets) > 10_000:
                self._secrets.clear()
            self._secrets[key] = self.settings.secret_box().decrypt(c.secret_encrypted, c.webhook_id)
        return self._secrets[key]

    async def _deliver(self, c: webhook_svc.ClaimedDelivery) -> None:
        try:
            body = c.body.encode()
            try:
                secret = self._secret(c)
            except (SecretUnavailable, Exception) as e:
                message = str(e) if isinstance(e, SecretUnavailable) else getattr(e, "message", type(e).__name__)
                self._results.append(
                    AttemptResult(c.id, c.attempt, utcnow(), 0, None, f"not sent: {message}"[:500], "")
                )
                return
            headers = self.sender.headers(
                secret=secret,
                webhook_id=c.webhook_id,
                delivery_id=c.id,
                event_id=c.event_id,
                event_type=c.event_type,
                attempt=c.attempt,
                body=body,
            )
            result = await self.sender.send(c.url, headers, body, c.id, c.attempt)
            # append after the await: _record() may have swapped the list meanwhile
            self._results.append(result)
        finally:
            self._in_flight.pop(c.id, None)
            if self._scheduler is not None:
                self._scheduler.wake()

    async def close(self) -> None:
        if self._in_flight:
            await asyncio.wait(list(self._in_flight.values()), timeout=self.settings.timeout + 2)
        try:
            await self._record()
        except Exception:
            log.exception("could not record the last webhook attempts; those deliveries will be retried")
        await self.sender.close()
