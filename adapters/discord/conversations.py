"""Where a Discord message's conversation is, and where its answer goes.

``Conversations`` reads the turns of a DM, a thread or a reply chain (through
``history.HistoryReader``) within the core's token budget, and opens the
thread an answer goes to in thread reply mode.  The small functions below say
which conversation a message belongs to and who is asking.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import discord

from bot.access import Caller
from bot.conversation import Turn
from bot.tokens import TokenCounter

from . import format as fmt
from .events import Trigger
from .history import HistoryReader
from .surface import MAPPED, map_error

log = logging.getLogger(__name__)

THREAD_NAME_LIMIT = 90
THREAD_ARCHIVE_MINUTES: Literal[60, 1440, 4320, 10080] = 1440  # the values Discord takes
#: Discord's error code when a message already has a thread
THREAD_EXISTS = 160004


class Conversations:
    def __init__(self, client: discord.Client) -> None:
        self.client = client
        self.reader = HistoryReader(client, 0)

    async def turns(
        self, message: discord.Message, trigger: Trigger, budget: int, counter: TokenCounter
    ) -> list[Turn] | None:
        """The conversation ending with ``message``; None when it has nothing to answer (stay silent)."""
        self.reader.budget, self.reader.count = budget, counter.count  # the core's budget and counter
        try:
            turns = await self._read(message, trigger)
        except MAPPED as exc:
            log.warning("discord message %s: could not read the conversation: %s", message.id, map_error(exc))
            turns = []
        if not asks(message, turns):
            if trigger is not Trigger.MENTION:  # an image or sticker in a conversation: stay silent
                log.info("discord message %s: no text to answer (%s)", message.id, trigger.value)
                return None
            return [Turn("user", "")]  # an explicit mention without text: the core says "empty"
        return turns

    async def _read(self, message: discord.Message, trigger: Trigger) -> list[Turn]:
        channel = message.channel
        if trigger is Trigger.DM:
            return await self.reader.direct(message)
        if trigger is Trigger.THREAD and isinstance(channel, discord.Thread):
            return await self.reader.thread(message, channel)
        return await self.reader.reply_chain(message)

    async def open_thread(self, message: discord.Message, turns: list[Turn]) -> discord.Thread | None:
        """A new thread on ``message`` for its answer; None (reply instead) when it cannot be opened."""
        name = thread_name(turns[-1].text if turns else "")
        try:
            return await message.create_thread(name=name, auto_archive_duration=THREAD_ARCHIVE_MINUTES)
        except MAPPED as exc:
            if isinstance(exc, discord.HTTPException) and exc.code == THREAD_EXISTS:
                # Opened for this question before a restart (the answer had not shown yet): the
                # answer belongs in it.
                thread = await self.thread_of(message)
                if thread is not None:
                    return thread
            log.warning("discord message %s: no thread (%s); replying instead", message.id, map_error(exc))
            return None

    async def thread_of(self, message: discord.Message) -> discord.Thread | None:
        """The thread started from ``message`` (it has the message's id)."""
        thread = self.client.get_channel(message.id)
        if thread is None:
            try:
                thread = await self.client.fetch_channel(message.id)
            except MAPPED as exc:
                log.info("discord message %s: its thread could not be read: %s", message.id, map_error(exc))
                return None
        return thread if isinstance(thread, discord.Thread) else None


def asks(message: discord.Message, turns: list[Turn]) -> bool:
    """Whether ``message`` has text to answer (it is the last turn)."""
    return bool(turns) and turns[-1].message_id == f"discord:{message.id}"


def thread_name(question: str) -> str:
    """A thread title from the question's first line."""
    first = fmt.neutralise(question.strip().split("\n", 1)[0]).strip() or "Answer"
    if len(first) > THREAD_NAME_LIMIT:
        first = first[: THREAD_NAME_LIMIT - 1].rstrip() + "…"
    return first


def conversation_key(message: discord.Message, channel: Any) -> str:
    """Answers in one conversation run in order; different conversations run side by side."""
    if isinstance(channel, discord.Thread):
        return f"thread:{channel.id}"
    if message.guild is None:
        return f"dm:{channel.id}"
    # A reply chain: keyed by the message it replies to (or itself), so a chain's answers queue.
    root = message.reference.message_id if message.reference is not None else None
    return f"chain:{root or message.id}"


def message_caller(message: discord.Message) -> Caller:
    channel = message.channel
    return Caller(
        "discord",
        str(message.author.id),
        str(getattr(channel, "parent_id", None) or channel.id),
        str(message.guild.id) if message.guild is not None else None,
        roles(message.author),
        direct=message.guild is None,
    )


def interaction_caller(interaction: discord.Interaction) -> Caller:
    channel = interaction.channel
    return Caller(
        platform="discord",
        user=str(interaction.user.id),
        channel=str(getattr(channel, "parent_id", None) or interaction.channel_id),
        workspace=str(interaction.guild_id) if interaction.guild_id is not None else None,
        roles=roles(interaction.user),
        direct=interaction.guild_id is None,
    )


def roles(user: discord.abc.User) -> frozenset[str]:
    return frozenset(str(role.id) for role in getattr(user, "roles", []))
