"""Running the real Discord adapter against the fake Discord, for the e2e tests."""

from __future__ import annotations

import asyncio
import re
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
from bot.store_sqlite import SqliteStore
from tests.fakes.discord import FakeDiscord, Rule
from tests.waiting import wait_until

wait_for = wait_until  # the shared bounded poll (tests/waiting.py)

@dataclass
class Running:
    fake: FakeDiscord
    service: RelayService
    task: asyncio.Task[None]
    stop: asyncio.Event
    store: SqliteStore | None = None
    router: Any = None
    #: discord.py's REST and gateway URLs before the bot pointed them at the fake
    endpoints: tuple[Any, Any] | None = None


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
    try:
        bot = await start_bot(make_settings, fake, prepare, **overrides)
        try:
            yield bot
        finally:
            await stop_bot(bot)
    finally:
        await fake.stop()
        await settle()


async def start_bot(
    make_settings: Callable[..., Any],
    fake: FakeDiscord,
    prepare: Callable[[RelayService, FakeDiscord], Awaitable[None]] | None = None,
    **overrides: Any,
) -> Running:
    """One bot process (store, service, the adapter's ``run``) connected to a started ``fake``.

    Several can run one after the other on the same SQLite file, as restarts: end each
    with ``stop_bot`` (a clean stop) or ``crash_bot`` (the process dies).
    """
    settings = make_settings(
        discord_token="fake.token.value",
        discord_api_url=fake.api_url,
        discord_gateway_url=fake.gateway_url,
        **overrides,
    )
    store = await SqliteStore.open(settings.bot_database)
    router = build_router(settings)
    service = RelayService(settings, store, router)
    endpoints = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    stop = asyncio.Event()
    task: asyncio.Task[None] | None = None
    try:
        if prepare is not None:
            await prepare(service, fake)
        task = asyncio.create_task(adapter.run(service, settings, stop, guild_ready_timeout=0.1))
        # on_ready (after guild_ready_timeout) marks the platform healthy; waiting for it also
        # keeps discord.py's ready task from outliving the test
        await wait_for(lambda: service.health.get("discord") or task.done(), what="the bot to be ready")
        if task.done():
            task.result()
    except BaseException:
        stop.set()
        if task is not None:
            await asyncio.wait({task}, timeout=20)
        await _release(Running(fake, service, task, stop, store, router, endpoints))  # type: ignore[arg-type]
        raise
    return Running(fake, service, task, stop, store, router, endpoints)


async def stop_bot(bot: Running) -> None:
    """A clean stop: ``run`` lets the answers in flight finish (the drain) and returns."""
    bot.stop.set()
    try:
        await asyncio.wait_for(bot.task, timeout=20)
    finally:
        await _release(bot)


async def crash_bot(bot: Running) -> None:
    """The process dies: nothing it would still do reaches Discord.

    Every REST call fails from now on (the process is gone), then every answer in
    flight and the adapter are cancelled without a drain: whatever an answer would
    show on its way down cannot land, so Discord and the store are left as a SIGKILL
    leaves them.  The fake answers normally again once the bot is gone.
    """
    gone = [
        Rule(method, re.compile(r".*"), 503, {"code": 0, "message": "the bot process is gone"}, {}, 10**9)
        for method in ("GET", "POST", "PATCH", "PUT", "DELETE")
    ]
    bot.fake.rules[:0] = gone
    try:
        answers = set(bot.service.tasks._tasks)
        for task in answers:
            task.cancel()
        if answers:
            await asyncio.wait(answers, timeout=20)
        bot.task.cancel()
        await asyncio.wait({bot.task}, timeout=20)
    finally:
        for rule in gone:
            bot.fake.rules.remove(rule)
        await _release(bot)


async def _release(bot: Running) -> None:
    """Put discord.py's URLs back and close what the bot opened."""
    if bot.endpoints is not None:
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = bot.endpoints
    if bot.router is not None:
        await bot.router.aclose()
    if bot.store is not None:
        await bot.store.close()


async def settle() -> None:
    """Let the event handlers discord.py scheduled last run before the test's loop closes."""
    for _ in range(5):
        await asyncio.sleep(0)
    current = asyncio.current_task()
    left = [t for t in asyncio.all_tasks() if t is not current and t.get_name().startswith("discord.py")]
    if left:
        await asyncio.wait(left, timeout=5)
