"""An edited question on Discord (a message update): answered again in place, or not.

Discord sends a message update for every edit, the bot's own included (each streamed edit),
and for embeds resolving; ``question_edit`` decides from the event alone (no call): a person's
message whose text changed, that the bot would answer, asked within ``EDIT_WINDOW``.  Then the
channel is read after the question: the bot's answer must be all that follows it (still the
latest message), and its buttons carry the reply key the core needs.  An answer in a thread of
its own (``DISCORD_REPLY_MODE=thread``; the thread has the question's id) is looked for there
instead: it must be all the thread holds.  The core decides the rest (``Core.reanswer``): the
asker's own question, once per edit, answered into the old message.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import discord

from bot.controls import EDIT_WINDOW

from .buttons import parse
from .events import Trigger, decide, facts_of
from .parsers import UNREADABLE
from .surface import MAPPED, map_error

log = logging.getLogger(__name__)

#: messages read after an edited question: more than this and the answer is not the latest
AFTER = 10


def question_edit(payload: discord.RawMessageUpdateEvent, bot_id: int) -> bool:
    """Whether an update is a person's recent edit of their text (before any call)."""
    message = payload.message
    if message.author.id == bot_id or message.author.bot or message.edited_at is None:
        return False
    before = payload.cached_message
    if before is not None and before.content == message.content:
        return False
    return time.time() - message.created_at.timestamp() <= EDIT_WINDOW


def reply_key(message: discord.Message) -> str | None:
    """The reply key on the first of our buttons a message shows."""
    for row in message.components:
        for item in getattr(row, "children", ()):
            parsed = parse(getattr(item, "custom_id", None))
            if parsed is not None:
                return parsed[1]
    return None


class DiscordEdits:
    def __init__(self, client: Any) -> None:
        self.client = client  # the ``RelayClient``

    async def on_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        me = self.client.user
        if me is None or not question_edit(payload, me.id):
            return
        message = payload.message
        try:
            trigger = decide(facts_of(message, me.id), self.client.policy)
        except UNREADABLE as exc:
            log.warning("discord: ignored an edit it could not read (%s)", type(exc).__name__)
            return
        if trigger is None:
            return
        key = await self._latest_answer(message, trigger, me.id)
        if key is None:
            log.info("discord: message %s edited, but its answer is not the latest; left alone", message.id)
            return
        incoming = self.client.requests.incoming(message, trigger, keys=())
        edited_at = message.edited_at.timestamp() if message.edited_at else 0.0
        edit = f"{message.channel.id}:{message.id}:{edited_at}"
        if not await self.client.core.reanswer(self.client, key, incoming, edit, message.created_at.timestamp()):
            log.info("discord: message %s edited; not answered again", message.id)

    async def _latest_answer(self, message: discord.Message, trigger: Trigger, bot_id: int) -> str | None:
        """The reply key of the bot's answer to ``message`` when it is all that follows it: in the
        thread opened from it (thread reply mode), else in its channel."""
        if self.client.requests.in_thread(message, trigger):
            thread = await self.client.conversations.thread_of(message)
            if thread is not None:
                return await _latest(thread, None, bot_id)
        return await _latest(message.channel, message, bot_id)


async def _latest(channel: Any, after: discord.Message | None, bot_id: int) -> str | None:
    """The reply key on the last of the messages of ``channel`` (``after`` a message, or all of a
    thread's) when they are all the bot's; None otherwise."""
    try:
        later = [
            m async for m in channel.history(limit=AFTER + 1, after=after, oldest_first=True)
            if m.type is not discord.MessageType.thread_starter_message  # a thread's link to its question
        ]
    except MAPPED as exc:
        log.info("discord: could not read after an edited question: %s", map_error(exc))
        return None
    if not later or len(later) > AFTER or any(m.author.id != bot_id for m in later):
        return None
    return reply_key(later[-1])
