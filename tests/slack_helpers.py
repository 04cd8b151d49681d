"""Helpers for the Slack tests: a bounded wait and readers of what the bot posted in the fake."""

from __future__ import annotations

from typing import Any

from tests.fakes.slack import FakeSlack
from tests.waiting import wait_until

until = wait_until  # the shared bounded poll (tests/waiting.py)

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
