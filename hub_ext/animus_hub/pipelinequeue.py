"""The scheduler step that moves pipeline runs along their DAG (``services.pipelines.advance``).

It runs before the run queue's step in each round, so a step started here is
dispatched in the same round. One transaction per unfinished pipeline run.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.orm import Session

from .runqueue import RunQueue
from .services import pipelines

log = logging.getLogger("animus.pipelines")


class PipelineStepper:
    name = "pipelines"

    def __init__(self, session_factory: Callable[[], Session], settings: RunQueue):
        self.session_factory = session_factory
        self.settings = settings

    async def run(self, scheduler) -> bool:
        return await asyncio.to_thread(self._round)

    def _round(self) -> bool:
        busy = False
        with self.session_factory() as s:
            ids = pipelines.active_ids(s)
            s.rollback()
        for pipeline_id in ids:
            with self.session_factory() as s:
                try:
                    changed = pipelines.advance(s, pipeline_id, self.settings.max_infrastructure_retries)
                    s.commit()
                except Exception:
                    s.rollback()
                    log.exception("pipeline run %s: advancing failed; trying again next round", pipeline_id)
                    continue
            busy = busy or changed
        return busy

    async def close(self) -> None:
        pass
