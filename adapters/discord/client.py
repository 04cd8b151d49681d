"""The discord.py client: turns gateway events into requests for the relay service.

``on_message`` decides (``events``), dedupes on the message snowflake, reads
the conversation (``history``), picks where the answer goes (a reply, a new
thread, the thread or DM itself) and streams it through a ``ChannelSink``.
``/ask`` is deferred at once, then answered into an ``InteractionSink``.
Answers run as tracked tasks so the gateway is never blocked and shutdown
can let them finish.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from typing import Any

import discord
from discord import app_commands

from bot.access import Caller
from bot.conversation import Turn
from bot.service import RelayService, Request
from bot.settings import Settings

from . import format as fmt
from . import recovery
from .commands import ask_command, relay_command, relay_reply
from .events import Policy, Trigger, decide, facts_of, interaction_allowed
from .history import HistoryReader, token_budget
from .pacing import Budgets, EditBudget, RateMonitor, Watch
from .parsers import UNREADABLE, guard_parsers
from .sink import MAPPED, NO_MENTIONS, ChannelSink, InteractionSink, map_error

log = logging.getLogger(__name__)

THREAD_NAME_LIMIT = 90
THREAD_ARCHIVE_MINUTES = 1440
#: The smallest value discord.py accepts; longer rate-limit waits raise instead of hanging.
MAX_RATELIMIT_WAIT = 30.0
EMPTY_CONTENT_WARNING = (
    "Discord delivered a message with empty content. If the bot should read messages without "
    "being mentioned (threads, replies without ping), enable MESSAGE CONTENT INTENT under "
    "Developer Portal > your application > Bot > Privileged Gateway Intents."
)
NOT_ALLOWED = "Sorry, I am not set up to answer here."


class RelayClient(discord.Client):
    def __init__(
        self, service: RelayService, settings: Settings, *, message_content: bool = True, **options: Any
    ) -> None:
        intents = discord.Intents.default()
        intents.message_content = message_content
        self.monitor = RateMonitor()
        options.setdefault("max_ratelimit_timeout", MAX_RATELIMIT_WAIT)
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # no voice here
        super().__init__(
            intents=intents, allowed_mentions=NO_MENTIONS, http_trace=self.monitor.trace, **options
        )
        guard_parsers(self._connection.parsers)  # an unreadable event must not end the connection
        self.service = service
        self.settings = settings
        self.policy = Policy.from_settings(settings)
        self.budgets = Budgets(settings.discord_edits_per_minute)
        self.reader = HistoryReader(self, token_budget(settings), service.counter.count)
        self.tree = app_commands.CommandTree(self)
        self.tree.add_command(ask_command(self.ask))
        self.tree.add_command(relay_command(self.relay))
        self.accepting = True
        self._warned_empty = False
        service.health["discord"] = False  # until on_ready: /healthz says "not yet"

    # -- lifecycle ------------------------------------------------------------------------

    async def setup_hook(self) -> None:
        """After login, before the gateway: sync slash commands, finalise what a crash left."""
        try:
            synced = await self.tree.sync()
        except MAPPED as exc:
            log.warning("discord: could not sync slash commands: %s", map_error(exc))
        else:
            log.info("discord: synced %d slash command(s)", len(synced))
        recovered = await self.service.recover("discord", lambda record: recovery.finalise(self, record))
        if recovered:
            log.info("discord: finalised %d answer(s) left unfinished by a restart", recovered)

    async def on_ready(self) -> None:
        self.service.health["discord"] = True
        log.info(
            "discord: connected as %s (%s) in %d guild(s)",
            self.user,
            self.user and self.user.id,
            len(self.guilds),
        )

    async def on_resumed(self) -> None:
        self.service.health["discord"] = True

    async def on_disconnect(self) -> None:
        self.service.health["discord"] = False

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` as a service task: tracked, so a shutdown lets it finish."""
        if self.service.spawn(work, name=name) is None:
            log.info("discord: shutting down, %s not started", name)

    # -- messages ---------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        if not self.accepting or not self.service.accepting or self.user is None:
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
            self.spawn(self.answer_message(message, trigger), name=f"discord-message-{message.id}")

    async def answer_message(self, message: discord.Message, trigger: Trigger) -> None:
        if not await self.service.store.claim_event(f"message:{message.id}", "discord"):
            return
        self._check_content(message)
        try:
            channel, reply_to, turns = await self._conversation(message, trigger)
        except MAPPED as exc:
            log.warning("discord message %s: could not read the conversation: %s", message.id, map_error(exc))
            return
        if trigger is not Trigger.MENTION and not _asks(message, turns):
            log.info("discord message %s: no text to answer (%s)", message.id, trigger.value)
            return  # an image or sticker in a conversation: only an explicit mention gets "empty"
        sink = ChannelSink(channel, reply_to=reply_to, watch=Watch(self.monitor, f"channel:{channel.id}"))
        request = Request(
            platform="discord",
            channel=str(getattr(channel, "parent_id", None) or channel.id),
            thread=_conversation_key(message, channel, turns),
            turns=turns,
            user_id=str(message.author.id),
            workspace=str(message.guild.id) if message.guild is not None else None,
            roles=_roles(message.author),
        )
        try:
            await self.service.answer(request, sink, budget=self.budgets.for_channel(channel.id))
        finally:
            await sink.close()

    async def _conversation(
        self, message: discord.Message, trigger: Trigger
    ) -> tuple[discord.abc.Messageable, discord.Message | None, list[Turn]]:
        """Where the answer goes, what it replies to, and the turns so far."""
        channel = message.channel
        if trigger is Trigger.DM:
            return channel, None, await self.reader.direct(message)
        if trigger is Trigger.THREAD and isinstance(channel, discord.Thread):
            return channel, None, await self.reader.thread(message, channel)
        turns = await self.reader.reply_chain(message)
        if (
            trigger is Trigger.MENTION
            and self.settings.discord_reply_mode == "thread"
            and not isinstance(channel, discord.Thread)
            and _asks(message, turns)
        ):
            thread = await self._open_thread(message, turns)
            if thread is not None:
                return thread, None, turns
        return channel, message, turns

    async def _open_thread(self, message: discord.Message, turns: list[Turn]) -> discord.Thread | None:
        name = thread_name(turns[-1].text if turns else "")
        try:
            return await message.create_thread(name=name, auto_archive_duration=THREAD_ARCHIVE_MINUTES)
        except MAPPED as exc:
            log.warning("discord message %s: no thread (%s); replying instead", message.id, map_error(exc))
            return None

    def _check_content(self, message: discord.Message) -> None:
        if message.content or message.attachments or message.embeds or message.stickers:
            return
        if not self._warned_empty:
            self._warned_empty = True
            log.warning(EMPTY_CONTENT_WARNING)

    # -- /ask ---------------------------------------------------------------------------------

    async def ask(self, interaction: discord.Interaction, question: str) -> None:
        """Defer within Discord's 3 s, then stream the answer into the original response."""
        if not self.accepting or not self.service.accepting:
            return
        if not self._interaction_allowed(interaction):
            await self._refuse(interaction)
            return
        try:  # first: the 3 s window is Discord's, whatever else is slow
            await interaction.response.defer(thinking=True)
        except MAPPED as exc:
            log.warning("discord /ask %s: could not defer: %s", interaction.id, map_error(exc))
            return
        if not await self.service.store.claim_event(f"interaction:{interaction.id}", "discord"):
            return
        self.spawn(self.answer_interaction(interaction, question), name=f"discord-ask-{interaction.id}")

    async def answer_interaction(self, interaction: discord.Interaction, question: str) -> None:
        labelled = interaction.guild_id is not None
        author = interaction.user.display_name if labelled else None
        text = fmt.question_text(question, self.user.id if self.user else 0, {})
        request = Request(
            platform="discord",
            channel=str(getattr(interaction.channel, "parent_id", None) or interaction.channel_id),
            thread=f"ask:{interaction.id}",
            turns=[Turn("user", text, author=author, message_id=f"discord:ask:{interaction.id}")],
            user_id=str(interaction.user.id),
            workspace=str(interaction.guild_id) if interaction.guild_id is not None else None,
            roles=_roles(interaction.user),
        )
        token = interaction.token
        sink = InteractionSink(interaction, watch=Watch(self.monitor, f"token:{token}"))
        # Interaction webhooks have their own bucket, separate from the channel's.
        await self.service.answer(request, sink, budget=EditBudget(self.settings.discord_edits_per_minute))
        if sink.messages == 0 and not sink.dead:
            await _drop_thinking(interaction)  # nothing was shown (a blocked caller): no "thinking…" left

    async def relay(self, interaction: discord.Interaction, command: str) -> None:
        """``/relay``: status, channel settings and usage, shown only to the person who asked."""
        channel = interaction.channel
        caller = Caller(
            platform="discord",
            user=str(interaction.user.id),
            channel=str(getattr(channel, "parent_id", None) or interaction.channel_id),
            workspace=str(interaction.guild_id) if interaction.guild_id is not None else None,
            roles=_roles(interaction.user),
        )
        text = await relay_reply(self.service, caller, command)
        try:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
        except MAPPED as exc:
            log.warning("discord /relay %s: could not answer: %s", interaction.id, map_error(exc))

    def _interaction_allowed(self, interaction: discord.Interaction) -> bool:
        channel = interaction.channel
        roles = [r.id for r in getattr(interaction.user, "roles", [])]
        return interaction_allowed(
            interaction.user.id,
            interaction.guild_id,
            interaction.channel_id,
            getattr(channel, "parent_id", None),
            roles,
            self.policy,
        )

    async def _refuse(self, interaction: discord.Interaction) -> None:
        try:
            await interaction.response.send_message(NOT_ALLOWED, ephemeral=True, allowed_mentions=NO_MENTIONS)
        except MAPPED as exc:
            log.info("discord /ask %s: refusal not shown: %s", interaction.id, map_error(exc))


async def _drop_thinking(interaction: discord.Interaction) -> None:
    try:
        await interaction.delete_original_response()
    except MAPPED as exc:
        log.info("discord /ask %s: placeholder not removed: %s", interaction.id, map_error(exc))


def _asks(message: discord.Message, turns: list[Turn]) -> bool:
    """Whether ``message`` has text to answer (it is the last turn)."""
    return bool(turns) and turns[-1].message_id == f"discord:{message.id}"


def _roles(user: discord.abc.User) -> frozenset[str]:
    return frozenset(str(role.id) for role in getattr(user, "roles", []))


def thread_name(question: str) -> str:
    """A thread title from the question's first line."""
    first = fmt.neutralise(question.strip().split("\n", 1)[0]).strip() or "Answer"
    if len(first) > THREAD_NAME_LIMIT:
        first = first[: THREAD_NAME_LIMIT - 1].rstrip() + "…"
    return first


def _conversation_key(message: discord.Message, channel: Any, turns: list[Turn]) -> str:
    """Answers in one conversation run in order; different conversations run side by side."""
    if isinstance(channel, discord.Thread):
        return f"thread:{channel.id}"
    if message.guild is None:
        return f"dm:{channel.id}"
    root = next((t.message_id for t in turns if t.message_id), None) or f"discord:{message.id}"
    return f"chain:{root}"
