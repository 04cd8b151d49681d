"""Controls on a Discord reply: button components out, component interactions and 🛑 reactions in.

Out: the buttons (``buttons``, pure), shown by ``surface.ChannelSurface``.

In: a component interaction (``press_of``) is acknowledged first (a deferred update, within
Discord's 3 s) and then handed to the core; what the core says goes back as an ephemeral
followup.  A 🛑 reaction on one of the bot's messages (``RawReactionActionEvent``) is a Stop
press: the message is read back for its Stop button's key.  Reactions cannot answer privately,
so a refused 🛑 is only logged.  Anything malformed is ignored.
"""

from __future__ import annotations

import logging
from typing import Any

import discord

from bot.controls import Press
from bot.errors import RelayError

from .buttons import parse
from .surface import MAPPED, NO_MENTIONS, map_error

log = logging.getLogger(__name__)

STOP_EMOJI = "🛑"


def press_of(interaction: discord.Interaction) -> Press | None:
    """The press a component interaction carries; None when it is not one of our buttons."""
    if interaction.type is not discord.InteractionType.component or not isinstance(interaction.data, dict):
        return None
    parsed = parse(interaction.data.get("custom_id"))
    if parsed is None:
        return None
    user = interaction.user
    return Press("discord", parsed[0], parsed[1], str(user.id), user.display_name)


def stop_key(message: discord.Message) -> str | None:
    """The key on a message's Stop button, if it shows one."""
    for row in message.components:
        for item in getattr(row, "children", ()):
            parsed = parse(getattr(item, "custom_id", None))
            if parsed is not None and parsed[0] == "stop":
                return parsed[1]
    return None


class DiscordControls:
    """The I/O around a press: ack it, hand it to the core, show its answer privately."""

    def __init__(self, client: Any) -> None:
        self.client = client  # the ``RelayClient``: the core's Platform for Discord

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        press = press_of(interaction)
        if press is None:
            return
        try:  # first: the 3 s window is Discord's
            await interaction.response.defer()
        except MAPPED as exc:
            log.warning("discord: could not acknowledge a %s press: %s", press.action, map_error(exc))
            return
        self.client.core.spawn(self._press(interaction, press), name=f"discord-{press.action}-{interaction.id}")

    async def _press(self, interaction: discord.Interaction, press: Press) -> None:
        text = await self._decide(press)
        if text is None:
            return
        try:
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        except MAPPED as exc:
            log.info("discord: could not answer a %s press privately: %s", press.action, map_error(exc))

    async def _decide(self, press: Press) -> str | None:
        try:
            return await self.client.core.press(self.client, press)
        except RelayError as exc:
            log.warning("discord: a %s press failed: %s", press.action, exc)
            return exc.user_message

    async def on_reaction(self, payload: discord.RawReactionActionEvent) -> None:
        me = self.client.user
        if me is None or payload.emoji.name != STOP_EMOJI or payload.user_id == me.id:
            return
        if payload.message_author_id not in (None, me.id):
            return
        channel = self.client.get_partial_messageable(payload.channel_id)
        try:
            message = await channel.fetch_message(payload.message_id)
        except MAPPED as exc:
            log.info("discord: could not read the message a 🛑 was added to: %s", map_error(exc))
            return
        key = stop_key(message)
        if key is None:
            return
        who = payload.member or self.client.get_user(payload.user_id)
        name = who.display_name if who is not None else str(payload.user_id)
        text = await self._decide(Press("discord", "stop", key, str(payload.user_id), name))
        if text is not None:
            log.info("discord: a 🛑 by %s was not taken: %s", payload.user_id, text)
