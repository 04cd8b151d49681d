"""Assemble the running service from settings: store, providers, router."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx

from . import tokens
from .errors import ConfigError, NoProviderConfigured
from .providers.registry import build_provider
from .providers.router import Router
from .service import RelayService
from .settings import Settings
from .store import Store
from .store import open_store as open_database


def build_router(
    settings: Settings,
    only: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Router:
    """The providers in failover order; ``sleep`` waits out retry backoff (tests record it instead)."""
    names = [only] if only else settings.provider_order()
    if not names:
        raise NoProviderConfigured()
    providers = []
    for name in names:
        config = settings.provider(name)
        if not config.configured:
            raise ConfigError(f"provider {name!r} is not configured: {missing_setting(name)}")
        providers.append(build_provider(name, settings, transport))
    return Router(providers, turn_timeout=settings.bot_turn_timeout, sleep=sleep)


def missing_setting(name: str) -> str:
    return {
        "aigateway": "set AIGATEWAY_API_KEY",
        "deepinfra": "set DEEPINFRA_TOKEN",
        "dataoorts": "set DATAOORTS_API_KEY",
        "cloudflare": "set CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_AUTH_TOKEN",
        "openai": "set OPENAI_BASE_URL (and OPENAI_API_KEY if the server needs one)",
    }[name]


async def open_store(settings: Settings, *, exclusive: bool = False) -> Store:
    """Open ``BOT_DATABASE`` (a SQLite file or a PostgreSQL URL); ``exclusive`` (``serve``)
    refuses a SQLite file another ``serve`` holds."""
    return await open_database(
        settings.bot_database,
        exclusive=exclusive,
        wait=settings.bot_database_wait,
        pool_size=settings.bot_database_pool,
    )


async def _warm_up(freeze: bool) -> None:
    """Load the tokenizer; with ``freeze``, then keep what start-up loaded out of the garbage
    collector's passes.

    Modules, settings and the tokenizer's tables live as long as a serving process; a full
    collection walking them paused the event loop for ~76 ms (4.7 ms frozen): a stall in every
    reply streaming at that moment.
    """
    await tokens.warm_up()
    if freeze:
        gc.freeze()


@asynccontextmanager
async def open_service(
    settings: Settings, only: str | None = None, *, exclusive: bool = False, serving: bool = False
) -> AsyncIterator[RelayService]:
    """The service and what it runs on; ``serving``: a long-running ``serve`` (see ``_warm_up``)."""
    router = build_router(settings, only)
    try:
        store = await open_store(settings, exclusive=exclusive)
    except BaseException:
        await router.aclose()
        raise
    # Load the tokenizer (0.5 s) in a thread while the caller starts up (platforms connect);
    # a count needed before it is ready waits for this load.
    warm = asyncio.create_task(_warm_up(serving), name="tokenizer-warm-up")
    try:
        service = RelayService(settings, store, router)
        try:
            yield service
        finally:
            await service.stop()
    finally:
        await warm
        await router.aclose()
        await store.close()
