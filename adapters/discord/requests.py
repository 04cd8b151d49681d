"""A Discord message that asks the bot something, as the core's ``Incoming``.

The message snowflake is the dedupe key; the caller, the conversation key and
the history reader come from ``conversations``; the answer goes into a reply,
the thread or DM itself, or (thread reply mode) a new thread opened once the
core has decided to answer.  ``origin`` holds what a restart needs to rebuild
the request (``RelayClient.revive``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import discord

from bot.conversation import Turn
from bot.incoming import Incoming
from bot.settings import Settings
from bot.surface import Surface
from bot.tokens import TokenCounter

from .conversations import Conversations, conversation_key, message_caller
from .events import Trigger
from .pacing import Budgets, Watch
from .surface import ChannelSurface, EarlyTyping

if TYPE_CHECKING:
    from discord.abc import PartialMessageableChannel

Keys = tuple[tuple[str, str], ...]


class MessageRequests:
    def __init__(
        self, conversations: Conversations, settings: Settings, budgets: Budgets, watch: Callable[[int], Watch]
    ) -> None:
        self.conversations = conversations
        self.threads = settings.discord_reply_mode == "thread"
        self.budgets = budgets
        self.watch = watch

    def incoming(self, message: discord.Message, trigger: Trigger, keys: Keys) -> Incoming:
        channel = message.channel
        reply_to = None if trigger in (Trigger.DM, Trigger.THREAD) else message.id
        # Typing as the history is read (the first platform call sooner by the read and the
        # routing); only for a question with words, which is always answered.
        typing = EarlyTyping(channel, channel.id) if (message.content or "").strip() else None

        async def read(budget: int, counter: TokenCounter) -> list[Turn] | None:
            if typing is not None:
                typing.show()
                await asyncio.sleep(0)  # let it go out before the history is read
            return await self.conversations.turns(message, trigger, budget, counter)

        async def open_(turns: list[Turn]) -> Surface:
            surface = await self._open(message, trigger, reply_to, turns)
            if typing is not None:
                typing.hand_over(surface)
            return surface

        return Incoming(
            caller=message_caller(message),
            conversation=conversation_key(message, channel),
            read=read,
            open=open_,
            keys=keys,
            origin={
                "channel": str(channel.id),
                "message": str(message.id),
                "trigger": trigger.value,
                "place": {"kind": "channel", "channel": str(channel.id), "reply_to": reply_to},
            },
            budget=self.budgets.for_channel(channel.id),
        )

    async def _open(
        self, message: discord.Message, trigger: Trigger, reply_to: int | None, turns: list[Turn]
    ) -> ChannelSurface:
        """Where the answer goes: a new thread for a mention in thread mode, else the channel."""
        # A bot is never in a group DM (the one channel kind without partial messages).
        target = cast("PartialMessageableChannel", message.channel)
        if self._wants_thread(message, trigger, turns):
            thread = await self.conversations.open_thread(message, turns)
            if thread is not None:
                target, reply_to = thread, None
        return ChannelSurface(target, reply_to, self.watch(target.id))

    def _wants_thread(self, message: discord.Message, trigger: Trigger, turns: list[Turn]) -> bool:
        return self.in_thread(message, trigger) and bool(turns) and bool(turns[-1].text.strip())

    def in_thread(self, message: discord.Message, trigger: Trigger) -> bool:
        """Whether the answer to ``message`` goes to a thread of its own (opened from it)."""
        return self.threads and trigger is Trigger.MENTION and not isinstance(message.channel, discord.Thread)
