"""The discord.py client: gateway events in, ``Incoming`` requests out.

``on_message`` decides with the pure ``events`` functions whether a message
asks the bot something and hands the core an ``Incoming``: the message
snowflake as dedupe key, the caller, a history reader (``history``) and where
the answer goes (a reply, a new thread, the thread or DM itself).  ``/ask`` is
deferred at once, then answered into an ``InteractionSurface``.  The core
decides the rest.  The client is also the core's ``Platform`` after a restart
(``surface``, ``revive``).
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

from bot.conversation import Turn
from bot.incoming import Core, Incoming
from bot.pacing import EditBudget
from bot.settings import Settings
from bot.surface import Surface
from bot.tokens import TokenCounter

from . import format as fmt
from .commands import ask_command, relay_command, relay_reply
from .conversations import Conversations, conversation_key, interaction_caller, message_caller
from .events import Policy, Trigger, decide, facts_of
from .pacing import Budgets, RateMonitor, Watch
from .parsers import UNREADABLE, guard_parsers
from .surface import MAPPED, NO_MENTIONS, ChannelSurface, ExpiredSurface, InteractionSurface, map_error

log = logging.getLogger(__name__)

#: The smallest value discord.py accepts; longer rate-limit waits raise instead of hanging.
MAX_RATELIMIT_WAIT = 30.0
EMPTY_CONTENT_WARNING = (
    "Discord delivered a message with empty content. If the bot should read messages without "
    "being mentioned (threads, replies without ping), enable MESSAGE CONTENT INTENT under "
    "Developer Portal > your application > Bot > Privileged Gateway Intents."
)
NOT_ALLOWED = "Sorry, I am not set up to answer here."


class RelayClient(discord.Client):
    name = "discord"

    def __init__(self, core: Core, settings: Settings, *, message_content: bool = True, **options: Any) -> None:
        intents = discord.Intents.default()
        intents.message_content = message_content
        self.monitor = RateMonitor()
        options.setdefault("max_ratelimit_timeout", MAX_RATELIMIT_WAIT)
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # no voice here
        super().__init__(
            intents=intents, allowed_mentions=NO_MENTIONS, http_trace=self.monitor.trace, **options
        )
        guard_parsers(self._connection.parsers)  # an unreadable event must not end the connection
        self.core = core
        self.settings = settings
        self.policy = Policy.from_settings(settings)
        self.budgets = Budgets(settings.discord_edits_per_minute)
        self.conversations = Conversations(self)
        self.tree = app_commands.CommandTree(self)
        self.tree.add_command(ask_command(self.ask))
        self.tree.add_command(relay_command(self.relay))
        self.accepting = True
        self._warned_empty = False
        core.report_health("discord", False)  # until on_ready: /healthz says "not yet"

    # -- lifecycle ------------------------------------------------------------------------

    async def setup_hook(self) -> None:
        """After login, before the gateway: sync slash commands, settle what a restart left open."""
        try:
            synced = await self.tree.sync()
        except MAPPED as exc:
            log.warning("discord: could not sync slash commands: %s", map_error(exc))
        else:
            log.info("discord: synced %d slash command(s)", len(synced))
        recovered = await self.core.recover(self)
        if recovered:
            log.info("discord: settled %d request(s) left open by a restart", recovered)

    async def on_ready(self) -> None:
        self.core.report_health("discord", True)
        log.info(
            "discord: connected as %s (%s) in %d guild(s)",
            self.user,
            self.user and self.user.id,
            len(self.guilds),
        )

    async def on_resumed(self) -> None:
        self.core.report_health("discord", True)

    async def on_disconnect(self) -> None:
        self.core.report_health("discord", False)

    def _handle(self, incoming: Incoming, name: str) -> None:
        if self.core.spawn(self.core.handle(incoming), name=name) is None:
            log.info("discord: shutting down, %s not started", name)

    # -- the core's Platform ---------------------------------------------------------------

    def surface(self, place: dict[str, Any]) -> Surface:
        if place.get("kind") != "channel":
            return ExpiredSurface()
        channel = self.get_partial_messageable(int(place["channel"]))
        reply_to = place.get("reply_to")
        return ChannelSurface(channel, int(reply_to) if reply_to else None, self._watch(channel.id))

    async def revive(self, origin: dict[str, Any]) -> Incoming | None:
        if "message" not in origin or self.user is None:
            return None  # an interaction's token does not outlive a restart
        channel = self.get_channel(int(origin["channel"])) or await _call(self.fetch_channel(int(origin["channel"])))
        if not isinstance(channel, discord.abc.Messageable):
            return None
        message = await _call(channel.fetch_message(int(origin["message"])))
        return self._incoming(message, Trigger(origin["trigger"]), keys=())

    def _watch(self, channel_id: int) -> Watch:
        return Watch(self.monitor, f"channel:{channel_id}")

    # -- messages ---------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        if not self.accepting or not self.core.accepting or self.user is None:
            return
        try:
            facts = facts_of(message, self.user.id)
        except UNREADABLE as exc:  # discord.py built the message from a malformed payload
            log.warning(
                "discord: ignored message %s it could not read (%s: %s)", message.id, type(exc).__name__, exc
            )
            return
        trigger = decide(facts, self.policy)
        if trigger is not None:
            self._check_content(message)
            incoming = self._incoming(message, trigger, keys=(("message", str(message.id)),))
            self._handle(incoming, f"discord-message-{message.id}")

    def _incoming(self, message: discord.Message, trigger: Trigger, *, keys: tuple[tuple[str, str], ...]) -> Incoming:
        channel = message.channel
        reply_to = None if trigger in (Trigger.DM, Trigger.THREAD) else message.id

        async def read(budget: int, counter: TokenCounter) -> list[Turn] | None:
            return await self.conversations.turns(message, trigger, budget, counter)

        async def open_(turns: list[Turn]) -> Surface:
            target: discord.abc.Messageable = channel
            reply = reply_to
            if (
                trigger is Trigger.MENTION
                and self.settings.discord_reply_mode == "thread"
                and not isinstance(channel, discord.Thread)
                and turns
                and turns[-1].text.strip()
            ):
                thread = await self.conversations.open_thread(message, turns)
                if thread is not None:
                    target, reply = thread, None
            return ChannelSurface(target, reply, self._watch(target.id))

        return Incoming(
            caller=message_caller(message),
            conversation=conversation_key(message, channel),
            read=read,
            open=open_,
            keys=keys,
            origin={
                "channel": str(channel.id),
                "message": str(message.id),
                "trigger": trigger.value,
                "place": {"kind": "channel", "channel": str(channel.id), "reply_to": reply_to},
            },
            budget=self.budgets.for_channel(channel.id),
        )

    def _check_content(self, message: discord.Message) -> None:
        if message.content or message.attachments or message.embeds or message.stickers:
            return
        if not self._warned_empty:
            self._warned_empty = True
            log.warning(EMPTY_CONTENT_WARNING)

    # -- /ask ---------------------------------------------------------------------------------

    async def ask(self, interaction: discord.Interaction, question: str) -> None:
        """Defer within Discord's 3 s, then stream the answer into the original response."""
        if not self.accepting or not self.core.accepting:
            return
        if not self.core.may_ask(interaction_caller(interaction)):
            await self._refuse(interaction)
            return
        caller = interaction_caller(interaction)
        try:  # first: the 3 s window is Discord's, whatever else is slow
            await interaction.response.defer(thinking=True)
        except MAPPED as exc:
            log.warning("discord /ask %s: could not defer: %s", interaction.id, map_error(exc))
            return
        surface = InteractionSurface(interaction, watch=Watch(self.monitor, f"token:{interaction.token}"))
        labelled = interaction.guild_id is not None
        text = fmt.question_text(question, self.user.id if self.user else 0, {})
        turn = Turn(
            "user",
            text,
            author=interaction.user.display_name if labelled else None,
            message_id=f"discord:ask:{interaction.id}",
        )

        async def read(budget: int, counter: TokenCounter) -> list[Turn]:
            return [turn]

        async def open_(turns: list[Turn]) -> Surface:
            return surface

        past_block_list = False

        async def relevant() -> bool:  # the core asks only once the caller is known not to be blocked
            nonlocal past_block_list
            past_block_list = True
            return True

        async def after(outcome: Any) -> None:
            if outcome.messages == 0:  # nothing was shown: no "thinking…" left behind
                await _drop_thinking(interaction)

        incoming = Incoming(
            caller=caller,
            conversation=f"ask:{interaction.id}",
            read=read,
            open=open_,
            keys=(("interaction", str(interaction.id)),),
            # No place and nothing to revive: an interaction token does not outlive a restart, so
            # recovery closes the request instead of trying to write to it at every start.
            origin={},
            relevant=relevant,
            # Interaction webhooks have their own bucket, separate from the channel's.
            budget=EditBudget(self.settings.discord_edits_per_minute),
            after=after,
        )

        async def answer() -> None:
            outcome = await self.core.handle(incoming)
            if outcome is None and not past_block_list:
                # A blocked caller: the core stays silent, so the deferred "thinking…" goes.
                # (A redelivered /ask also ends without an outcome, but past the block list:
                # its first delivery is answering into the same response, which must stay.)
                await _drop_thinking(interaction)

        if self.core.spawn(answer(), name=f"discord-ask-{interaction.id}") is None:
            log.info("discord: shutting down, /ask %s not answered", interaction.id)

    async def relay(self, interaction: discord.Interaction, command: str) -> None:
        """``/relay``: status, channel settings and usage, shown only to the person who asked."""
        text = await relay_reply(self.core, interaction_caller(interaction), command)
        try:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        except MAPPED as exc:
            log.warning("discord /relay %s: could not answer: %s", interaction.id, map_error(exc))

    async def _refuse(self, interaction: discord.Interaction) -> None:
        try:
            await interaction.response.send_message(NOT_ALLOWED, ephemeral=True, allowed_mentions=NO_MENTIONS)
        except MAPPED as exc:
            log.info("discord /ask %s: refusal not shown: %s", interaction.id, map_error(exc))


async def _call(call: Any) -> Any:
    """A discord.py call, its failures as ``bot.errors``."""
    try:
        return await call
    except MAPPED as exc:
        raise map_error(exc) from exc


async def _drop_thinking(interaction: discord.Interaction) -> None:
    try:
        await interaction.delete_original_response()
    except MAPPED as exc:
        log.info("discord /ask %s: placeholder not removed: %s", interaction.id, map_error(exc))
