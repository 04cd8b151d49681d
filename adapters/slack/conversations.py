"""What the bot reads of a Slack conversation: its turns, and whether it answered in a thread.

``turns`` reads a thread (or a DM's top level) back within the core's token
budget and turns it into conversation turns ending with the question; the root
of a new thread (an agent DM message) is the question alone.
``followed`` says whether a thread message without a mention is for the bot:
only in threads the bot has answered in (remembered, else read once).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from bot.conversation import Turn
from bot.errors import PlatformError
from bot.tokens import TokenCounter

from . import events
from .api import SlackApi
from .events import Trigger
from .files import SlackFiles
from .history import History

log = logging.getLogger(__name__)

KNOWN_THREADS = 20_000


class Conversations:
    def __init__(self, api: SlackApi, *, followups: bool, files: SlackFiles) -> None:
        self.api = api
        self.files = files
        self.history = History(api)
        self.followups = followups
        self.bot_user: str | None = None
        self.bot_id: str | None = None
        self._threads: OrderedDict[tuple[str, str], bool] = OrderedDict()  # has the bot answered there?

    def identify(self, bot_user: str | None, bot_id: str | None) -> None:
        self.bot_user, self.bot_id = bot_user, bot_id

    # -- threads the bot answered in ------------------------------------------------------------

    async def followed(self, trig: Trigger) -> bool:
        """Whether a thread message without a mention gets an answer: the bot must have answered there."""
        if not self.followups or not trig.thread_ts:
            return False
        key = (trig.channel, trig.thread_ts)
        known = self._threads.get(key)
        if known is None:
            try:
                data = await self.api.call(
                    "conversations.replies", retries=3, channel=trig.channel, ts=trig.thread_ts, limit=200
                )
            except PlatformError as exc:
                log.warning("slack: cannot read thread %s in %s: %s", trig.thread_ts, trig.channel, exc)
                return False
            known = any(self.is_own(m) for m in data.get("messages") or [])
            self.remember(key, known)
        return known

    def remember(self, key: tuple[str, str], answered: bool = True) -> None:
        self._threads[key] = answered
        self._threads.move_to_end(key)
        if len(self._threads) > KNOWN_THREADS:
            self._threads.popitem(last=False)

    def is_own(self, message: Mapping[str, Any]) -> bool:
        return bool(
            (self.bot_id and message.get("bot_id") == self.bot_id)
            or (self.bot_user and message.get("user") == self.bot_user)
        )

    # -- turns ----------------------------------------------------------------------------------

    async def turns(self, trig: Trigger, budget: int, counter: TokenCounter) -> list[Turn]:
        """History (oldest first) ending with the question; a history read failure leaves just the question."""
        messages: Sequence[Mapping[str, Any]] = []
        try:
            if trig.in_thread and trig.thread_ts:
                messages = await self.history.thread(
                    trig.channel, trig.thread_ts, budget, latest=trig.ts, count=counter.count
                )
            elif trig.kind == "dm" and not trig.thread_ts:  # a thread's root (agent view) starts afresh
                messages = await self.history.channel(trig.channel, budget, latest=trig.ts, count=counter.count)
        except PlatformError as exc:
            log.warning("slack: history of %s unavailable (%s); answering the question alone", trig.channel, exc)
        earlier = [m for m in messages if str(m.get("ts")) != trig.ts and _before(m, trig.ts)]
        if trig.kind == "dm" and not trig.in_thread:
            earlier = [m for m in earlier if not m.get("thread_ts") or m.get("thread_ts") == m.get("ts")]
        people = {trig.user, *(user for m in earlier if (user := events.slack_id(m.get("user"))))}
        names = await self.history.names(
            people | events.user_ids([trig.text, *(events.text_of(m) for m in earlier)])
        )
        ids = f"slack:{trig.channel}:"
        turns = events.thread_turns(
            earlier, self.bot_user, self.bot_id, names, labelled=trig.kind != "dm", ids=ids, files=self.files.of
        )
        question = events.plain_text(trig.text, self.bot_user, names)
        author = names.get(trig.user, trig.user) if trig.kind != "dm" else None
        attached = self.files.of({"files": list(trig.files)})
        return [*turns, Turn("user", question, author=author, message_id=f"{ids}{trig.ts}", attachments=attached)]

    async def question(self, trig: Trigger) -> Turn:
        """A slash command's question alone, names resolved."""
        names = await self.history.names({trig.user} | events.user_ids([trig.text]))
        return Turn("user", events.plain_text(trig.text, self.bot_user, names), author=names.get(trig.user))


def _before(message: Mapping[str, Any], ts: str) -> bool:
    return events.ts_key(str(message.get("ts") or "0")) <= events.ts_key(ts)
