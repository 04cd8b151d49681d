"""Fixtures for the Slack tests (a pytest plugin): the fake Slack and a started bot."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from adapters.slack import SlackBot
from bot.runtime import build_router
from bot.service import RelayService
from bot.store_sqlite import SqliteStore
from tests.fakes.slack import FakeSlack


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(names={"U1": "Ada", "U2": "Grace"})
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def start_bot(make_settings, slack: FakeSlack) -> AsyncIterator[Callable[..., Any]]:
    """Start a real SlackBot (Socket Mode by default) against the fake; stopped at teardown."""
    bots: list[SlackBot] = []
    opened: list[tuple[SqliteStore, Any]] = []

    async def start(**overrides: Any) -> SlackBot:
        values: dict[str, Any] = {
            "slack_bot_token": "xoxb-fake",
            "slack_app_token": "xapp-fake",
            "slack_api_url": slack.api_url,
            "slack_port": 0,
        }
        values.update(overrides)
        settings = make_settings(**values)
        store = await SqliteStore.open(settings.bot_database)
        router = build_router(settings)
        opened.append((store, router))
        bot = SlackBot(RelayService(settings, store, router), settings, host="127.0.0.1")
        await bot.start()
        bots.append(bot)
        return bot

    yield start
    for bot in bots:
        await bot.stop(grace=10)
    for store, router in opened:
        await router.aclose()
        await store.close()
