"""Background work adapters start (answers), tracked so a shutdown can drain it.

``spawn`` runs a coroutine as a task and remembers it; ``drain`` stops taking
new work, lets tasks finish within a grace period, then cancels the rest (each
reply then finalises itself as interrupted, bounded in time).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from .errors import RelayError
from .reply import INTERRUPT_TIMEOUT

log = logging.getLogger(__name__)


class Tasks:
    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.accepting = True
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any] | None:
        """Run ``work`` in the background, tracked for shutdown; None once shutting down."""
        if not self.accepting:
            work.close()
            log.info("shutting down; %s not started", name or "task")
            return None
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        if isinstance(exc, RelayError):  # handled on purpose somewhere below: one line is enough
            log.warning("background task %s: %s", task.get_name(), exc)
        else:
            log.error("background task %s failed", task.get_name(), exc_info=exc)

    async def wait_idle(self) -> None:
        """Wait until no task runs (tests, one-shot commands)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def drain(self, grace: float | None = None) -> int:
        """Stop taking work; let tasks finish within ``grace`` s, then cancel (finalising
        their replies as interrupted).  Returns how many had to be cancelled."""
        self.accepting = False
        grace = self.grace if grace is None else grace
        pending = set(self._tasks)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:  # each finalises as interrupted within INTERRUPT_TIMEOUT; never wait much longer
            await asyncio.wait(pending, timeout=INTERRUPT_TIMEOUT + 5)
        return len(pending)
