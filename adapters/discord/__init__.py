"""The Discord front end: ``run(service, settings, stop)``.

Connects discord.py to Discord (or to a compatible server named by
DISCORD_API_URL / DISCORD_GATEWAY_URL) on one connection, or on the shards
DISCORD_SHARD_COUNT / DISCORD_SHARDS give this process (``shards``),
finalises answers a crash left unfinished, answers until ``stop`` is set,
lets answers in flight finish (``service.drain``: BOT_SHUTDOWN_GRACE seconds,
then they end as interrupted), then closes the connection.

The message-content intent is privileged.  When the application has not been
granted it, the gateway closes with 4014: the bot then says how to enable it
and carries on without it (mentions, replies that ping, DMs and ``/ask`` still
work; thread follow-ups without a mention arrive empty).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import discord
import yarl

from bot.errors import ConfigError, PlatformUnavailable, os_reason
from bot.incoming import Core
from bot.settings import Settings

from .client import RelayClient
from .shards import make_client, shard_plan

log = logging.getLogger(__name__)

__all__ = ["RelayClient", "point_at", "run"]

INTENT_WARNING = (
    "Discord refused the MESSAGE CONTENT intent (gateway close 4014). Running without it: the bot "
    "still answers mentions, DMs, pinging replies and /ask, but cannot read other messages in its "
    "threads. Enable it under Developer Portal > your application > Bot > Privileged Gateway Intents "
    "> MESSAGE CONTENT INTENT, then restart."
)


def point_at(settings: Settings) -> None:
    """Send discord.py's REST and gateway traffic to the configured URLs."""
    discord.http.Route.BASE = settings.discord_api_url.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


async def run(service: Core, settings: Settings, stop: asyncio.Event, **options: Any) -> None:
    """Serve Discord until ``stop`` is set.  ``options`` go to ``discord.Client`` (tests lower
    ``guild_ready_timeout``)."""
    if settings.discord_token is None:
        raise ConfigError("DISCORD_TOKEN is not set")
    plan = shard_plan(settings)
    point_at(settings)
    token = settings.discord_token.get_secret_value()
    message_content = True
    _quiet_reconnects()
    while True:
        client = make_client(service, settings, plan, message_content=message_content, **options)
        try:
            await _serve(client, token, stop, settings.discord_gateway_url)
            return
        except discord.PrivilegedIntentsRequired as exc:
            if not message_content:
                raise ConfigError("Discord refused the bot's gateway intents") from exc
            log.warning(INTENT_WARNING)
            message_content = False
        except discord.LoginFailure as exc:
            raise ConfigError("DISCORD_TOKEN was rejected by Discord (check the bot token)") from exc
        except (aiohttp.ClientConnectionError, OSError) as exc:  # at login (REST)
            raise PlatformUnavailable(
                f"discord: cannot reach {settings.discord_api_url} ({_reason(exc)}); check DISCORD_API_URL "
                "and the network"
            ) from exc


async def _serve(client: RelayClient, token: str, stop: asyncio.Event, gateway: str) -> None:
    try:
        await client.login(token)  # REST: who the bot is, slash commands, what a restart left open
    except BaseException:
        await client.close()
        raise
    connection = asyncio.create_task(_connect(client, gateway), name="discord-gateway")
    stopped = asyncio.create_task(stop.wait(), name="discord-stop")
    try:
        await asyncio.wait({connection, stopped}, return_when=asyncio.FIRST_COMPLETED)
        client.accepting = False
        if stop.is_set():
            log.info("discord: stopping; answers in flight may finish first")
            # Answers in flight still need the connection for their last edit: drain first.
            await client.core.drain()
    finally:
        client.core.report_health("discord", False)
        stopped.cancel()
        await client.close()
    await connection  # after a clean close this returns; otherwise it raises what ended it


#: What discord.py raises when the gateway cannot be reached.  ``AttributeError``: discord.py 2.7
#: retries a first connection that never opened and fails on the websocket it does not have.
GATEWAY_UNREACHABLE = (aiohttp.ClientError, OSError, discord.GatewayNotFound, AttributeError)


async def _connect(client: RelayClient, url: str) -> None:
    """The gateway connection (reconnects are discord.py's); one that never opened is one clear error."""
    try:
        await client.connect()
    except GATEWAY_UNREACHABLE as exc:
        if client.connected_once:
            raise
        reason = _reason(_RECONNECTS.last or exc)
        raise PlatformUnavailable(
            f"discord: cannot connect to the gateway at {url} ({reason}); check DISCORD_GATEWAY_URL and the network"
        ) from exc


class _ReconnectNotice(logging.Filter):
    """discord.py logs each reconnect with a whole traceback: one line with the reason instead
    (kept in ``last`` for the error when the gateway never answered)."""

    def __init__(self) -> None:
        super().__init__()
        self.last: BaseException | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.getMessage().startswith("Attempting a reconnect"):
            self.last = record.exc_info[1]
            record.msg = f"discord: {record.getMessage()} ({_reason(self.last) if self.last else 'no reason given'})"
            record.args, record.exc_info, record.exc_text = None, None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_RECONNECTS = _ReconnectNotice()


def _quiet_reconnects() -> None:
    _RECONNECTS.last = None
    logger = logging.getLogger("discord.client")
    if _RECONNECTS not in logger.filters:
        logger.addFilter(_RECONNECTS)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return os_reason(exc.os_error)
    return os_reason(exc) if isinstance(exc, OSError) else str(exc) or type(exc).__name__
