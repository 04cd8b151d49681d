"""The slash commands: ``/ask`` (a question, answered in the channel) and ``/relay``.

The command objects only declare names, options and descriptions and hand
over to ``SlashCommands``: ``/ask`` is deferred at once (Discord's 3 s), then
handed to the core as an ``Incoming`` answered into the deferred response;
``/relay`` runs the platform-neutral logic (``bot.commands``) and answers in
Discord Markdown, shown only to the person who asked.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict
from typing import Any

import discord
from discord import app_commands

from bot.access import Caller
from bot.conversation import Turn
from bot.errors import RelayError
from bot.incoming import Core, Incoming
from bot.pacing import EditBudget
from bot.surface import Surface
from bot.tokens import TokenCounter

from . import format as fmt
from . import interactions
from .conversations import interaction_caller
from .pacing import RateMonitor, Watch
from .surface import LIMIT, MAPPED, NO_MENTIONS, InteractionSurface, map_error

log = logging.getLogger(__name__)

Handler = Callable[[discord.Interaction, str], Awaitable[None]]
Complete = Callable[[discord.Interaction[Any], str], Coroutine[Any, Any, list[app_commands.Choice[str]]]]
#: Discord's limits on autocomplete choices: how many, and characters of a name or value
MAX_CHOICES = 25
CHOICE_CHARS = 100
NOT_ALLOWED = "Sorry, I am not set up to answer here."



def ask_command(handler: Handler) -> app_commands.Command[Any, Any, None]:
    @app_commands.command(name="ask", description="Ask the model a question")
    @app_commands.describe(question="What do you want to know?")
    async def ask(interaction: discord.Interaction, question: str) -> None:
        await handler(interaction, question)

    return ask


def relay_command(handler: Handler, complete: Complete) -> app_commands.Command[Any, Any, None]:
    @app_commands.command(name="relay", description="The bot's status, this channel's settings, your usage")
    @app_commands.describe(command="status, config [NAME VALUE], usage or help")
    @app_commands.autocomplete(command=complete)
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


class SlashCommands:
    """What ``/ask`` and ``/relay`` do; ``open`` says whether the client still takes work."""

    def __init__(
        self, client: discord.Client, core: Core, edits_per_minute: float, monitor: RateMonitor,
        open: Callable[[], bool],
    ) -> None:
        self.client, self.core, self.monitor, self.open = client, core, monitor, open
        self.edits_per_minute = edits_per_minute

    def install(self, tree: app_commands.CommandTree[Any]) -> None:
        tree.add_command(ask_command(self.ask))
        tree.add_command(relay_command(self.relay, self.complete_relay))

    async def ask(self, interaction: discord.Interaction, question: str) -> None:
        """Defer within Discord's 3 s, then stream the answer into the original response."""
        if not self.open() or not self.core.accepting:
            return
        caller = interaction_caller(interaction)
        if not self.core.may_ask(caller):
            await _reply(interaction, NOT_ALLOWED, "/ask refusal")
            return
        try:  # first: the 3 s window is Discord's, whatever else is slow
            await interaction.response.defer(thinking=True)
        except MAPPED as exc:
            log.warning("discord /ask %s: could not defer: %s", interaction.id, map_error(exc))
            return
        if self.core.spawn(self._answer(interaction, question, caller), name=f"discord-ask-{interaction.id}") is None:
            log.info("discord: shutting down, /ask %s not answered", interaction.id)

    async def _answer(self, interaction: discord.Interaction, question: str, caller: Caller) -> None:
        past_block_list = False

        async def relevant() -> bool:  # the core asks only once the caller is known not to be blocked
            nonlocal past_block_list
            past_block_list = True
            return True

        outcome = await self.core.handle(self.incoming(interaction, question, caller, relevant=relevant))
        if outcome is None and not past_block_list:
            # A blocked caller: the core stays silent, so the deferred "thinking…" goes.
            # (A redelivered /ask also ends without an outcome, but past the block list:
            # its first delivery is answering into the same response, which must stay.)
            await _drop_thinking(interaction)

    def revive(self, saved: dict[str, Any]) -> Incoming | None:
        """An ``/ask`` accepted before a restart, while its response can still be written."""
        interaction = interactions.rebuilt(self.client, saved.get("interaction") or {})
        caller = saved.get("caller")
        if interaction is None or not isinstance(caller, dict):
            return None
        caller = Caller(**{**caller, "roles": frozenset(caller.get("roles", ()))})
        return self.incoming(interaction, str(saved.get("question", "")), caller, keys=())

    def incoming(
        self,
        interaction: discord.Interaction,
        question: str,
        caller: Caller,
        *,
        keys: tuple[tuple[str, str], ...] | None = None,
        relevant: Callable[[], Awaitable[bool]] | None = None,
    ) -> Incoming:
        surface = InteractionSurface(interaction, watch=Watch(self.monitor, f"token:{interaction.token}"))
        user_id = self.client.user.id if self.client.user else 0
        turn = Turn(
            "user",
            fmt.question_text(question, user_id, {}),
            author=interaction.user.display_name if interaction.guild_id is not None else None,
            message_id=f"discord:ask:{interaction.id}",
        )

        async def read(budget: int, counter: TokenCounter) -> list[Turn]:
            return [turn]

        async def open_(turns: list[Turn]) -> Surface:
            return surface

        async def after(outcome: Any) -> None:
            if outcome.messages == 0:  # nothing was shown: no "thinking…" left behind
                await _drop_thinking(interaction)

        return Incoming(
            caller=caller,
            conversation=f"ask:{interaction.id}",
            read=read,
            open=open_,
            keys=(("interaction", str(interaction.id)),) if keys is None else keys,
            origin={
                "ask": {"question": question, "interaction": surface.place["interaction"], "caller": _saved(caller)},
                "place": surface.place,
            },
            relevant=relevant,
            # Interaction webhooks have their own bucket, separate from the channel's.
            budget=EditBudget(self.edits_per_minute),
            after=after,
        )

    async def relay(self, interaction: discord.Interaction, command: str) -> None:
        """``/relay``: status, channel settings and usage, shown only to the person who asked."""
        text = await relay_reply(self.core, interaction_caller(interaction), command)
        await _reply(interaction, text, "/relay answer")


    async def complete_relay(self, interaction: discord.Interaction[Any], current: str) -> list[app_commands.Choice[str]]:
        """``/relay``'s option autocomplete: the core's completions of what is typed so far."""
        texts = self.core.relay_suggestions(interaction_caller(interaction), current)
        texts = [t for t in texts if len(t) <= CHOICE_CHARS][:MAX_CHOICES]
        return [app_commands.Choice(name=t, value=t) for t in texts]


def _saved(caller: Caller) -> dict[str, Any]:
    return {**asdict(caller), "roles": sorted(caller.roles)}


async def _reply(interaction: discord.Interaction, text: str, what: str) -> None:
    """An ephemeral answer to a command; a failure is logged (the interaction is gone)."""
    try:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
    except MAPPED as exc:
        log.warning("discord %s %s: not shown: %s", what, interaction.id, map_error(exc))


async def _drop_thinking(interaction: discord.Interaction) -> None:
    try:
        await interaction.delete_original_response()
    except MAPPED as exc:
        log.info("discord /ask %s: placeholder not removed: %s", interaction.id, map_error(exc))
