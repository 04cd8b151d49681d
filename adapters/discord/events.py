"""When the bot answers a Discord message: pure decisions on plain facts.

``facts_of`` reads what matters from a ``discord.Message``; ``decide`` says
whether (and why) to answer it.  Nothing here does I/O, so every rule is
tested without a client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

import discord

from bot.settings import Settings


class Trigger(str, Enum):
    DM = "dm"
    THREAD = "thread"  # any message in a thread the bot started
    MENTION = "mention"
    REPLY = "reply"  # a reply to one of the bot's messages


#: Message types a person writes; joins, pins, thread notices ... are ignored.
ANSWERABLE_TYPES = frozenset({discord.MessageType.default, discord.MessageType.reply})


@dataclass(frozen=True, slots=True)
class Policy:
    """Which messages the bot reads at all.  Who may ask (allowlists, block lists) is the core's."""

    allow_bots: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(allow_bots=settings.discord_allow_bots)


@dataclass(frozen=True, slots=True)
class MessageFacts:
    author_id: int
    author_is_bot: bool
    is_own: bool
    answerable_type: bool
    guild_id: int | None  # None in DMs
    channel_id: int
    parent_id: int | None = None  # the channel a thread belongs to
    in_own_thread: bool = False
    mentions_bot: bool = False
    replies_to_bot: bool = False
    role_ids: frozenset[int] = field(default_factory=frozenset)


def facts_of(message: discord.Message, bot_id: int) -> MessageFacts:
    channel = message.channel
    thread = channel if isinstance(channel, discord.Thread) else None
    resolved = message.reference.resolved if message.reference is not None else None
    roles = getattr(message.author, "roles", None) or []
    return MessageFacts(
        author_id=message.author.id,
        author_is_bot=message.author.bot or message.webhook_id is not None,
        is_own=message.author.id == bot_id,
        answerable_type=message.type in ANSWERABLE_TYPES,
        guild_id=message.guild.id if message.guild is not None else None,
        channel_id=channel.id,
        parent_id=thread.parent_id if thread is not None else None,
        in_own_thread=thread is not None and thread.owner_id == bot_id,
        mentions_bot=mentions(message.content or "", bot_id) or any(u.id == bot_id for u in message.mentions),
        replies_to_bot=isinstance(resolved, discord.Message) and resolved.author.id == bot_id,
        role_ids=frozenset(r.id for r in roles),
    )


def mentions(content: str, user_id: int) -> bool:
    return re.search(rf"<@!?{user_id}>", content) is not None


def decide(facts: MessageFacts, policy: Policy) -> Trigger | None:
    """Why to answer this message, or None to leave it alone."""
    if facts.is_own or not facts.answerable_type:
        return None
    if facts.author_is_bot and not policy.allow_bots:
        return None
    if facts.guild_id is None:
        return Trigger.DM
    if facts.in_own_thread:
        return Trigger.THREAD
    if facts.mentions_bot:
        return Trigger.MENTION
    if facts.replies_to_bot:
        return Trigger.REPLY
    return None
