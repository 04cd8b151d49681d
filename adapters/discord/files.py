"""Files attached to Discord messages (``attachments[]``) as the core's ``Attachment``s.

Each is downloaded from its CDN URL (no token needed), bounded in bytes
(``adapters.downloads``); the core reads and limits them (``bot.attachments``).
"""

from __future__ import annotations

import discord

from bot.attachments import Attachment, Download

from ..downloads import download


def attachments_of(message: discord.Message) -> tuple[Attachment, ...]:
    """The files attached to ``message``, in their order."""
    return tuple(_one(a) for a in message.attachments)


def _one(attachment: discord.Attachment) -> Attachment:
    url = attachment.url

    async def fetch(max_bytes: int) -> Download:
        return await download(url, max_bytes)

    return Attachment(
        id=f"discord:{attachment.id}",
        name=attachment.filename,
        fetch=fetch,
        size=attachment.size,
        mime=attachment.content_type,
    )
