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
    while True:
        client = make_client(service, settings, plan, message_content=message_content, **options)
        try:
            await _serve(client, token, stop)
            return
        except discord.PrivilegedIntentsRequired as exc:
            if not message_content:
                raise ConfigError("Discord refused the bot's gateway intents") from exc
            log.warning(INTENT_WARNING)
            message_content = False
        except discord.LoginFailure as exc:
            raise ConfigError("DISCORD_TOKEN was rejected by Discord (check the bot token)") from exc
        except (aiohttp.ClientConnectionError, OSError) as exc:  # at login: the gateway retries by itself
            raise PlatformUnavailable(
                f"discord: cannot reach {settings.discord_api_url} ({_reason(exc)}); check DISCORD_API_URL "
                "and the network"
            ) from exc


async def _serve(client: RelayClient, token: str, stop: asyncio.Event) -> None:
    connection = asyncio.create_task(client.start(token), name="discord-gateway")
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


def _reason(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return os_reason(exc.os_error)
    return os_reason(exc) if isinstance(exc, OSError) else str(exc) or type(exc).__name__
