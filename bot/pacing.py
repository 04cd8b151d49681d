"""A shared budget of platform edits, with four priorities.

Every reply streaming into the same Slack workspace (or Discord channel)
draws from one ``EditBudget``.  Final edits go first, then the end of a
message a long answer continues after (``cut``: that answer still needs its
final write, so a reply with fewer writes left finishes first), then the
first text of a reply, then interim edits; so when many streams share a small budget the
answers still land whole and soon after the provider finishes, and interim
edits simply become rarer.  A platform 429 pauses the whole budget for its
Retry-After.

Two ways to count:

* a token bucket (default): ``per_minute`` on average, ``burst`` at once;
* a sliding window (``window=`` seconds): at most ``burst`` edits in any
  ``window``, which is how "50 per minute" limits like Slack's Tier 3 count.

With ``adapt=True`` (sliding window) ``burst`` is a starting guess, not a
fixed one: a 429 sets it to the edits granted in the window so far (what the
platform took before it refused), and while the budget is used up and no 429
came for ``2 * window`` seconds, each grant raises it by one: between
``1 / ADAPT_UP_TO`` and ``ADAPT_UP_TO`` times the guess, so a platform that
allows more gets used.

With ``reserve=True`` the budget keeps room for the final edit of every
reply still streaming (``join``/``leave``): a first or interim edit is only
granted if a final edit for each of them would still fit right after.  With
30 replies sharing 50 edits a minute, that is the difference between every
final text landing as its provider finishes and some waiting most of a minute.
``keep_from=INTERIM`` keeps that room from interim edits only (first texts
take what there is).

``EditPacer`` is what a reply stream asks of any budget: ``EditBudget`` here
(one process), ``shared_pacing.SharedEditBudget`` when replicas share a
PostgreSQL database.  ``window_wait`` is the sliding-window arithmetic both use.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Sequence
from typing import Protocol

FINAL, CUT, FIRST, INTERIM = 0, 1, 2, 3
#: an adapting budget grows up to this many times its starting ``burst``
ADAPT_UP_TO = 4.0


class EditPacer(Protocol):
    """What a reply stream needs from an edit budget."""

    active: int  # replies streaming (``join``ed and not yet ``leave``d)

    @property
    def burst(self) -> float:
        """Edits the budget grants at once (in one window)."""

    def join(self) -> None:
        """A reply starts streaming: it will need a final edit."""

    def leave(self) -> None:
        """The reply has made its final edit (or given up)."""

    async def acquire(self, *, urgent: bool = False, first: bool = False, cut: bool = False) -> None:
        """Wait for one edit: final (``urgent``) before a message's end (``urgent`` and ``cut``)
        before a reply's first text (``first``) before interim."""

    def pause(self, seconds: float) -> None:
        """The platform said 429: nobody edits for ``seconds``."""

    def room(self) -> float:
        """Edits that could be granted now beyond the room kept for final edits (an estimate)."""

    def next_grant(self) -> float:
        """Seconds before an urgent edit could be granted (0: now; an estimate)."""

    async def aclose(self) -> None:
        """Stop any background work (at shutdown)."""


def priority_of(urgent: bool, first: bool, cut: bool) -> int:
    if urgent:
        return CUT if cut else FINAL
    return FIRST if first else INTERIM


def window_wait(grants: Sequence[float], now: float, window: float, burst: int, needed: int) -> float:
    """Seconds until ``needed`` more edits fit a sliding ``window`` holding at most ``burst``;
    0 when they fit now.  ``grants`` are the times of the grants still in the window, oldest first."""
    missing = needed - (burst - len(grants))
    if missing <= 0:
        return 0.0
    if missing > len(grants):  # more than the whole window: never (the caller bounds needed)
        return window
    return max(0.0, grants[missing - 1] + window - now)


class EditBudget:
    def __init__(
        self,
        per_minute: float,
        burst: int | None = None,
        *,
        window: float | None = None,
        reserve: bool = False,
        adapt: bool = False,
        keep_from: int = FIRST,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(1, int(per_minute // 6)))
        self.window = window
        self.reserve = reserve
        self.keep_from = keep_from  # the first priority that must leave the room (``reserve``)
        self.adapt = adapt and window is not None
        self._most, self._least = self.burst * ADAPT_UP_TO, max(1.0, self.burst // ADAPT_UP_TO)
        self._limited_at = time.monotonic()  # the last 429 (an adapting budget starts as if it had one)
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._grants: deque[float] = deque()  # grant times within the window (window mode)
        self._paused_until = 0.0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self.granted = 0
        self.active = 0  # replies streaming (``join``) that will need a final edit

    # -- replies --------------------------------------------------------------------------

    def join(self) -> None:
        """A reply starts streaming: keep room for its final edit (``reserve``)."""
        self.active += 1

    def leave(self) -> None:
        """The reply has made its final edit (or given up)."""
        self.active = max(0, self.active - 1)
        if self._waiters:
            self._schedule()

    # -- counting -------------------------------------------------------------------------

    def _available(self, now: float) -> float:
        if self.window is not None:
            while self._grants and self._grants[0] <= now - self.window:
                self._grants.popleft()
            return self.burst - len(self._grants)
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        return self._tokens

    def room(self) -> float:
        """Edits that could be granted now beyond the room kept for final edits."""
        now = time.monotonic()
        if now < self._paused_until:
            return 0.0
        return self._available(now) - (self._needed(FIRST) - 1)

    def next_grant(self) -> float:
        """Seconds before an urgent edit could be granted (0: now), counting the urgent waiters."""
        now = time.monotonic()
        self._available(now)
        ahead = sum(1 for priority, _, future in self._waiters if priority == FINAL and not future.done())
        if 1 + ahead > self.burst:
            return self.window or (1 + ahead - self._tokens) / self.rate
        return max(self._paused_until - now, self._free_in(now, 1 + ahead))

    def _take(self, now: float) -> None:
        self.granted += 1
        if self.window is not None:
            if self.adapt and len(self._grants) + 1 >= self.burst and now - self._limited_at > 2 * self.window:
                self.burst = min(self._most, self.burst + 1)  # used up, no 429 for a while: try one more
            self._grants.append(now)
        else:
            self._tokens -= 1

    def _needed(self, priority: int) -> float:
        """Edits that must be available to grant one at ``priority``."""
        if priority < self.keep_from or not self.reserve:
            return 1.0
        return 1.0 + min(self.active, self.burst - 1)

    def _free_in(self, now: float, needed: float) -> float:
        """Seconds until ``needed`` edits are available (ignoring new grants)."""
        if self.window is not None:
            missing = int(needed - (self.burst - len(self._grants)))
            if missing <= 0:
                return 0.0
            return max(0.0, self._grants[missing - 1] + self.window - now)
        return max(0.0, (needed - self._tokens) / self.rate)

    # -- the API --------------------------------------------------------------------------

    async def acquire(self, *, urgent: bool = False, first: bool = False, cut: bool = False) -> None:
        """Wait for one edit: ``urgent`` (final edits) first, ``cut`` ones after the others, then
        ``first`` (a reply's first text), then interim edits."""
        priority = priority_of(urgent, first, cut)
        now = time.monotonic()
        available = self._available(now)
        if not self._waiters and now >= self._paused_until and available >= self._needed(priority):
            self._take(now)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (priority, next(self._seq), future)
        heapq.heappush(self._waiters, entry)
        self._schedule()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._give_back()  # granted and abandoned
            elif entry in self._waiters:
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)
            raise

    async def aclose(self) -> None:
        """Nothing runs in the background of an in-process budget."""

    def _give_back(self) -> None:
        self.granted -= 1
        if self.window is not None:
            if self._grants:
                self._grants.pop()
        else:
            self._tokens += 1

    def pause(self, seconds: float) -> None:
        """The platform said 429: nobody edits for ``seconds``."""
        now = time.monotonic()
        self._paused_until = max(self._paused_until, now + seconds)
        self._available(now)
        if self.adapt:
            self._limited_at = now
            self.burst = max(self._least, min(self.burst, float(len(self._grants))))
        if self.window is None:
            self._tokens = min(self._tokens, 0.0)
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._waiters:
            return
        now = time.monotonic()
        self._available(now)
        needed = self._needed(self._waiters[0][0])
        wait = max(self._paused_until - now, self._free_in(now, needed))
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(wait, 0.0), self._dispatch)

    def _dispatch(self) -> None:
        self._timer = None
        now = time.monotonic()
        while self._waiters and now >= self._paused_until:
            priority, _, future = self._waiters[0]
            if future.done():
                heapq.heappop(self._waiters)
                continue
            if self._available(now) < self._needed(priority):
                break
            heapq.heappop(self._waiters)
            self._take(now)
            future.set_result(None)
        self._schedule()
