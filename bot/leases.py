"""Who answers what when there are several replicas: heartbeats and the takeover of orphans.

Every process heartbeats into the ``replicas`` table.  A request belongs to the
process that accepted it (its ``owner``); when that owner has not heartbeat for
``LEASE`` seconds it is gone, and its open requests are orphans.  ``Leases``
takes them over and hands them to ``bot.recovery``, which settles them exactly
as after a restart (a half answer gets its note, an unshown question is
answered or told it was not).

* SQLite (one process per file): at start-up every other owner is gone, so the
  orphans are taken once and nothing runs afterwards.
* PostgreSQL (``store.shared``): the start-up takes only requests whose owner is
  gone (a replica starting never touches a live one's), then every
  ``HEARTBEAT_EVERY`` seconds each replica heartbeats and takes what a replica
  that died left.  ``take_orphans`` locks rows ``FOR UPDATE SKIP LOCKED`` and
  moves them to the taker in one statement, so nothing is settled twice.
  About once a minute a replica also sweeps the rows of shared limits that no
  longer count (``shared_limits.sweep``).

A replica that dies is noticed within ``LEASE`` + ``HEARTBEAT_EVERY`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

from . import shared_limits
from .errors import RelayError
from .incoming import Platform
from .store import HEARTBEAT_EVERY, LEASE, Store

log = logging.getLogger(__name__)

Settle = Callable[[Platform, float], Awaitable[int]]

#: Seconds between two sweeps of shared limits' rows that no longer count.
SWEEP_EVERY = 60.0


class Leases:
    def __init__(
        self,
        store: Store,
        owner: str,
        settle: Settle,
        *,
        every: float = HEARTBEAT_EVERY,
        lease: float = LEASE,
        sweep_every: float = SWEEP_EVERY,
    ) -> None:
        self.store = store
        self.owner = owner
        self.settle = settle  # settle ``platform``'s orphans (owners silent since a time): how many
        self.every = every
        self.lease = lease
        self.sweep_every = sweep_every
        self.platforms: dict[str, Platform] = {}
        self._loops: list[asyncio.Task[None]] = []

    def alive_since(self) -> float:
        """Owners that heartbeat since this moment are alive; with SQLite no other owner is."""
        return time.time() - self.lease if self.store.shared else math.inf

    async def start(self, platform: Platform) -> int:
        """Heartbeat, settle ``platform``'s orphans now, and (shared database) keep doing both."""
        await self.store.heartbeat(self.owner)
        self.platforms[platform.name] = platform
        if self.store.shared and not self._loops:
            # Heartbeats have a task of their own: settling orphans can take long (a final edit
            # is retried for a while), and must never make this live replica look dead.
            self._loops = [
                asyncio.create_task(self._beat(), name="heartbeat"),
                asyncio.create_task(self._take_over(), name="takeover"),
            ]
        return await self.settle(platform, self.alive_since())

    async def stop(self) -> None:
        """No more heartbeats (after the drain): what is still open becomes an orphan."""
        loops, self._loops = self._loops, []
        for loop in loops:
            loop.cancel()
        await asyncio.gather(*loops, return_exceptions=True)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self._guarded("heartbeat", self.store.heartbeat(self.owner))

    async def _take_over(self) -> None:
        next_sweep = time.monotonic() + self.sweep_every
        while True:
            await asyncio.sleep(self.every)
            for platform in list(self.platforms.values()):
                settled = await self._guarded("takeover", self.settle(platform, self.alive_since()))
                if settled:
                    log.info("%s: took over %d request(s) a stopped replica left open", platform.name, settled)
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self.sweep_every
                await self._guarded("sweep", shared_limits.sweep(shared_limits.pooled(self.store)))

    @staticmethod
    async def _guarded(what: str, work: Awaitable[int | None]) -> int | None:
        """One round of a loop that must outlive any one failure (the next round tries again)."""
        try:
            return await work
        except RelayError as exc:  # the database is away
            log.warning("replica %s: %s", what, exc)
        except Exception:  # logged: a dead loop would let this live replica's replies be taken over
            log.exception("replica %s failed; trying again at the next beat", what)
        return None
