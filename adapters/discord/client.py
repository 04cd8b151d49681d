"""The discord.py client: gateway events in, ``Incoming`` requests out.

``on_message`` decides with the pure ``events`` functions whether a message
asks the bot something and hands the core the ``Incoming`` that ``requests``
builds; the slash commands live in ``commands``.  The core decides the rest.
The client is also the core's ``Platform`` after a restart (``surface``,
``revive``).
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

from bot.incoming import Core, Incoming
from bot.settings import Settings
from bot.surface import Surface

from . import interactions
from .commands import SlashCommands
from .controls import DiscordControls
from .conversations import Conversations
from .edits import DiscordEdits
from .events import Policy, Trigger, decide, facts_of
from .pacing import Budgets, RateMonitor, Watch
from .parsers import UNREADABLE, guard_parsers
from .requests import MessageRequests
from .surface import MAPPED, NO_MENTIONS, ChannelSurface, ExpiredSurface, InteractionSurface, map_error

log = logging.getLogger(__name__)

#: The smallest value discord.py accepts; longer rate-limit waits raise instead of hanging.
MAX_RATELIMIT_WAIT = 30.0
EMPTY_CONTENT_WARNING = (
    "Discord delivered a message with empty content. If the bot should read messages without "
    "being mentioned (threads, replies without ping), enable MESSAGE CONTENT INTENT under "
    "Developer Portal > your application > Bot > Privileged Gateway Intents."
)


class RelayClient(discord.Client):
    name = "discord"
    syncs_commands = True

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
        self.requests = MessageRequests(self.conversations, settings, self.budgets, self._watch)
        self.tree = app_commands.CommandTree(self)
        self.commands = SlashCommands(self, core, settings.discord_edits_per_minute, self.monitor, self.taking_work)
        self.commands.install(self.tree)
        self.controls = DiscordControls(self)
        self.edits = DiscordEdits(self)
        self.accepting = True
        self.connected_once = False  # READY seen: later gateway failures are discord.py's to retry
        self._warned_empty = False
        core.report_health("discord", False)  # until on_ready: /healthz says "not yet"

    # -- lifecycle ------------------------------------------------------------------------

    async def setup_hook(self) -> None:
        """After login, before the gateway: sync slash commands, settle what a restart left open."""
        if self.syncs_commands:  # one process of a sharded bot does (``shards``)
            await self._sync_commands()
        recovered = await self.core.recover(self)
        if recovered:
            log.info("discord: settled %d request(s) left open by a restart", recovered)

    async def _sync_commands(self) -> None:
        try:
            synced = await self.tree.sync()
        except MAPPED as exc:
            log.warning("discord: could not sync slash commands: %s", map_error(exc))
        else:
            log.info("discord: synced %d slash command(s)", len(synced))

    async def on_ready(self) -> None:
        self.connected_once = True
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

    def taking_work(self) -> bool:
        return self.accepting

    def _handle(self, incoming: Incoming, name: str) -> None:
        if self.core.spawn(self.core.handle(incoming), name=name) is None:
            log.info("discord: shutting down, %s not started", name)

    # -- the core's Platform ---------------------------------------------------------------

    def surface(self, place: dict[str, Any]) -> Surface:
        if place.get("kind") == "interaction":
            interaction = interactions.rebuilt(self, place.get("interaction") or {})
            if interaction is None:
                return ExpiredSurface()
            return InteractionSurface(interaction, Watch(self.monitor, f"token:{interaction.token}"))
        channel = self.get_partial_messageable(int(place["channel"]))
        reply_to = place.get("reply_to")
        return ChannelSurface(channel, int(reply_to) if reply_to else None, self._watch(channel.id))

    async def revive(self, origin: dict[str, Any]) -> Incoming | None:
        if "ask" in origin:
            return await self.commands.revive(origin["ask"])
        if "message" not in origin or self.user is None:
            return None
        channel = self.get_channel(int(origin["channel"])) or await _call(self.fetch_channel(int(origin["channel"])))
        if not isinstance(channel, discord.abc.Messageable):
            return None
        message = await _call(channel.fetch_message(int(origin["message"])))
        return self.requests.incoming(message, Trigger(origin["trigger"]), keys=())

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
            incoming = self.requests.incoming(message, trigger, keys=(("message", str(message.id)),))
            self._handle(incoming, f"discord-message-{message.id}")

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """A button of ours pressed (slash commands go to the command tree)."""
        await self.controls.on_interaction(interaction)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        if self.accepting and self.core.accepting:
            await self.controls.on_reaction(payload)

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """An edited question may be answered again (``edits``)."""
        if self.accepting and self.core.accepting:
            await self.edits.on_edit(payload)

    def _check_content(self, message: discord.Message) -> None:
        if message.content or message.attachments or message.embeds or message.stickers:
            return
        if not self._warned_empty:
            self._warned_empty = True
            log.warning(EMPTY_CONTENT_WARNING)


async def _call(call: Any) -> Any:
    """A discord.py call, its failures as ``bot.errors``."""
    try:
        return await call
    except MAPPED as exc:
        raise map_error(exc) from exc
