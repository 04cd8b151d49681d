"""Waiting for the Slack bot to be idle in the bad-input tests, leftover placeholders, the store after."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from adapters.slack.events import PLACEHOLDER
from tests import fuzz_support
from tests.fakes.slack import BOT_ID, FakeSlack
from tests.slack_helpers import until

#: slack_sdk runs each envelope in a task; Bolt acks events, then runs the listener in another
_RUNS = ("run_message_listeners", "run_ack_function_asynchronously")


def listener_tasks() -> list[asyncio.Task[Any]]:
    return [
        t
        for t in asyncio.all_tasks()
        if not t.done() and getattr(t.get_coro(), "__qualname__", "").endswith(_RUNS)
    ]


async def settled(bot: Any, slack: FakeSlack | None) -> None:
    """Wait (bounded) until every envelope sent so far is handled and no reply task is running.

    A barrier envelope (an ignored deletion) is acked after every earlier one was taken
    off the socket, so its ack means their tasks exist; then they must all end.
    """
    if slack is not None:  # over HTTP the response comes after the listener has started
        barrier = {"type": "message", "subtype": "message_deleted", "channel": "C1", "ts": slack.next_ts()}
        await slack.deliver(slack.callback(barrier))
    await until(lambda: not listener_tasks() and not len(bot.service.tasks), what="the bot to be idle")


def placeholders_left(slack: FakeSlack) -> list[str]:
    return [
        f"{channel}/{ts}"
        for channel, messages in slack.messages.items()
        for ts, m in messages.items()
        if m.get("bot_id") == BOT_ID and m.get("text") in (PLACEHOLDER, "")
    ]


async def check_store(path: Path, answered_min: int = 1) -> None:
    """The shared store check (``tests.fuzz_support``) for Slack."""
    await fuzz_support.check_store(path, "slack", answered_min)
