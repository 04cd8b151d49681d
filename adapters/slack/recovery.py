"""After a crash: finalise the Slack messages of replies that were still streaming.

``RelayService.recover`` hands each unfinished reply's locator (saved by the
sink as its messages appeared) to ``finalise``, which reads the message back
and rewrites it with an "interrupted" note, so no placeholder stays behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.service import INTERRUPTED_NOTE
from bot.store import ReplyRecord

from .api import SlackApi
from .events import PLACEHOLDER
from .format import footer, markdown_footer
from .sink import metadata


def interrupted_text(text: str, head: int, *, markdown: bool = False) -> tuple[str, int]:
    """The final text of an interrupted message, and its footer length."""
    body = text[:head] if text[head:].strip() in ("", PLACEHOLDER) else text
    foot = (markdown_footer if markdown else footer)([INTERRUPTED_NOTE])
    if not body:
        foot = foot.lstrip("\n")
    return body + foot, len(foot)


async def _message(api: SlackApi, channel: str, ts: str, thread_ts: str | None) -> Mapping[str, Any] | None:
    window = {"channel": channel, "oldest": ts, "latest": ts, "inclusive": True, "limit": 1}
    if thread_ts:
        data = await api.call("conversations.replies", retries=3, ts=thread_ts, **window)
    else:
        data = await api.call("conversations.history", retries=3, **window)
    return next((m for m in data.get("messages") or [] if m.get("ts") == ts), None)


async def finalise(api: SlackApi, record: ReplyRecord) -> None:
    where = record.locator
    channel, ts = where.get("channel"), where.get("ts")
    if not isinstance(channel, str) or not isinstance(ts, str):
        return  # nothing was posted before the crash
    thread_ts = where.get("thread_ts")
    message = await _message(api, channel, ts, thread_ts if isinstance(thread_ts, str) else None)
    if message is None:
        return
    head = int(where.get("head") or 0)
    markdown = where.get("kind") == "stream"
    text, foot = interrupted_text(str(message.get("text") or ""), head, markdown=markdown)
    asker = where.get("asker")
    meta = metadata(int(where.get("part") or 0), head, foot, asker if isinstance(asker, str) else None)
    field = "markdown_text" if markdown else "text"
    await api.call("chat.update", retries=3, channel=channel, ts=ts, metadata=meta, **{field: text})
