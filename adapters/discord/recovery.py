"""After a crash: finalise the Discord messages of answers that were still streaming.

``RelayService.recover`` hands each unfinished reply's locator (saved by the
channel sink as its messages appeared) to ``finalise``, which reads the
message back and adds an "interrupted" note, so no half answer stays behind
looking complete.  Interaction responses are not revisited: their token lives
15 minutes, usually gone by the time the bot is back.
"""

from __future__ import annotations

import logging

import discord

from bot.service import INTERRUPTED_NOTE
from bot.store import ReplyRecord

from . import format as fmt
from .sink import LIMIT, MAPPED, NO_MENTIONS, map_error

log = logging.getLogger(__name__)


def interrupted_text(content: str) -> str:
    """The message's text with the interrupted note as its last line (within 2,000 characters)."""
    body = fmt.strip_notes(content)
    note = fmt.NOTE_PREFIX + INTERRUPTED_NOTE
    room = LIMIT - len(note) - 1
    if len(body) > room:
        body = body[: room - 1] + "…"
    return f"{body}\n{note}" if body.strip() else note


async def finalise(client: discord.Client, record: ReplyRecord) -> None:
    where = record.locator
    if where.get("kind") != "channel":
        return
    try:
        channel_id, message_id = int(str(where["channel"])), int(str(where["message"]))
    except (KeyError, ValueError):
        return
    channel = client.get_partial_messageable(channel_id)
    try:
        message = await channel.fetch_message(message_id)
        await message.edit(content=interrupted_text(message.content), allowed_mentions=NO_MENTIONS)
    except MAPPED as exc:
        raise map_error(exc) from exc
