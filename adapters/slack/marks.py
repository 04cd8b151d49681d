"""The :eyes: mark on a question whose answer starts without a placeholder (a busy workspace).

Slack limits reactions per method, per app, per workspace: ``reactions.add`` is Tier 3 (50 a
minute), ``reactions.remove`` Tier 2 (20).  A mark is added only while the add budget has room
at once and fewer than a minute's worth of removals are waiting, so no call is refused and no
mark stays up long after its answer showed; a removal waits its turn in the remove budget.  Both
budgets are the core's (``Core.edit_budget``: shared by the replicas on a shared database).
Without the ``reactions:write`` scope the first refusal is logged and no mark is tried again.
A mark a process left behind when it died (the question answered again after the restart) is
taken as this answer's own, and comes off with it.
"""

from __future__ import annotations

import asyncio
import logging

from slack_sdk.errors import SlackApiError

from bot.errors import PlatformError
from bot.pacing import EditPacer

from .api import SlackApi, error_code

log = logging.getLogger(__name__)

NAME = "eyes"
ADDS_PER_MINUTE = 50
REMOVES_PER_MINUTE = 20
#: how long an add may wait for its grant (a shared budget asks the database) before it is skipped
ADD_WAIT = 0.5
#: 429s a removal still waits out (another app or replica may have spent the budget)
REMOVE_RETRIES = 3


class Marks:
    """One workspace's :eyes: marks."""

    def __init__(self, api: SlackApi, adds: EditPacer, removes: EditPacer) -> None:
        self.api, self.adds, self.removes = api, adds, removes
        self.waiting = 0  # removals waiting for the remove budget

    def room(self) -> bool:
        """Can a mark go up now (and come down within about a minute)?"""
        return (
            "reactions.add" not in self.api.unscoped
            and self.waiting < REMOVES_PER_MINUTE
            and self.adds.next_grant() == 0
        )

    async def add(self, channel: str, ts: str) -> bool:
        """Put the mark on message ``ts``; False when it is not there (no room, refused)."""
        if not self.room():
            return False
        try:
            async with asyncio.timeout(ADD_WAIT):
                await self.adds.acquire()
        except TimeoutError:
            return False
        return await self._call("reactions.add", channel, ts)

    async def remove(self, channel: str, ts: str) -> None:
        """Take the mark off message ``ts``, in its turn."""
        self.waiting += 1
        try:
            await self.removes.acquire()
        finally:
            self.waiting -= 1
        await self._call("reactions.remove", channel, ts, retries=REMOVE_RETRIES)

    async def _call(self, method: str, channel: str, ts: str, *, retries: int = 0) -> bool:
        try:
            await self.api.call(method, channel=channel, timestamp=ts, name=NAME, retries=retries)
        except PlatformError as exc:
            if _code(exc) == "already_reacted":  # left by a process that died before taking it off
                return True
            log.info("%s :%s: on %s: %s", method, NAME, ts, exc)
            return False
        return True


def _code(exc: PlatformError) -> str:
    """Slack's error code behind ``exc`` (``SlackApi`` raises ours from slack_sdk's)."""
    cause = exc.__cause__
    return error_code(cause) if isinstance(cause, SlackApiError) else ""
