"""The message context menus: "Ask about this message" and "Summarize this conversation".

Each is a message command (type 3: Apps > … on a message).  Like ``/ask`` it is deferred at
once and answered in the interaction's response (its webhook), so it works wherever Discord
offers it: "Ask about this message" also as a user-installed app where the bot is not a
member, reading only the message Discord hands over; "Summarize this conversation" reads the
channel's (or thread's) history up to the message, so it is offered where the bot is.  The
core runs them like any question (access rules, quotas, the exact token budget); a caller the
core turns away is told so privately (``responses.refuse``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot import about
from bot.access import Caller
from bot.conversation import Turn
from bot.incoming import Incoming
from bot.tokens import TokenCounter

from .history import HistoryReader, turn_of
from .responses import refuse
from .surface import MAPPED, map_error

if TYPE_CHECKING:
    from .commands import Relevant, SlashCommands

log = logging.getLogger(__name__)

ASK_ABOUT = "Ask about this message"
SUMMARIZE = "Summarize this conversation"
#: messages a summary reads at most (before the token budget stops it)
SUMMARY_MESSAGES = 100

Menu = Callable[[discord.Interaction, discord.Message], Awaitable[None]]


def ask_about_menu(handler: Menu) -> app_commands.ContextMenu:
    async def ask_about(interaction: discord.Interaction, message: discord.Message) -> None:
        await handler(interaction, message)

    return app_commands.ContextMenu(
        name=ASK_ABOUT,
        callback=ask_about,
        allowed_installs=app_commands.AppInstallationType(guild=True, user=True),
        allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=True),
    )


def summarize_menu(handler: Menu) -> app_commands.ContextMenu:
    async def summarize(interaction: discord.Interaction, message: discord.Message) -> None:
        await handler(interaction, message)

    return app_commands.ContextMenu(  # it reads history: only where the bot is
        name=SUMMARIZE,
        callback=summarize,
        allowed_installs=app_commands.AppInstallationType(guild=True, user=False),
        allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=False),
    )


class MessageMenus:
    def __init__(self, commands: SlashCommands) -> None:
        self.commands = commands

    @property
    def bot_id(self) -> int:
        user = self.commands.client.user
        return user.id if user else 0

    def context_menus(self) -> list[app_commands.ContextMenu]:
        return [ask_about_menu(self.ask_about), summarize_menu(self.summarize)]

    async def ask_about(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Explain (or answer) ``message``, in the interaction's response."""

        def build(caller: Caller, relevant: Relevant) -> Incoming:
            return self.about_incoming(interaction, caller, _snapshot(message, self.bot_id), relevant=relevant)

        await self.commands.start(interaction, build, ASK_ABOUT, refuse)

    async def summarize(self, interaction: discord.Interaction, message: discord.Message) -> None:
        """Summarise the conversation up to ``message``, in the interaction's response."""

        def build(caller: Caller, relevant: Relevant) -> Incoming:
            return self.summary_incoming(interaction, caller, message, relevant=relevant)

        await self.commands.start(interaction, build, SUMMARIZE, refuse)

    # -- requests ---------------------------------------------------------------------------

    def about_incoming(
        self,
        interaction: discord.Interaction,
        caller: Caller,
        snapshot: dict[str, Any],
        *,
        keys: tuple[tuple[str, str], ...] | None = None,
        relevant: Relevant | None = None,
    ) -> Incoming:
        in_guild = interaction.guild_id is not None
        turn = Turn(
            "user",
            about.question_about("", snapshot["text"], snapshot["author"]),
            author=interaction.user.display_name if in_guild else None,
            message_id=f"discord:about:{interaction.id}",
            attachments=snapshot.get("files", ()),
        )

        async def read(budget: int, counter: TokenCounter) -> list[Turn]:
            return [turn]

        saved = {"menu": {"about": {k: v for k, v in snapshot.items() if k != "files"}}}
        return self.commands.answered_in(interaction, caller, read, saved, keys=keys, relevant=relevant)

    def summary_incoming(
        self,
        interaction: discord.Interaction,
        caller: Caller,
        message: discord.Message,
        *,
        keys: tuple[tuple[str, str], ...] | None = None,
        relevant: Relevant | None = None,
    ) -> Incoming:
        async def read(budget: int, counter: TokenCounter) -> list[Turn]:
            reader = HistoryReader(self.commands.client, budget, counter.count)  # the core's budget and counter
            channel = message.channel
            if isinstance(channel, discord.Thread):
                turns = await reader.thread(message, channel)
            else:
                turns = await reader.recent(message, labelled=interaction.guild_id is not None, limit=SUMMARY_MESSAGES)
            return [*turns, Turn("user", about.SUMMARIZE)]

        saved = {"menu": {"summary": {"channel": str(message.channel.id), "message": str(message.id)}}}
        return self.commands.answered_in(interaction, caller, read, saved, keys=keys, relevant=relevant)

    async def revive(self, interaction: discord.Interaction, caller: Caller, saved: dict[str, Any]) -> Incoming | None:
        """A menu's request accepted before a restart (``SlashCommands.revive``)."""
        if isinstance(saved.get("about"), dict):
            return self.about_incoming(interaction, caller, saved["about"], keys=())
        summary = saved.get("summary")
        if not isinstance(summary, dict):
            return None
        client = self.commands.client
        found = client.get_channel(int(summary["channel"]))  # a thread's, to read its starter too
        channel = found if isinstance(found, discord.abc.Messageable) else client.get_partial_messageable(
            int(summary["channel"])
        )
        try:
            message = await channel.fetch_message(int(summary["message"]))
        except MAPPED as exc:
            log.info("discord: the message of a summary could not be read again: %s", map_error(exc))
            return None
        return self.summary_incoming(interaction, caller, message, keys=())


def _snapshot(message: discord.Message, bot_id: int) -> dict[str, Any]:
    """What "Ask about this message" reads of the message: its text, author and files."""
    turn = turn_of(message, bot_id, labelled=False)
    return {
        "text": turn.text if turn is not None else "",
        "author": message.author.display_name,
        "files": turn.attachments if turn is not None else (),
    }
