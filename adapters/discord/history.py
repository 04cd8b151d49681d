"""The conversation behind a Discord message, as turns oldest first.

Three shapes: a reply chain (walked back through ``message.reference``, from
discord.py's cache or a small cache of our own, fetched when missing), a
thread the bot started (its history plus the starter message the thread grew
from), or recent direct messages (``recent`` reads any channel that way, for a
summary).  Reading stops once the token budget is
spent (one message more, so the core can say that earlier ones were left
out).  People's messages become user turns labelled with their display name;
the bot's own become assistant turns, a reply split over several messages
joined back into one.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable

import discord

from bot import splitting, tokens
from bot.conversation import Turn
from bot.settings import Settings

from . import format as fmt
from .files import attachments_of
from .surface import MAPPED, map_error

log = logging.getLogger(__name__)

CHAIN_LIMIT = 50  # reply-chain hops
THREAD_LIMIT = 200  # thread messages read
DM_LIMIT = 50  # direct messages read
CACHE_SIZE = 1024

Count = Callable[[str, str | None], int]


def token_budget(settings: Settings) -> int:
    """The most history any configured provider could take, in tokens."""
    windows = [settings.provider(name).context_window for name in settings.provider_order()]
    return max(max(windows, default=8192) - settings.bot_max_tokens, 512)


# -- pure: messages -> turns ----------------------------------------------------------------


def turn_of(message: discord.Message, bot_id: int, *, labelled: bool = True) -> Turn | None:
    """One message as a turn; None when nothing is left to say (an error note, an empty message)."""
    content = message.content or ""  # None in a malformed event
    if message.author.id == bot_id:
        text = fmt.strip_notes(content)
        return Turn("assistant", text, message_id=f"discord:{message.id}") if text.strip() else None
    names = {u.id: u.display_name for u in message.mentions}
    text = fmt.question_text(content, bot_id, names)
    attached = attachments_of(message)
    if not text and not attached:
        return None
    author = message.author.display_name if labelled else None
    return Turn("user", text, author=author, message_id=f"discord:{message.id}", attachments=attached)


def to_turns(messages: Iterable[discord.Message], bot_id: int, *, labelled: bool = True) -> list[Turn]:
    """Messages oldest first -> turns, the bot's back-to-back messages joined into one answer."""
    turns: list[Turn] = []
    parts: list[str] = []  # the texts of the answer being joined
    for message in messages:
        turn = turn_of(message, bot_id, labelled=labelled)
        if turn is None:
            continue
        if turn.role == "assistant" and parts:
            parts.append(turn.text)
            turns[-1] = Turn("assistant", splitting.join_parts(parts))
            continue
        parts = [turn.text] if turn.role == "assistant" else []
        turns.append(turn)
    return turns


# -- I/O: reading history -----------------------------------------------------------------------


class HistoryReader:
    def __init__(self, client: discord.Client, budget: int, count: Count | None = None) -> None:
        self.client = client
        self.budget = budget
        self.count = count or (lambda text, _id: tokens.count(text))
        self._fetched: OrderedDict[int, discord.Message] = OrderedDict()

    @property
    def bot_id(self) -> int:
        assert self.client.user is not None
        return self.client.user.id

    def _cost(self, message: discord.Message, labelled: bool = True) -> int:
        turn = turn_of(message, self.bot_id, labelled=labelled)
        return 0 if turn is None else tokens.PER_MESSAGE + self.count(turn.content(), turn.message_id)

    async def reply_chain(self, message: discord.Message) -> list[Turn]:
        """The message and the replies it continues, oldest first."""
        labelled = message.guild is not None
        chain = [message]
        spent = self._cost(message, labelled)
        current = message
        while len(chain) < CHAIN_LIMIT and spent <= self.budget:
            parent = await self._parent(current)
            if parent is None:
                break
            chain.append(parent)
            spent += self._cost(parent, labelled)
            current = parent
        chain.reverse()
        return to_turns(chain, self.bot_id, labelled=labelled)

    async def thread(self, message: discord.Message, thread: discord.Thread) -> list[Turn]:
        """The thread's messages before ``message`` (within budget), its starter first."""
        newest_first = [message]
        spent = self._cost(message)
        try:
            async for older in thread.history(limit=THREAD_LIMIT, before=message):
                newest_first.append(older)
                spent += self._cost(older)
                if spent > self.budget:
                    break
        except MAPPED as exc:
            log.warning("discord thread %s: history unavailable: %s", thread.id, map_error(exc))
        if spent <= self.budget:
            starter = await self._starter(thread)
            if starter is not None:
                newest_first.append(starter)
        newest_first.reverse()
        return to_turns(newest_first, self.bot_id)

    async def direct(self, message: discord.Message) -> list[Turn]:
        """Recent direct messages, within budget."""
        return await self.recent(message, labelled=False)

    async def recent(self, message: discord.Message, *, labelled: bool = True, limit: int = DM_LIMIT) -> list[Turn]:
        """The channel's messages up to ``message`` (at most ``limit``), within budget."""
        newest_first = [message]
        spent = self._cost(message, labelled)
        try:
            async for older in message.channel.history(limit=limit, before=message):
                newest_first.append(older)
                spent += self._cost(older, labelled)
                if spent > self.budget:
                    break
        except MAPPED as exc:
            log.warning("discord channel %s: history unavailable: %s", message.channel.id, map_error(exc))
        newest_first.reverse()
        return to_turns(newest_first, self.bot_id, labelled=labelled)

    # -- single messages --------------------------------------------------------------------

    async def _parent(self, message: discord.Message) -> discord.Message | None:
        ref = message.reference
        if ref is None or ref.message_id is None:
            return None
        if ref.channel_id != message.channel.id:
            return None  # a forward or a cross-channel reply: not this conversation
        if isinstance(ref.resolved, discord.Message):
            return self._freshest(ref.resolved)
        if isinstance(ref.resolved, discord.DeletedReferencedMessage):
            return None
        return await self._get(message.channel, ref.message_id)

    def _freshest(self, message: discord.Message) -> discord.Message:
        """The cached copy when discord.py has one (kept current by MESSAGE_UPDATE)."""
        cached = self._cached(message.id)
        return cached or message

    def _cached(self, message_id: int) -> discord.Message | None:
        found = discord.utils.get(self.client.cached_messages, id=message_id)
        return found or self._fetched.get(message_id)

    async def _get(self, channel: discord.abc.Messageable, message_id: int) -> discord.Message | None:
        cached = self._cached(message_id)
        if cached is not None:
            return cached
        try:
            message = await channel.fetch_message(message_id)
        except MAPPED as exc:
            log.info("discord message %s not readable: %s", message_id, map_error(exc))
            return None
        self._fetched[message_id] = message
        while len(self._fetched) > CACHE_SIZE:
            self._fetched.popitem(last=False)
        return message

    async def _starter(self, thread: discord.Thread) -> discord.Message | None:
        if thread.starter_message is not None:
            return thread.starter_message
        parent = thread.parent
        if not isinstance(parent, discord.abc.Messageable):
            return None
        return await self._get(parent, thread.id)
