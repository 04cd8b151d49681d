"""Where a reply shows on Discord: channel messages or an interaction's responses.

Both implement ``bot.surface.Surface``; the core decides when to post, edit,
continue in a new message and finish.  Every send and edit carries
``allowed_mentions`` explicitly (it is not sticky on Discord: an edit without
it is parsed with the defaults).  An interim write is refused with
``PlatformRateLimited`` while discord.py would wait on a rate limit, or right
after it absorbed a 429 (``pacing.Watch``): the core then pauses the channel's
edit budget, slows the stream down and counts the signal; final writes always
go through.  discord.py errors are mapped to ``bot.errors`` here.  Messages
are written through partial messages, so a surface rebuilt from its saved
place after a restart edits exactly the bot's own message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import discord

from bot.errors import MessageGone, PlatformError, PlatformRateLimited, PlatformUnavailable
from bot.retry_after import retry_after
from bot.surface import Draft, Ref

from . import format as fmt
from . import interactions
from .buttons import view_of
from .pacing import Watch

if TYPE_CHECKING:  # every channel a bot can send to (not a group DM); defined for type checkers only
    from discord.abc import PartialMessageableChannel

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


async def show_typing(channel: discord.abc.Messageable, label: str) -> bool:
    """One typing indicator (Discord shows it for 10 s); False when it was refused (logged)."""
    try:
        await channel.typing()
    except MAPPED as exc:
        log.info("%s: no typing indicator: %s", label, map_error(exc))
        return False
    return True


class EarlyTyping:
    """Typing shown in the question's channel as soon as the core reads the history: the
    question is admitted by then (allowed, not blocked, within quota; ``bot.incoming``), while
    the reply's surface, which may be a thread opened from the question, does not exist yet.
    The surface in that channel renews it from then on (``ChannelSurface.typing_since``)."""

    def __init__(self, channel: discord.abc.Messageable, channel_id: int) -> None:
        self.channel, self.channel_id = channel, channel_id
        self.shown_at: float | None = None
        self._task: asyncio.Task[bool] | None = None

    def show(self) -> None:
        if self._task is None:
            self.shown_at = time.monotonic()
            self._task = asyncio.ensure_future(show_typing(self.channel, f"discord channel {self.channel_id}"))

    def hand_over(self, surface: ChannelSurface) -> None:
        if self.shown_at is not None and getattr(surface.channel, "id", None) == self.channel_id:
            surface.typing_since = self.shown_at


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


class _Surface:
    """What both surfaces share: rendering, clipping, the rate-limit signal."""

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

    def _content(self, draft: Draft) -> str:
        """The text to send: within Discord's limit, its notes kept whole.

        Only a text the core did not fit (the saved text of an interrupted reply
        finalised after a restart, a rendering that grew) is clipped, at the answer's end.
        """
        content = self.render(draft)
        if len(content) <= LIMIT:
            return content
        log.warning("%s: message clipped from %d characters", self.label, len(content))
        notes = list(draft.notes)
        if draft.failed and notes:
            notes[-1] = f"{fmt.WARNING} {notes[-1]}"
        footer = fmt.with_notes("", notes)[: LIMIT // 2] if notes else ""  # notes are short lines
        room = LIMIT - len(footer) - (1 if footer else 0)
        body = fmt.render(draft.text)[: room - 1] + "…"
        return f"{body}\n{footer}" if footer else body

    def _held(self, draft: Draft) -> None:
        """Refuse an interim write while discord.py would wait on (or just absorbed) a rate limit."""
        if self.watch is None or draft.final:
            return
        wait = self.watch.wait_needed()
        if wait > 0:
            raise PlatformRateLimited(retry_after=wait)

    async def _call(self, call: Any) -> Any:
        try:
            return await call
        except MAPPED as exc:
            raise map_error(exc) from exc


class ChannelSurface(_Surface):
    """Answer in a channel, thread or DM, the first message replying to ``reply_to`` when given.

    Continuation messages reply to the previous part, so a reply to the last
    part still walks back through the whole answer.  A reply with controls carries
    them as buttons (``buttons``); a message of it without any is sent ``view=None``.
    """

    controls = True

    def __init__(
        self,
        channel: PartialMessageableChannel,
        reply_to: int | None = None,
        watch: Watch | None = None,
    ) -> None:
        super().__init__(watch, f"discord channel {getattr(channel, 'id', '?')}")
        self.channel = channel
        self.reply_to = reply_to
        self._previous: int | None = None  # the last message posted
        #: when typing was shown here before this surface existed (``EarlyTyping``): renewed from then
        self.typing_since: float | None = None

    @property
    def place(self) -> dict[str, Any]:
        return {"kind": "channel", "channel": str(getattr(self.channel, "id", "")), "reply_to": self.reply_to}

    async def pending(self) -> None:
        """The typing indicator, renewed until the core cancels it (the first text shows)."""
        if self.typing_since is not None:
            await asyncio.sleep(max(0.0, self.typing_since + TYPING_EVERY - time.monotonic()))
        while await show_typing(self.channel, self.label):
            await asyncio.sleep(TYPING_EVERY)

    async def post(self, draft: Draft) -> Ref:
        self._held(draft)
        target = self._previous or self.reply_to
        content = self._content(draft)
        if target is None:
            send = self.channel.send(content, allowed_mentions=NO_MENTIONS, **_view(draft))
        else:
            reference = self.channel.get_partial_message(target).to_reference(fail_if_not_exists=False)
            mentions = REPLY_MENTIONS if target == self.reply_to else NO_MENTIONS
            send = self.channel.send(content, reference=reference, allowed_mentions=mentions, **_view(draft))
        message = await self._call(send)
        self._previous = message.id
        return {"message": str(message.id)}

    async def delete(self, ref: Ref) -> None:
        """Delete one of the bot's messages (the rest of an answer a regenerated one replaced)."""
        await self._call(self.channel.get_partial_message(int(ref["message"])).delete())

    async def edit(self, ref: Ref, draft: Draft) -> None:
        self._held(draft)
        message = self.channel.get_partial_message(int(ref["message"]))
        content = self._content(draft)
        await self._call(message.edit(content=content, allowed_mentions=NO_MENTIONS, **_view(draft)))


def _view(draft: Draft) -> dict[str, Any]:
    """The ``view`` argument of a write: the reply's buttons, none for a reply without controls."""
    return {"view": view_of(draft.controls, draft.key)} if draft.key else {}


def _followup_view(draft: Draft) -> dict[str, Any]:
    """A new followup takes a view, or none at all (``view=None`` is refused there)."""
    view = _view(draft).get("view")
    return {"view": view} if view is not None else {}


class InteractionSurface(_Surface):
    """Answer a deferred ``/ask``: the original response first, then followups (with the
    reply's buttons, as in a channel).  Used through a user's own install alone, Discord takes
    only a few followups: ``max_messages`` tells the core, which cuts the answer in the last one."""

    controls = True
    max_messages: int | None = None

    def __init__(self, interaction: discord.Interaction, watch: Watch | None = None) -> None:
        super().__init__(watch, f"discord interaction {interaction.id}")
        self.interaction = interaction
        # Its token lets a restarted process finish the response, for 15 minutes (``interactions``).
        self.place = {"kind": "interaction", "interaction": interactions.saved(interaction)}
        self._posted = 0
        if interactions.user_install_only(interaction):
            self.max_messages = 1 + interactions.USER_INSTALL_FOLLOWUPS  # the response, then its followups

    async def post(self, draft: Draft) -> Ref:
        self._check_alive()
        self._held(draft)
        content = self._content(draft)
        if self._posted == 0:
            await self._call(
                self.interaction.edit_original_response(content=content, allowed_mentions=NO_MENTIONS, **_view(draft))
            )
            self._posted += 1
            return {"original": True}
        message = await self._call(
            self.interaction.followup.send(content, allowed_mentions=NO_MENTIONS, wait=True, **_followup_view(draft))
        )
        self._posted += 1
        return {"message": str(message.id)}

    async def edit(self, ref: Ref, draft: Draft) -> None:
        self._check_alive()
        self._held(draft)
        content = self._content(draft)
        if ref.get("original"):
            await self._call(
                self.interaction.edit_original_response(content=content, allowed_mentions=NO_MENTIONS, **_view(draft))
            )
        else:
            await self._call(
                self.interaction.followup.edit_message(
                    int(ref["message"]), content=content, allowed_mentions=NO_MENTIONS, **_view(draft)
                )
            )

    async def delete(self, ref: Ref) -> None:
        """Delete a followup (the rest of an answer a regenerated one replaced)."""
        self._check_alive()
        if not ref.get("original"):
            await self._call(self.interaction.followup.delete_message(int(ref["message"])))

    def _check_alive(self) -> None:
        if self.interaction.is_expired():
            log.warning("%s: the interaction token expired", self.label)
            raise MessageGone("discord: the interaction expired")


class ExpiredSurface:
    """A reply place that cannot be written any more (an interaction whose token expired)."""

    max_chars = 1

    def render(self, draft: Any) -> str:
        return ""

    def measure(self, draft: Any) -> int:
        return 0

    async def post(self, draft: Any) -> Any:
        raise MessageGone("discord: the interaction is gone")

    async def edit(self, ref: Any, draft: Any) -> None:
        raise MessageGone("discord: the interaction is gone")
