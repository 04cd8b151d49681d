"""A shared budget of platform edits: a token bucket with two priorities.

Every reply streaming into the same Slack workspace (or Discord channel)
draws from one ``EditBudget``.  Final edits jump the queue ahead of interim
ones, so when many streams share a small budget the answers still land whole
and soon after the provider finishes; interim edits simply become rarer.
A platform 429 pauses the whole budget for its Retry-After.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time


class EditBudget:
    def __init__(self, per_minute: float, burst: int | None = None) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(1, int(per_minute // 6)))
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._paused_until = 0.0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self.granted = 0

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self, *, urgent: bool = False) -> None:
        """Wait for one edit.  ``urgent`` (final edits) goes before interim edits."""
        now = time.monotonic()
        self._refill(now)
        if not self._waiters and now >= self._paused_until and self._tokens >= 1:
            self._tokens -= 1
            self.granted += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (0 if urgent else 1, next(self._seq), future)
        heapq.heappush(self._waiters, entry)
        self._schedule()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._tokens += 1  # granted and abandoned: give it back
            elif entry in self._waiters:
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)
            raise

    def pause(self, seconds: float) -> None:
        """The platform said 429: nobody edits for ``seconds``."""
        now = time.monotonic()
        self._paused_until = max(self._paused_until, now + seconds)
        self._refill(now)
        self._tokens = min(self._tokens, 0.0)
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._waiters:
            return
        now = time.monotonic()
        wait = max(self._paused_until - now, (1 - self._tokens) / self.rate if self._tokens < 1 else 0.0)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(wait, 0.0), self._dispatch)

    def _dispatch(self) -> None:
        self._timer = None
        now = time.monotonic()
        self._refill(now)
        while self._waiters and now >= self._paused_until and self._tokens >= 1:
            _, _, future = heapq.heappop(self._waiters)
            if future.done():
                continue
            self._tokens -= 1
            self.granted += 1
            future.set_result(None)
        self._schedule()
