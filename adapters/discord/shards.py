"""Discord sharding: which shards this process runs, when each may IDENTIFY, and its health.

Without ``DISCORD_SHARD_COUNT`` the bot is one plain ``discord.Client``
connection, as it always was (no ``GET /gateway/bot``).  With a count it is an
``AutoShardedClient`` on the shards of ``DISCORD_SHARDS`` ("0-3", "4,5",
"0-1,4"; unset: all of them), and several processes can split the shards.
Discord sends a guild's events to shard ``(guild_id >> 22) % count`` and DMs
to shard 0.  The process that runs shard 0 syncs the slash commands; the
others leave them alone.

Start-up pacing.  Discord allows one IDENTIFY per 5 s in each rate-limit
bucket, ``shard_id % max_concurrency`` (``max_concurrency`` from
``GET /gateway/bot``).  discord.py 2.7 does not read ``max_concurrency``: its
default hook sends a process's first IDENTIFY at once and waits 5 s before
each later one, which paces one process but lets processes started together
IDENTIFY in the same window.  So every process follows one schedule: shard
``s`` first IDENTIFYs ``(s // max_concurrency) * 5`` s after its process
started connecting (the first shard's wait happens before its websocket
opens, so it never counts against discord.py's connect timeout); shards of one
bucket are then 5 s apart whichever process runs them.  A later re-IDENTIFY
waits 5 s, as discord.py's does.  Processes started far apart only spread
further.

Health: up while every shard of this process is ready (or resumed).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord

from bot.errors import ConfigError
from bot.incoming import Core
from bot.settings import Settings

from .client import RelayClient

log = logging.getLogger(__name__)

#: Discord's IDENTIFY window: one per rate-limit bucket per 5 seconds
IDENTIFY_WINDOW = 5.0
_ITEM = re.compile(r"(\d+)(?:-(\d+))?")
SHARDS_HELP = "write shard ids and ranges such as 0-3, 4,5 or 0-1,4"


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """This process's part of the bot: ``ids`` (sorted) out of ``count`` shards."""

    count: int
    ids: tuple[int, ...]

    @property
    def syncs_commands(self) -> bool:
        """Only the process with shard 0 syncs the slash commands."""
        return 0 in self.ids


def shard_plan(settings: Settings) -> ShardPlan | None:
    """The plan from DISCORD_SHARD_COUNT / DISCORD_SHARDS; None without sharding."""
    count, text = settings.discord_shard_count, settings.discord_shards
    if count is None:
        if text:
            raise ConfigError("DISCORD_SHARDS: needs DISCORD_SHARD_COUNT, the bot's total number of shards")
        return None
    return ShardPlan(count, parse_shard_ids(text, count) if text else tuple(range(count)))


def parse_shard_ids(text: str, count: int) -> tuple[int, ...]:
    """``"0-1,4"`` -> ``(0, 1, 4)``, each id below ``count``; a ``ConfigError`` naming DISCORD_SHARDS."""
    ids: set[int] = set()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        match = _ITEM.fullmatch(item.replace(" ", ""))
        if match is None:
            raise ConfigError(f"DISCORD_SHARDS: {item!r} is not a shard id or range; {SHARDS_HELP}")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first:
            raise ConfigError(f"DISCORD_SHARDS: {item!r} runs backwards; {SHARDS_HELP}")
        if last >= count:
            raise ConfigError(
                f"DISCORD_SHARDS: shard {last} does not exist: DISCORD_SHARD_COUNT={count} "
                f"means shards 0-{count - 1}"
            )
        ids.update(range(first, last + 1))
    if not ids:
        raise ConfigError(f"DISCORD_SHARDS: no shard given; {SHARDS_HELP}")
    return tuple(sorted(ids))


def identify_at(shard_id: int, max_concurrency: int) -> float:
    """Seconds after start-up when ``shard_id`` may first IDENTIFY (its bucket's turn)."""
    return (shard_id // max(1, max_concurrency)) * IDENTIFY_WINDOW


def make_client(
    core: Core, settings: Settings, plan: ShardPlan | None, *, message_content: bool = True, **options: Any
) -> RelayClient:
    """The plain client without a plan, else the sharded one."""
    if plan is None:
        return RelayClient(core, settings, message_content=message_content, **options)
    return ShardedRelayClient(core, settings, plan, message_content=message_content, **options)


class ShardedRelayClient(RelayClient, discord.AutoShardedClient):
    """``RelayClient`` on several shards: paced IDENTIFYs, health over all of its shards."""

    def __init__(self, core: Core, settings: Settings, plan: ShardPlan, **options: Any) -> None:
        super().__init__(core, settings, shard_count=plan.count, shard_ids=list(plan.ids), **options)
        self.plan = plan
        self.syncs_commands = plan.syncs_commands
        self.max_concurrency = 1
        self._connecting_since = 0.0
        self._identified: set[int] = set()
        self._shards_up: set[int] = set()
        self._pacing: asyncio.Future[None] | None = None

    async def connect(self, *, reconnect: bool = True) -> None:
        """Learn ``max_concurrency``, wait for the first shard's turn, then open the shards."""
        self._connecting_since = time.monotonic()
        self.max_concurrency = await self._max_concurrency()
        wait = identify_at(self.plan.ids[0], self.max_concurrency)
        log.info(
            "discord: shards %s of %d (max_concurrency %d); first IDENTIFY in %.0fs",
            _ranges(self.plan.ids), self.plan.count, self.max_concurrency, wait,
        )
        self._pacing = asyncio.ensure_future(asyncio.sleep(wait))
        try:
            await self._pacing
        except asyncio.CancelledError:
            if not self.is_closed():
                raise
            return  # closed while waiting for its turn: nothing was opened
        await super().connect(reconnect=reconnect)

    async def close(self) -> None:
        if self._pacing is not None:
            self._pacing.cancel()
        await super().close()

    async def _max_concurrency(self) -> int:
        try:
            limits = await self.fetch_session_start_limits()
        except (discord.GatewayNotFound, aiohttp.ClientError, OSError) as exc:
            reason = type(exc).__name__
            log.warning("discord: GET /gateway/bot failed (%s); pacing IDENTIFYs one per 5 s", reason)
            return 1
        if limits.remaining < len(self.plan.ids):
            log.warning(
                "discord: only %d session starts left until Discord resets them in %.0f s",
                limits.remaining, limits.reset_after / 1000,
            )
        return max(1, limits.max_concurrency)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        if shard_id is None or shard_id in self._identified:
            await asyncio.sleep(IDENTIFY_WINDOW)  # a re-IDENTIFY, as discord.py paces it
            return
        self._identified.add(shard_id)
        turn = self._connecting_since + identify_at(shard_id, self.max_concurrency)
        await asyncio.sleep(max(0.0, turn - time.monotonic()))

    # -- health: every shard of this process ready -------------------------------------------

    def _report(self) -> None:
        self.core.report_health("discord", self._shards_up.issuperset(self.plan.ids))

    async def on_shard_ready(self, shard_id: int) -> None:
        self._shards_up.add(shard_id)
        self._report()

    async def on_shard_resumed(self, shard_id: int) -> None:
        self._shards_up.add(shard_id)
        self._report()

    async def on_shard_disconnect(self, shard_id: int) -> None:
        self._shards_up.discard(shard_id)
        self._report()

    async def on_ready(self) -> None:
        shards, count = _ranges(self.plan.ids), self.plan.count
        log.info("discord: shards %s of %d ready in %d guild(s)", shards, count, len(self.guilds))
        self._report()

    async def on_resumed(self) -> None:
        self._report()

    async def on_disconnect(self) -> None:
        self._report()


def _ranges(ids: tuple[int, ...]) -> str:
    """``(0, 1, 2, 5)`` -> ``"0-2,5"``, for the log."""
    parts: list[str] = []
    start = prev = ids[0]
    for shard in (*ids[1:], None):
        if shard is not None and shard == prev + 1:
            prev = shard
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if shard is not None:
            start = prev = shard
    return ",".join(parts)
