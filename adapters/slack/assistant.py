"""Slack's assistant threads (AI apps, manifest ``assistant_view``): the greeting, suggested
prompts (``SLACK_GREETING``, ``SLACK_SUGGESTED_PROMPTS``) and thread titles.

All of it is a nicety: a failure is logged and the answer goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bot.errors import PlatformError

from .api import SlackApi

log = logging.getLogger(__name__)

TITLE_CHARS = 60


async def greet(api: SlackApi, event: Mapping[str, Any], greeting: str, prompts: list[dict[str, str]]) -> None:
    """A new assistant thread: a greeting and suggested prompts."""
    thread = event.get("assistant_thread") or {}
    channel, thread_ts = thread.get("channel_id"), thread.get("thread_ts")
    if not channel or not thread_ts:
        return
    try:
        await api.call("chat.postMessage", retries=2, channel=channel, thread_ts=thread_ts, text=greeting)
        await api.call(
            "assistant.threads.setSuggestedPrompts", channel_id=channel, thread_ts=thread_ts, prompts=prompts
        )
    except PlatformError as exc:
        log.info("slack: assistant greeting not shown: %s", exc)


def short_title(question: str) -> str:
    """A thread's title from its question: one line of at most ``TITLE_CHARS`` characters."""
    text = " ".join(question.split())
    return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1] + "…"


async def title(api: SlackApi, channel: str, thread_ts: str, question: str) -> None:
    """Name a new assistant thread after its first question."""
    text = short_title(question)
    if not text:  # a question that is only a file: Slack keeps its own title
        return
    try:
        await api.call("assistant.threads.setTitle", channel_id=channel, thread_ts=thread_ts, title=text)
    except PlatformError as exc:
        log.info("slack: thread title not set: %s", exc)
