"""Short private answers to interactions: a refusal, and no "thinking…" left behind.

``reply`` answers an interaction not answered yet, seen only by the asker; ``drop_thinking``
removes a deferred response that will get no answer; ``refuse`` does both for a deferred
one the core turned away (the message menus: the asker is told, in private, why nothing comes).
A failure is logged: the interaction is gone, and nobody else would see the words anyway.
"""

from __future__ import annotations

import logging

import discord

from .surface import MAPPED, NO_MENTIONS, map_error

log = logging.getLogger(__name__)

NOT_ALLOWED = "Sorry, I am not set up to answer here."


async def reply(interaction: discord.Interaction, text: str, what: str) -> None:
    """An ephemeral answer to a command; a failure is logged (the interaction is gone)."""
    try:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
    except MAPPED as exc:
        log.warning("discord %s %s: not shown: %s", what, interaction.id, map_error(exc))


async def drop_thinking(interaction: discord.Interaction) -> None:
    """Remove the deferred "thinking…" response."""
    try:
        await interaction.delete_original_response()
    except MAPPED as exc:
        log.info("discord interaction %s: placeholder not removed: %s", interaction.id, map_error(exc))


async def refuse(interaction: discord.Interaction) -> None:
    """A deferred interaction the core turned away: its "thinking…" goes, the asker is told privately."""
    await drop_thinking(interaction)
    try:
        await interaction.followup.send(NOT_ALLOWED, ephemeral=True, allowed_mentions=NO_MENTIONS)
    except MAPPED as exc:
        log.info("discord interaction %s: refusal not shown: %s", interaction.id, map_error(exc))
