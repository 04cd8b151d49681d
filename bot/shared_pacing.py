"""An edit budget every replica draws from: ``EditBudget``'s rules, counted in PostgreSQL.

``SharedEditBudget`` behaves like ``pacing.EditBudget`` in sliding-window mode,
with the window counted across replicas (``shared_limits``):

* each grant is one transaction under the budget's advisory lock: at most
  ``burst`` grants in any ``window`` seconds, whoever asks;
* with ``reserve``, a first or interim edit is granted only if a final edit for
  every reply still streaming on *any* replica would still fit (each replica
  publishes its count of streaming replies: on ``join``/``leave`` and every
  ``HEARTBEAT_EVERY`` while it has some);
* a 429 (``pause``) stops this replica at once and every other one from its
  next grant on; with ``adapt`` each replica learns ``burst`` from its 429s
  as ``EditBudget`` does (from the grants it counts in the window);
* locally, waiters queue by priority (final, a message's end, first text,
  interim), and one
  task per budget asks the database for this replica's next grant.  When none
  is possible it sleeps until the oldest grant leaves the window, at most
  ``MAX_SLEEP`` (other replicas' replies ending can free room earlier).

The database away (``StoreUnavailable``, or no answer within ``GRANT_WAIT``)
must not stop replies: the budget then grants locally, by the same rules over
this replica's own grants, for ``LOCAL_FOR`` seconds before asking the database
again.  Several replicas doing so at once may exceed the platform's limit; its
429s then pause each of them.

``edit_budget`` picks the budget for a store: shared on PostgreSQL, the
in-process ``EditBudget`` (unchanged, no database round trip) on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections import deque

from . import shared_limits
from .errors import StoreUnavailable
from .pacing import ADAPT_UP_TO, CUT, FINAL, FIRST, EditBudget, EditPacer, priority_of, window_wait
from .shared_limits import EditWindow, Pooled
from .store import HEARTBEAT_EVERY, Store

log = logging.getLogger(__name__)

#: Longest sleep before asking the database again while no edit can be granted (seconds).
MAX_SLEEP = 1.0
#: How long one grant may take before the budget grants locally instead (seconds).
GRANT_WAIT = 2.0
#: After the database failed, how long to grant locally before trying it again (seconds).
LOCAL_FOR = 5.0


def edit_budget(
    store: Store,
    key: str,
    owner: str,
    per_minute: float,
    *,
    burst: int | None = None,
    window: float | None = None,
    reserve: bool = False,
    adapt: bool = False,
) -> EditPacer:
    """A new budget for ``key``: shared between replicas on a shared store, else in-process."""
    if store.shared:
        return SharedEditBudget(shared_limits.pooled(store), key, owner, per_minute, burst, window, reserve, adapt)
    return EditBudget(per_minute, burst, window=window, reserve=reserve, adapt=adapt)


class SharedEditBudget:
    def __init__(
        self,
        store: Pooled,
        key: str,
        owner: str,
        per_minute: float,
        burst: int | None = None,
        window: float | None = None,
        reserve: bool = False,
        adapt: bool = False,
    ) -> None:
        self.store = store
        self.key = key  # e.g. "slack:T1:chat.update"
        self.owner = owner  # this replica
        self.burst = int(burst if burst is not None else max(1, int(per_minute // 6)))
        # A token bucket is not shared: its burst refills over burst / rate, counted as a window.
        self.window = window if window is not None else 60.0 * self.burst / max(per_minute, 1e-9)
        self.reserve = reserve
        self.adapt = adapt
        self._most, self._least = self.burst * ADAPT_UP_TO, max(1, int(self.burst // ADAPT_UP_TO))
        self._limited_at = time.monotonic()  # this replica's last 429
        self.active = 0  # replies streaming on this replica
        self.granted = 0  # edits granted to this replica
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._paused_until = 0.0  # monotonic: this replica's own 429s stop it at once
        self._local_until = 0.0  # monotonic: grant locally until then (the database failed)
        self._recent: deque[float] = deque()  # monotonic times of this replica's grants in the window
        self._wake = asyncio.Event()  # the queue or the streams changed: look again now
        self._streams_changed = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()

    # -- replies ----------------------------------------------------------------------------

    def join(self) -> None:
        self.active += 1
        self._publish()

    def leave(self) -> None:
        self.active = max(0, self.active - 1)
        self._publish()
        self._wake.set()  # less room to keep: a waiter may go now

    def _publish(self) -> None:
        self._streams_changed.set()
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.get_running_loop().create_task(self._publish_streams(), name=f"streams-{self.key}")

    async def _publish_streams(self) -> None:
        """Keep this replica's row in ``edit_streams`` current (and fresh) while it streams."""
        while True:
            self._streams_changed.clear()
            active = self.active
            try:
                async with asyncio.timeout(GRANT_WAIT):
                    await shared_limits.publish_streams(self.store, self.key, self.owner, active)
            except (StoreUnavailable, TimeoutError) as exc:
                log.warning("edit budget %s: could not publish streaming replies: %s", self.key, exc)
            if active == 0 and self.active == 0 and not self._streams_changed.is_set():
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HEARTBEAT_EVERY):
                    await self._streams_changed.wait()

    # -- the API ------------------------------------------------------------------------------

    async def acquire(self, *, urgent: bool = False, first: bool = False, cut: bool = False) -> None:
        priority = priority_of(urgent, first, cut)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (priority, next(self._seq), future)
        heapq.heappush(self._waiters, entry)
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch(), name=f"edits-{self.key}")
        elif self._waiters[0] is entry:
            self._wake.set()  # more urgent than what the dispatcher waits for: it may need less room
        try:
            await future
        except asyncio.CancelledError:
            if not future.done() and entry in self._waiters:
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)
            raise  # a grant already made for it is spent: counted, unused (the safe side)

    def room(self) -> float:
        """This replica's estimate (no database round trip): its own grants of the window, its own
        streaming replies.  Other replicas' use only shows in the grants it is refused."""
        now = time.monotonic()
        if now < self._paused_until:
            return 0.0
        while self._recent and self._recent[0] <= now - self.window:
            self._recent.popleft()
        return float(self.burst - len(self._recent) - (self._needed(FIRST, self.active) - 1))

    def next_grant(self) -> float:
        """This replica's estimate: its pause, its own grants of the window, its urgent waiters."""
        now = time.monotonic()
        while self._recent and self._recent[0] <= now - self.window:
            self._recent.popleft()
        ahead = sum(1 for priority, _, future in self._waiters if priority == FINAL and not future.done())
        if 1 + ahead > self.burst:
            return self.window
        return max(self._paused_until - now, window_wait(list(self._recent), now, self.window, self.burst, 1 + ahead))

    def pause(self, seconds: float) -> None:
        now = time.monotonic()
        if self.adapt:  # as ``EditBudget``: the platform took what this replica counts in the window
            self._limited_at = now
            self._recent = deque(t for t in self._recent if t > now - self.window)
            self.burst = max(self._least, min(self.burst, len(self._recent)))
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        task = asyncio.get_running_loop().create_task(self._write_pause(seconds), name=f"pause-{self.key}")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write_pause(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(GRANT_WAIT):
                await shared_limits.pause_edits(self.store, self.key, seconds)
        except (StoreUnavailable, TimeoutError) as exc:
            log.warning("edit budget %s: could not share a pause: %s", self.key, exc)

    async def aclose(self) -> None:
        """Stop the background work (the service's drain); waiters left are cancelled."""
        tasks = [t for t in (self._dispatcher, self._publisher, *self._writes) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _, _, future in self._waiters:
            future.cancel()
        self._waiters.clear()

    # -- granting -----------------------------------------------------------------------------

    def _top(self) -> tuple[int, int, asyncio.Future[None]] | None:
        while self._waiters and self._waiters[0][2].done():
            heapq.heappop(self._waiters)
        return self._waiters[0] if self._waiters else None

    async def _dispatch(self) -> None:
        """Grant this replica's waiters one by one, most urgent first, while there are any."""
        while (entry := self._top()) is not None:
            self._wake.clear()
            wait = await self._try(entry[0])
            if wait <= 0:
                self._hand_out(entry[0])
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(wait, MAX_SLEEP)):
                    await self._wake.wait()

    def _hand_out(self, priority: int) -> None:
        """Give a grant made for ``priority`` to the most urgent waiter, unless it is less urgent
        (the room kept for final edits was checked for ``priority``): then it is spent unused."""
        entry = self._top()
        if entry is None or entry[0] > priority:
            return
        heapq.heappop(self._waiters)
        self.granted += 1
        now = time.monotonic()
        if self.adapt and len(self._recent) + 1 >= self.burst and now - self._limited_at > 2 * self.window:
            self.burst = min(int(self._most), self.burst + 1)  # used up, no 429 for a while: try one more
        self._remember(now)
        entry[2].set_result(None)

    def _remember(self, now: float) -> None:
        """Keep this replica's grants of the last window (what it counts while the database is away)."""
        while self._recent and self._recent[0] <= now - self.window:
            self._recent.popleft()
        self._recent.append(now)

    async def _try(self, priority: int) -> float:
        """0.0 when one edit at ``priority`` was granted, else the seconds to wait."""
        now = time.monotonic()
        if now < self._paused_until:
            return self._paused_until - now
        if now >= self._local_until:
            try:
                async with asyncio.timeout(GRANT_WAIT):
                    return await shared_limits.grant_edit(
                        self.store, self.key, self.owner, self.window, lambda state: self._decide(state, priority)
                    )
            except (StoreUnavailable, TimeoutError) as exc:
                log.warning("edit budget %s: granting locally for %.0f s: %s", self.key, LOCAL_FOR, exc)
                self._local_until = time.monotonic() + LOCAL_FOR
            except Exception:  # any other database error: logged in full, and replies go on
                log.exception("edit budget %s: granting locally for %.0f s", self.key, LOCAL_FOR)
                self._local_until = time.monotonic() + LOCAL_FOR
        return self._decide_locally(priority)

    def _needed(self, priority: int, active: int) -> int:
        if priority <= CUT or not self.reserve:
            return 1
        return 1 + min(active, self.burst - 1)

    def _decide(self, state: EditWindow, priority: int) -> float:
        if state.paused_until > state.now:
            return state.paused_until - state.now
        needed = self._needed(priority, state.others_active + self.active)
        return window_wait(state.grants, state.now, self.window, self.burst, needed)

    def _decide_locally(self, priority: int) -> float:
        """The same rules over this replica's own grants (the database is away)."""
        now = time.monotonic()
        while self._recent and self._recent[0] <= now - self.window:
            self._recent.popleft()
        return window_wait(list(self._recent), now, self.window, self.burst, self._needed(priority, self.active))
