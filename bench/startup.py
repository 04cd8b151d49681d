"""Scenario 7, start-up: process start -> connected to the Slack and Discord fakes.

``python -m bot serve`` with both platforms configured (Socket Mode for
Slack, the gateway for Discord).  Measured from just before the exec to: the
Slack fake seeing the Socket Mode websocket, the Discord fake seeing the
gateway IDENTIFY, and ``/healthz`` answering 200 (every platform ready).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from .botproc import base_env, start_bot
from .common import Row, median
from .load import answer_for
from .platforms import DiscordDriver, SlackDriver
from .provider import ProviderDouble


async def one_start() -> dict[str, float]:
    provider = await ProviderDouble(answer_for(20)).start()
    slack, discord = SlackDriver(limits=False), DiscordDriver(limits=False)
    await slack.start(1)
    await discord.start(1)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            env = base_env(Path(tmp), provider.base_url, **slack.env(), **discord.env())
            bot = await start_bot(env, Path(tmp))
            try:
                watch = [asyncio.create_task(d.connected()) for d in (slack, discord)]
                healthy = await bot.wait_healthy()
                slack_at, discord_at = await asyncio.wait_for(asyncio.gather(*watch), 30)
                return {
                    "slack": slack_at - bot.started,
                    "discord": discord_at - bot.started,
                    "healthy": healthy - bot.started,
                    "rss_mb": bot.rss_mb(),
                }
            finally:
                await bot.stop()
    finally:
        await slack.stop()
        await discord.stop()
        await provider.stop()


async def bench_startup(quick: bool = False) -> list[Row]:
    runs = [await one_start() for _ in range(1 if quick else 5)]
    name = f"start-up (median of {len(runs)})"
    return [
        Row(name, "process start → Slack Socket Mode connected", median([r["slack"] for r in runs]), "s",
            extra={"runs": runs}),
        Row(name, "process start → Discord gateway IDENTIFY", median([r["discord"] for r in runs]), "s"),
        Row(name, "process start → /healthz ready (both)", median([r["healthy"] for r in runs]), "s"),
        Row(name, "RSS when ready", median([r["rss_mb"] for r in runs]), "MB"),
    ]
