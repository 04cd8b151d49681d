"""Reading a conversation back from Slack: thread replies, DM history, display names.

``conversations.replies`` pages run oldest first, so a thread is read to its
end, keeping only a tail big enough to fill the token budget (the oldest
messages beyond it are dropped as pages arrive).  ``conversations.history``
(a DM's top level) runs newest first, so reading stops as soon as the budget
is surely full; sizes are counted with the core's token counter.  Display
names come from ``users.info``, cached.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bot import tokens
from bot.errors import PlatformError

from .api import SlackApi

log = logging.getLogger(__name__)

PAGE = 200
MAX_PAGES = 50
#: read until the raw texts hold this much more than the window (names, markup change counts)
MARGIN = 1.25
LOOKUPS = 8


Count = Callable[[str, "str | None"], int]


def plain_count(text: str, message_id: str | None) -> int:
    return tokens.count(text)


class History:
    def __init__(self, api: SlackApi, *, max_users: int = 5000) -> None:
        self.api = api
        self._names: OrderedDict[str, str] = OrderedDict()
        self._max_users = max_users
        self._lookups = asyncio.Semaphore(LOOKUPS)  # users.info calls at once (Tier 4)

    # -- threads ------------------------------------------------------------------------------

    async def thread(
        self, channel: str, thread_ts: str, budget: int, latest: str | None = None, count: Count = plain_count
    ) -> list[dict]:
        """The thread's messages, oldest first, up to ``latest``; only the tail that fills ``budget``."""
        cost = _estimate(channel, count)
        kept: list[dict] = []
        total = 0
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            data = await self.api.call(
                "conversations.replies",
                retries=3,
                channel=channel,
                ts=thread_ts,
                cursor=cursor,
                limit=PAGE,
                latest=latest,
                inclusive=True if latest else None,
                include_all_metadata=True,
            )
            for message in data.get("messages") or []:
                kept.append(message)
                total += cost(message)
            while len(kept) > 1 and total - cost(kept[0]) > budget * MARGIN:
                total -= cost(kept.pop(0))
            cursor = (data.get("response_metadata") or {}).get("next_cursor") or None
            if not data.get("has_more") or not cursor:
                break
        return kept

    async def channel(self, channel: str, budget: int, latest: str, count: Count = plain_count) -> list[dict]:
        """A DM's top-level messages up to ``latest``, oldest first, stopping once ``budget`` is surely full."""
        cost = _estimate(channel, count)
        newest_first: list[dict] = []
        total = 0
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            data = await self.api.call(
                "conversations.history",
                retries=3,
                channel=channel,
                latest=latest,
                inclusive=True,
                cursor=cursor,
                limit=min(PAGE, 50 if not newest_first else PAGE),
                include_all_metadata=True,
            )
            for message in data.get("messages") or []:
                newest_first.append(message)
                total += cost(message)
                if total > budget * MARGIN:
                    return newest_first[::-1]
            cursor = (data.get("response_metadata") or {}).get("next_cursor") or None
            if not data.get("has_more") or not cursor:
                break
        return newest_first[::-1]

    # -- names ---------------------------------------------------------------------------------

    async def names(self, user_ids: Iterable[str]) -> dict[str, str]:
        """Display names of ``user_ids`` (falling back to the id when a lookup fails)."""
        ids = list(dict.fromkeys(user_ids))
        found = await asyncio.gather(*(self._limited_name(uid) for uid in ids))
        return dict(zip(ids, found, strict=True))

    async def _limited_name(self, user_id: str) -> str:
        if user_id in self._names:
            return await self.name(user_id)
        async with self._lookups:
            return await self.name(user_id)

    async def name(self, user_id: str) -> str:
        cached = self._names.get(user_id)
        if cached is not None:
            self._names.move_to_end(user_id)
            return cached
        try:
            data = await self.api.call("users.info", retries=2, user=user_id)
        except PlatformError as exc:
            log.info("no display name for %s: %s", user_id, exc)
            return user_id
        user = data.get("user") or {}
        profile = user.get("profile") or {}
        name = (
            profile.get("display_name")
            or profile.get("real_name")
            or user.get("real_name")
            or user.get("name")
        )
        name = str(name or user_id)
        self._names[user_id] = name
        if len(self._names) > self._max_users:
            self._names.popitem(last=False)
        return name


def _estimate(channel: str, count: Count) -> Callable[[Mapping[str, Any]], int]:
    """A raw message's size in tokens, for how far back to read (the fit counts the turns).

    Counted through the core's counter under their own ids (the raw text is not the turn's text),
    so a thread read again costs no tokenising.
    """

    def cost(message: Mapping[str, Any]) -> int:
        text = message.get("text")
        text = text if isinstance(text, str) else ""
        return tokens.PER_MESSAGE + count(text, f"slack:raw:{channel}:{message.get('ts')}")

    return cost
