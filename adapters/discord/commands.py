"""The slash commands: ``/ask`` (a question, answered in the channel) and ``/relay``.

The command objects only declare names, options, descriptions and where they may be used
(``/ask`` also as a user-installed app) and hand over to ``SlashCommands``: ``/ask`` is
deferred at once (Discord's 3 s), then handed to the core as an ``Incoming`` answered into
the deferred response (the message menus, ``menus``, go the same way);
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
from bot.incoming import Core, Incoming, ReadHistory
from bot.pacing import EditBudget
from bot.surface import Surface
from bot.tokens import TokenCounter

from . import format as fmt
from . import interactions
from .conversations import interaction_caller
from .menus import MessageMenus
from .pacing import RateMonitor, Watch
from .responses import NOT_ALLOWED, drop_thinking, reply
from .surface import LIMIT, MAPPED, InteractionSurface, map_error

log = logging.getLogger(__name__)

Handler = Callable[[discord.Interaction, str], Awaitable[None]]
Relevant = Callable[[], Awaitable[bool]]
#: builds an interaction's ``Incoming`` for its caller, with the core's relevance probe
Build = Callable[[Caller, Relevant], Incoming]
#: what the asker sees when the core turns them away (a block list)
Refused = Callable[[discord.Interaction], Awaitable[None]]
Complete = Callable[[discord.Interaction[Any], str], Coroutine[Any, Any, list[app_commands.Choice[str]]]]
#: Discord's limits on autocomplete choices: how many, and characters of a name or value
MAX_CHOICES = 25
CHOICE_CHARS = 100



def ask_command(handler: Handler) -> app_commands.Command[Any, Any, None]:
    @app_commands.command(name="ask", description="Ask the model a question")
    @app_commands.describe(question="What do you want to know?")
    @app_commands.allowed_installs(guilds=True, users=True)  # user-installed: answered where the bot is not
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
    async def ask(interaction: discord.Interaction, question: str) -> None:
        await handler(interaction, question)

    return ask


def relay_command(handler: Handler, complete: Complete) -> app_commands.Command[Any, Any, None]:
    @app_commands.command(name="relay", description="The bot's status, this channel's settings, your usage")
    @app_commands.describe(command="status, config [NAME VALUE], usage or help")
    @app_commands.autocomplete(command=complete)
    @app_commands.allowed_installs(guilds=True, users=False)  # a channel's settings: where the bot is
    @app_commands.allowed_contexts(guilds=True, dms=True, private_channels=False)
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
        self.menus = MessageMenus(self)

    def install(self, tree: app_commands.CommandTree[Any]) -> None:
        tree.add_command(ask_command(self.ask))
        tree.add_command(relay_command(self.relay, self.complete_relay))
        for menu in self.menus.context_menus():
            tree.add_command(menu)

    async def ask(self, interaction: discord.Interaction, question: str) -> None:
        """Defer within Discord's 3 s, then stream the answer into the original response."""

        def build(caller: Caller, relevant: Relevant) -> Incoming:
            return self.incoming(interaction, question, caller, relevant=relevant)

        await self.start(interaction, build, "/ask", drop_thinking)

    async def start(self, interaction: discord.Interaction, build: Build, what: str, blocked: Refused) -> None:
        """An interaction answered in its response (``/ask``, the message menus): refused at once
        when the caller may not ask here, else deferred and handed to the core.  ``blocked`` runs
        when the core turns the caller away (a block list)."""
        if not self.open() or not self.core.accepting:
            return
        caller = interaction_caller(interaction)
        if not self.core.may_ask(caller):
            await reply(interaction, NOT_ALLOWED, f"{what} refusal")
            return
        try:  # first: the 3 s window is Discord's, whatever else is slow
            await interaction.response.defer(thinking=True)
        except MAPPED as exc:
            log.warning("discord %s %s: could not defer: %s", what, interaction.id, map_error(exc))
            return
        work = self._answer(interaction, build, caller, blocked)
        if self.core.spawn(work, name=f"discord-{what.strip('/')}-{interaction.id}") is None:
            log.info("discord: shutting down, %s %s not answered", what, interaction.id)

    async def _answer(self, interaction: discord.Interaction, build: Build, caller: Caller, blocked: Refused) -> None:
        past_block_list = False

        async def relevant() -> bool:  # the core asks only once the caller is known not to be blocked
            nonlocal past_block_list
            past_block_list = True
            return True

        outcome = await self.core.handle(build(caller, relevant))
        if outcome is None and not past_block_list:
            # A blocked caller: the core stays silent (``blocked`` says what the asker sees).
            # (A redelivered interaction also ends without an outcome, but past the block list:
            # its first delivery is answering into the same response, which must stay.)
            await blocked(interaction)

    async def revive(self, saved: dict[str, Any]) -> Incoming | None:
        """An ``/ask`` (or a message menu) accepted before a restart, while its response can still be written."""
        interaction = interactions.rebuilt(self.client, saved.get("interaction") or {})
        caller = saved.get("caller")
        if interaction is None or not isinstance(caller, dict):
            return None
        caller = Caller(**{**caller, "roles": frozenset(caller.get("roles", ()))})
        if isinstance(saved.get("menu"), dict):
            return await self.menus.revive(interaction, caller, saved["menu"])
        return self.incoming(interaction, str(saved.get("question", "")), caller, keys=())

    def incoming(
        self,
        interaction: discord.Interaction,
        question: str,
        caller: Caller,
        *,
        keys: tuple[tuple[str, str], ...] | None = None,
        relevant: Relevant | None = None,
    ) -> Incoming:
        user_id = self.client.user.id if self.client.user else 0
        turn = Turn(
            "user",
            fmt.question_text(question, user_id, {}),
            author=interaction.user.display_name if interaction.guild_id is not None else None,
            message_id=f"discord:ask:{interaction.id}",
        )

        async def read(budget: int, counter: TokenCounter) -> list[Turn]:
            return [turn]

        return self.answered_in(interaction, caller, read, {"question": question}, keys=keys, relevant=relevant)

    def answered_in(
        self,
        interaction: discord.Interaction,
        caller: Caller,
        read: ReadHistory,
        saved: dict[str, Any],
        *,
        keys: tuple[tuple[str, str], ...] | None = None,
        relevant: Relevant | None = None,
    ) -> Incoming:
        """The request an interaction makes, answered in its response (the webhook of its token:
        no channel send, so it works where the bot is not a member, as a user-installed app).
        ``saved`` is what ``revive`` needs besides the interaction and the caller."""
        surface = InteractionSurface(interaction, watch=Watch(self.monitor, f"token:{interaction.token}"))

        async def open_(turns: list[Turn]) -> Surface:
            return surface

        async def after(outcome: Any) -> None:
            if outcome.messages == 0:  # nothing was shown: no "thinking…" left behind
                await drop_thinking(interaction)

        return Incoming(
            caller=caller,
            conversation=f"ask:{interaction.id}",
            read=read,
            open=open_,
            keys=(("interaction", str(interaction.id)),) if keys is None else keys,
            origin={
                "ask": {**saved, "interaction": surface.place["interaction"], "caller": _saved(caller)},
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
        await reply(interaction, text, "/relay answer")


    async def complete_relay(self, interaction: discord.Interaction[Any], current: str) -> list[app_commands.Choice[str]]:
        """``/relay``'s option autocomplete: the core's completions of what is typed so far."""
        texts = self.core.relay_suggestions(interaction_caller(interaction), current)
        texts = [t for t in texts if len(t) <= CHOICE_CHARS][:MAX_CHOICES]
        return [app_commands.Choice(name=t, value=t) for t in texts]


def _saved(caller: Caller) -> dict[str, Any]:
    return {**asdict(caller), "roles": sorted(caller.roles)}
