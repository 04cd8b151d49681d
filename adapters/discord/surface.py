"""Where a reply shows on Discord: channel messages or an interaction's responses.

Both implement ``bot.surface.Surface``; the core decides when to post, edit,
continue in a new message and finish.  Every send and edit carries
``allowed_mentions`` explicitly (it is not sticky on Discord: an edit without
it is parsed with the defaults).  Interim edits are held back while
discord.py would wait on a rate limit (``hold``, from ``pacing.Watch``).
discord.py errors are mapped to ``bot.errors`` here.  Messages are written
through partial messages, so a surface rebuilt from its saved place after a
restart edits exactly the bot's own message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import discord

from bot.errors import MessageGone, PlatformError, PlatformRateLimited, PlatformUnavailable
from bot.surface import Draft, Ref

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
            retry = exc.response.headers.get("Retry-After") if exc.response is not None else None
            return PlatformRateLimited(retry_after=float(retry or 1.0))
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


def _clip(content: str, label: str) -> str:
    if len(content) > LIMIT:  # only if a rendering grew past the measured size
        log.warning("%s: message clipped from %d characters", label, len(content))
        content = content[: LIMIT - 1] + "…"
    return content


class _Surface:
    """What both surfaces share: rendering, the typing indicator, the rate-limit hold."""

    max_chars = MAX_CHARS

    def __init__(self, watch: Watch | None, label: str) -> None:
        self.watch = watch
        self.label = label

    def render(self, draft: Draft) -> str:
        notes = list(draft.notes)
        if draft.failed and notes:
            notes[-1] = f"{fmt.WARNING} {notes[-1]}"
        return fmt.with_notes(fmt.render(draft.text), notes)

    def measure(self, draft: Draft) -> int:
        return len(self.render(draft))

    def hold(self) -> float:
        return self.watch.wait_needed() if self.watch is not None else 0.0

    async def _call(self, call: Any) -> Any:
        try:
            return await call
        except MAPPED as exc:
            raise map_error(exc) from exc


class ChannelSurface(_Surface):
    """Answer in a channel, thread or DM, the first message replying to ``reply_to`` when given.

    Continuation messages reply to the previous part, so a reply to the last
    part still walks back through the whole answer.
    """

    def __init__(
        self,
        channel: discord.abc.Messageable | discord.PartialMessageable,
        reply_to: int | None = None,
        watch: Watch | None = None,
    ) -> None:
        super().__init__(watch, f"discord channel {getattr(channel, 'id', '?')}")
        self.channel = channel
        self.reply_to = reply_to
        self._previous: int | None = None  # the last message posted

    @property
    def place(self) -> dict[str, Any]:
        return {"kind": "channel", "channel": str(getattr(self.channel, "id", "")), "reply_to": self.reply_to}

    async def pending(self) -> None:
        """The typing indicator, renewed until the core cancels it (the first text shows)."""
        while True:
            try:
                await self.channel.typing()
            except MAPPED as exc:
                log.info("%s: no typing indicator: %s", self.label, map_error(exc))
                return
            await asyncio.sleep(TYPING_EVERY)

    async def post(self, draft: Draft) -> Ref:
        target = self._previous or self.reply_to
        reference, mentions = None, NO_MENTIONS
        if target is not None:
            reference = self.channel.get_partial_message(target).to_reference(fail_if_not_exists=False)
            mentions = REPLY_MENTIONS if target == self.reply_to else NO_MENTIONS
        content = _clip(self.render(draft), self.label)
        message = await self._call(self.channel.send(content, reference=reference, allowed_mentions=mentions))
        self._previous = message.id
        return {"message": str(message.id)}

    async def edit(self, ref: Ref, draft: Draft) -> None:
        message = self.channel.get_partial_message(int(ref["message"]))
        content = _clip(self.render(draft), self.label)
        await self._call(message.edit(content=content, allowed_mentions=NO_MENTIONS))


class InteractionSurface(_Surface):
    """Answer a deferred ``/ask``: the original response first, then followups."""

    def __init__(self, interaction: discord.Interaction, watch: Watch | None = None) -> None:
        super().__init__(watch, f"discord interaction {interaction.id}")
        self.interaction = interaction
        self.place = {"kind": "interaction"}  # its token dies within 15 minutes: not revisited
        self._posted = 0

    async def post(self, draft: Draft) -> Ref:
        self._check_alive()
        content = _clip(self.render(draft), self.label)
        if self._posted == 0:
            await self._call(self.interaction.edit_original_response(content=content, allowed_mentions=NO_MENTIONS))
            self._posted += 1
            return {"original": True}
        message = await self._call(
            self.interaction.followup.send(content, allowed_mentions=NO_MENTIONS, wait=True)
        )
        self._posted += 1
        return {"message": str(message.id)}

    async def edit(self, ref: Ref, draft: Draft) -> None:
        self._check_alive()
        content = _clip(self.render(draft), self.label)
        if ref.get("original"):
            await self._call(self.interaction.edit_original_response(content=content, allowed_mentions=NO_MENTIONS))
        else:
            await self._call(
                self.interaction.followup.edit_message(
                    int(ref["message"]), content=content, allowed_mentions=NO_MENTIONS
                )
            )

    def _check_alive(self) -> None:
        if self.interaction.is_expired():
            log.warning("%s: the interaction token expired", self.label)
            raise MessageGone("discord: the interaction expired")
