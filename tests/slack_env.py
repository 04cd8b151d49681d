"""Fixtures for the Slack tests: the fake Slack, a started bot, and a bounded wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from adapters.slack import SlackBot
from bot.runtime import build_router
from bot.service import RelayService
from bot.store import SqliteStore
from tests.fakes.slack import FakeSlack


async def until(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy (bounded; never a bare sleep-then-assert)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(names={"U1": "Ada", "U2": "Grace"})
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def start_bot(make_settings, slack: FakeSlack) -> AsyncIterator[Callable[..., Any]]:
    """Start a real SlackBot (Socket Mode by default) against the fake; stopped at teardown."""
    started: list[tuple[SlackBot, SqliteStore, Any]] = []

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
        bot = SlackBot(RelayService(settings, store, router), settings, host="127.0.0.1")
        await bot.start()
        started.append((bot, store, router))
        return bot

    yield start
    for bot, store, router in started:
        await bot.stop(grace=10)
        await router.aclose()
        await store.close()


def thread_texts(slack: FakeSlack, channel: str, thread_ts: str | None) -> list[str]:
    """Texts of the bot's messages in a thread (or at the top level when ``thread_ts`` is None)."""
    return [
        m["text"]
        for m in slack.bot_messages(channel)
        if (m.get("thread_ts") == thread_ts if thread_ts else "thread_ts" not in m)
    ]


async def reply_text(
    slack: FakeSlack, channel: str, thread_ts: str | None, expected: str, timeout: float = 15.0
) -> list[str]:
    """Wait until the bot's messages there read ``expected`` (the last one exactly); return all texts."""
    await until(
        lambda: (
            thread_texts(slack, channel, thread_ts)
            and thread_texts(slack, channel, thread_ts)[-1] == expected
        ),
        timeout,
        what=f"the reply {expected[:40]!r} in {channel}",
    )
    return thread_texts(slack, channel, thread_ts)


def mention(slack: FakeSlack, text: str, **kwargs: Any) -> dict[str, Any]:
    event = slack.say(text, **kwargs)
    return {**event, "type": "app_mention"}
