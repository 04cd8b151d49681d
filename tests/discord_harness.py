"""Running the real Discord adapter against the fake Discord, for the e2e tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import discord
import discord.gateway
import discord.http

import adapters.discord as adapter
from bot.runtime import build_router
from bot.service import RelayService
from bot.store import SqliteStore
from tests.fakes.discord import FakeDiscord
from tests.waiting import wait_until

wait_for = wait_until  # the shared bounded poll (tests/waiting.py)

@dataclass
class Running:
    fake: FakeDiscord
    service: RelayService
    task: asyncio.Task[None]
    stop: asyncio.Event


@asynccontextmanager
async def running_bot(
    make_settings: Callable[..., Any],
    fake: FakeDiscord | None = None,
    prepare: Callable[[RelayService, FakeDiscord], Awaitable[None]] | None = None,
    **overrides: Any,
) -> AsyncIterator[Running]:
    """The adapter's ``run`` on a fresh store; ``prepare`` runs before it connects."""
    fake = fake or FakeDiscord()
    await fake.start()
    settings = make_settings(
        discord_token="fake.token.value",
        discord_api_url=fake.api_url,
        discord_gateway_url=fake.gateway_url,
        **overrides,
    )
    store = await SqliteStore.open(settings.bot_database)
    router = build_router(settings)
    service = RelayService(settings, store, router)
    if prepare is not None:
        await prepare(service, fake)
    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    stop = asyncio.Event()
    task = asyncio.create_task(adapter.run(service, settings, stop, guild_ready_timeout=0.1))
    try:
        # on_ready (after guild_ready_timeout) marks the platform healthy; waiting for it also
        # keeps discord.py's ready task from outliving the test
        await wait_for(lambda: service.health.get("discord") or task.done(), what="the bot to be ready")
        if task.done():
            task.result()
        yield Running(fake, service, task, stop)
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, timeout=20)
        finally:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = base, gateway
            await fake.stop()
            await router.aclose()
            await store.close()
            await settle()


async def settle() -> None:
    """Let the event handlers discord.py scheduled last run before the test's loop closes."""
    for _ in range(5):
        await asyncio.sleep(0)
    current = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not current and t.get_name().startswith("discord.py")]
    if left:
        await asyncio.wait(left, timeout=5)
