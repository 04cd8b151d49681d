"""The slash commands: ``/ask`` (a question, answered in the channel) and ``/relay``.

The command objects only declare names, options and descriptions and hand
over to the client; ``relay_reply`` runs the platform-neutral ``/relay`` logic
(``bot.commands``) and makes its Markdown fit Discord.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import discord
from discord import app_commands

from bot.access import Caller
from bot.errors import RelayError
from bot.incoming import Core

from . import format as fmt
from .surface import LIMIT

Handler = Callable[[discord.Interaction, str], Awaitable[None]]



def ask_command(handler: Handler) -> app_commands.Command[Any, Any, None]:
    @app_commands.command(name="ask", description="Ask the model a question")
    @app_commands.describe(question="What do you want to know?")
    async def ask(interaction: discord.Interaction, question: str) -> None:
        await handler(interaction, question)

    return ask


def relay_command(handler: Handler) -> app_commands.Command[Any, Any, None]:
    @app_commands.command(name="relay", description="The bot's status, this channel's settings, your usage")
    @app_commands.describe(command="status, config [NAME VALUE], usage or help")
    async def relay(interaction: discord.Interaction, command: str = "help") -> None:
        await handler(interaction, command)

    return relay


async def relay_reply(core: Core, caller: Caller, text: str) -> str:
    """The ``/relay`` answer as Discord Markdown, within one message."""
    try:
        reply = await core.relay_command(caller, text)
    except RelayError as exc:
        reply = exc.user_message
    reply = fmt.render(reply)
    return reply if len(reply) <= LIMIT else reply[: LIMIT - 1] + "…"
