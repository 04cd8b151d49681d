"""Where a streamed answer lands on Discord: a channel message or an interaction response.

Both sinks post the first text, edit it as it grows, continue in a new
message past 2,000 characters, and end with the notes as subtext lines.
Every send and edit carries ``allowed_mentions`` explicitly (it is not sticky
on Discord: an edit without it is parsed with the defaults).  Interim edits
are held back while discord.py would wait on a rate limit (``pacing.Watch``).
discord.py errors are mapped to ``bot.errors``; after a permanent failure
(deleted message, expired interaction, missing permission) the sink goes
quiet instead of trying again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import aiohttp
import discord

from bot.errors import MessageGone, PlatformError, PlatformRateLimited, PlatformUnavailable, RelayError
from bot.retry_after import retry_after

from . import format as fmt
from .pacing import Watch

log = logging.getLogger(__name__)

LIMIT = 2000
#: Room left under Discord's limit for a closing code fence the splitter may add.
MAX_CHARS = LIMIT - 8
TYPING_EVERY = 8.0  # one indicator lasts 10 s

NO_MENTIONS = discord.AllowedMentions.none()
#: The first reply may notify the person who asked (and nobody else).
REPLY_MENTIONS = discord.AllowedMentions(everyone=False, users=False, roles=False, replied_user=True)

#: Discord JSON error codes after which the message cannot be shown any more.
GONE_CODES = {
    10003: "unknown channel",
    10008: "unknown message",
    10015: "unknown webhook",
    10062: "unknown interaction",
    50027: "invalid webhook token",
}


def map_error(exc: Exception) -> PlatformError:
    """A discord.py / aiohttp failure as one of ours."""
    if isinstance(exc, discord.RateLimited):
        return PlatformRateLimited(retry_after=exc.retry_after)
    if isinstance(exc, discord.HTTPException):
        if exc.status == 429:
            wait = retry_after(getattr(exc.response, "headers", None))
            return PlatformRateLimited(retry_after=1.0 if wait is None else wait)
        if exc.code in GONE_CODES:
            return MessageGone(f"discord: {GONE_CODES[exc.code]} ({exc.code})")
        if isinstance(exc, discord.Forbidden):
            return MessageGone(f"discord: missing permission ({exc.code})")
        if exc.status >= 500:
            return PlatformUnavailable(f"discord: HTTP {exc.status} ({exc.code})")
        return PlatformError(f"discord: HTTP {exc.status} ({exc.code})")
    if isinstance(exc, discord.InteractionResponded):
        return PlatformError("discord: interaction already answered")
    return PlatformUnavailable(f"discord: {type(exc).__name__}")  # network errors


MAPPED = (discord.DiscordException, aiohttp.ClientError, asyncio.TimeoutError, OSError)


class DiscordSink:
    """The shared part: text rendering, posting/editing one message at a time, typing."""

    max_chars = MAX_CHARS

    def __init__(self, watch: Watch | None = None, *, label: str = "") -> None:
        self.watch = watch
        self.label = label
        self.dead = False
        self.messages = 0  # messages posted
        self._current: object | None = None  # the message being written
        self.previous: object | None = None  # the last finished part
        self._shown: str | None = None  # its content on Discord
        self._typing: asyncio.Task[None] | None = None

    def measure(self, text: str) -> int:
        return fmt.measure(text)

    # -- the Sink protocol ----------------------------------------------------------------

    async def start(self) -> None:
        return None

    async def update(self, text: str) -> None:
        if self.watch is not None and not self.dead:
            wait = self.watch.wait_needed()
            if wait > 0:
                raise PlatformRateLimited(retry_after=wait)
        await self._show(fmt.render(text))

    async def split(self, text: str) -> None:
        await self._show(fmt.render(text))
        self.previous = self._current
        self._current, self._shown = None, None

    async def finish(self, text: str, notes: Sequence[str]) -> None:
        await self._show(fmt.with_notes(fmt.render(text), notes))

    async def fail(self, text: str, notes: Sequence[str], error: RelayError) -> None:
        marked = (
            [*notes[:-1], f"{fmt.WARNING} {notes[-1]}"] if notes else [f"{fmt.WARNING} {error.user_message}"]
        )
        await self._show(fmt.with_notes(fmt.render(text), marked))

    # -- I/O ---------------------------------------------------------------------------------

    async def _show(self, content: str) -> None:
        self._stop_typing()  # the first text replaces the typing indicator
        if self.dead or content == self._shown:
            return
        if len(content) > LIMIT:  # only if a rendering grew past the measured size
            log.warning("%s: message clipped from %d characters", self.label, len(content))
            content = content[: LIMIT - 1] + "…"
        try:
            if self._current is None:
                self._current = await self._post(content)
                self.messages += 1
            else:
                await self._edit(self._current, content)
        except MAPPED as exc:
            error = map_error(exc)
            if isinstance(error, MessageGone):
                self.dead = True
                log.warning("%s: stopped writing the answer: %s", self.label, error)
            raise error from exc
        self._shown = content

    async def _post(self, content: str) -> object:
        raise NotImplementedError

    async def _edit(self, message: object, content: str) -> None:
        raise NotImplementedError

    # -- typing ---------------------------------------------------------------------------------

    def _start_typing(self, channel: discord.abc.Messageable) -> None:
        if self._typing is None:
            self._typing = asyncio.create_task(_keep_typing(channel, self.label))

    def _stop_typing(self) -> None:
        if self._typing is not None and not self._typing.done():
            self._typing.cancel()


async def _keep_typing(channel: discord.abc.Messageable, label: str) -> None:
    """The typing indicator, renewed until cancelled (the first text shows)."""
    while True:
        try:
            await channel.typing()
        except MAPPED as exc:
            log.info("%s: no typing indicator: %s", label, map_error(exc))
            return
        await asyncio.sleep(TYPING_EVERY)


class ChannelSink(DiscordSink):
    """Answer in a channel or thread, the first message replying to ``reply_to`` when given.

    Continuation messages reply to the previous part, so a reply to the last
    part still walks back through the whole answer.
    """

    def __init__(
        self,
        channel: discord.abc.Messageable,
        reply_to: discord.Message | None = None,
        watch: Watch | None = None,
    ) -> None:
        super().__init__(watch, label=f"discord channel {getattr(channel, 'id', '?')}")
        self.channel = channel
        self.reply_to = reply_to
        self.posted: list[discord.Message] = []

    async def start(self) -> None:
        self._start_typing(self.channel)

    async def _post(self, content: str) -> discord.Message:
        target = self.previous if isinstance(self.previous, discord.Message) else self.reply_to
        reference = None
        mentions = NO_MENTIONS
        if target is not None:
            reference = discord.MessageReference.from_message(target, fail_if_not_exists=False)
            mentions = REPLY_MENTIONS if target is self.reply_to else NO_MENTIONS
        message = await self.channel.send(content, reference=reference, allowed_mentions=mentions)
        self.posted.append(message)
        return message

    async def _edit(self, message: object, content: str) -> None:
        assert isinstance(message, discord.Message)
        await message.edit(content=content, allowed_mentions=NO_MENTIONS)

    def locator(self) -> dict[str, object] | None:
        """Where the message being written is, for crash recovery (``recovery.finalise``)."""
        if not isinstance(self._current, discord.Message):
            return None
        return {"kind": "channel", "channel": str(self._current.channel.id), "message": str(self._current.id)}

    async def close(self) -> None:
        self._stop_typing()
        if self._typing is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._typing


class InteractionSink(DiscordSink):
    """Answer a deferred ``/ask``: the original response first, then followups."""

    def __init__(self, interaction: discord.Interaction, watch: Watch | None = None) -> None:
        super().__init__(watch, label=f"discord interaction {interaction.id}")
        self.interaction = interaction

    async def _post(self, content: str) -> object:
        self._check_alive()
        if self.messages == 0:
            await self.interaction.edit_original_response(content=content, allowed_mentions=NO_MENTIONS)
            return "@original"
        return await self.interaction.followup.send(content, allowed_mentions=NO_MENTIONS, wait=True)

    async def _edit(self, message: object, content: str) -> None:
        self._check_alive()
        if message == "@original":
            await self.interaction.edit_original_response(content=content, allowed_mentions=NO_MENTIONS)
        else:
            assert isinstance(message, discord.WebhookMessage)
            await message.edit(content=content, allowed_mentions=NO_MENTIONS)

    def _check_alive(self) -> None:
        if self.interaction.is_expired():
            self.dead = True
            log.warning("%s: the interaction token expired", self.label)
            raise MessageGone("discord: the interaction expired")
