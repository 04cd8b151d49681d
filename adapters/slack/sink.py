"""Reply sinks for Slack: post-then-``chat.update``, and Slack's native streaming.

Both implement ``bot.reply.Sink`` for one reply.  Every message they write
carries our reply metadata (``events.REPLY_EVENT``: part number, header and
footer lengths) so the history reader can join a split reply back together
and strip the notes.  Neither ever leaves the placeholder behind: ``finish``
and ``fail`` always write the message's final text.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.errors import PlatformError, RelayError, StreamClosed

from .api import SlackApi
from .events import PLACEHOLDER, REPLY_EVENT
from .format import footer, markdown_footer, to_markdown, to_mrkdwn, utf8_len

log = logging.getLogger(__name__)

#: interim ``text`` stays below Slack's ~4,000 char ``msg_too_long``, in UTF-8 bytes
TEXT_LIMIT = 3500
#: ``markdown_text`` takes 12,000 chars per call; a streamed message stays below that
STREAM_LIMIT = 8000
#: native streams end after ~5 minutes; roll over to a fresh one before that
STREAM_LIFETIME = 270.0
EMPTY_ANSWER = "(the model returned an empty answer)"
STATUS = "is thinking…"


@dataclass(slots=True)
class Place:
    """Where a reply goes."""

    channel: str
    thread_ts: str | None  # None: top level (a DM or /ask)
    team: str | None = None
    user: str | None = None  # the person asking (recipient of a native stream)
    header: str = ""  # mrkdwn shown above the answer in its first message (/ask)
    continue_in_thread: bool = False  # a top-level reply continues in its own thread


def metadata(part: int, head: int = 0, foot: int = 0, asker: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"part": part}
    if head:
        payload["head"] = head
    if foot:
        payload["foot"] = foot
    if asker:
        payload["asker"] = asker
    return {"event_type": REPLY_EVENT, "event_payload": payload}


class _Messages:
    """What both sinks share: the place, the part counter, the thread continuations go to."""

    def __init__(self, api: SlackApi, place: Place) -> None:
        self.api = api
        self.place = place
        self.part = 0
        self.first_ts: str | None = None
        self.posted: list[str] = []  # ts of every message written, in order

    @property
    def thread(self) -> str | None:
        if self.place.thread_ts:
            return self.place.thread_ts
        if self.part and self.place.continue_in_thread:
            return self.first_ts
        return None

    @property
    def header(self) -> str:
        return self.place.header if self.part == 0 else ""

    def meta(self, foot: int = 0) -> dict[str, Any]:
        return metadata(self.part, len(self.header), foot, self.place.user if self.header else None)

    def where(self, kind: str, ts: str | None) -> dict[str, object] | None:
        """Where the message being written is, for crash recovery (``RelayService.recover``)."""
        if ts is None:
            return None
        return {
            "kind": kind,
            "channel": self.place.channel,
            "ts": ts,
            "thread_ts": self.thread,
            "part": self.part,
            "head": len(self.header),
            "asker": self.place.user if self.header else None,
        }

    def remember(self, ts: str) -> None:
        if self.first_ts is None:
            self.first_ts = ts
        self.posted.append(ts)


class UpdateSink(_Messages):
    """Post a placeholder, edit it with ``chat.update``, continue in new messages (mrkdwn ``text``)."""

    def __init__(
        self, api: SlackApi, place: Place, *, max_chars: int = TEXT_LIMIT, status: bool = False
    ) -> None:
        super().__init__(api, place)
        self.max_chars = max_chars
        self.status = status  # an assistant thread: show "is thinking…" instead of a placeholder
        self.ts: str | None = None

    def measure(self, text: str) -> int:
        return utf8_len(self.header + to_mrkdwn(text))

    def locator(self) -> dict[str, object] | None:
        return self.where("update", self.ts)

    async def start(self) -> None:
        if self.status and await self._set_status():
            return
        await self._write(self.header + PLACEHOLDER, self.meta(), retries=3)

    async def _set_status(self) -> bool:
        try:
            await self.api.call(
                "assistant.threads.setStatus",
                channel_id=self.place.channel,
                thread_ts=self.place.thread_ts,
                status=STATUS,
            )
        except PlatformError as exc:
            log.info("assistant status not shown (%s); posting a placeholder instead", exc)
            return False
        return True

    async def update(self, text: str) -> None:
        await self._write(self.header + to_mrkdwn(text), self.meta())

    async def split(self, text: str) -> None:
        await self._write(self.header + to_mrkdwn(text), self.meta())
        self.ts = None
        self.part += 1

    async def finish(self, text: str, notes: Sequence[str]) -> None:
        await self._final(text, notes or ([] if text else [EMPTY_ANSWER]))

    async def fail(self, text: str, notes: Sequence[str], error: RelayError) -> None:
        await self._final(text, notes or [error.user_message])

    async def _final(self, text: str, notes: Sequence[str]) -> None:
        body = self.header + to_mrkdwn(text)
        foot = footer(notes)
        if not text:  # the notes stand alone (under the /ask header, if any)
            foot = foot.lstrip("\n")
        await self._write(body + foot, self.meta(len(foot)))

    async def _write(self, text: str, meta: dict[str, Any], retries: int = 0) -> None:
        if self.ts is None:
            data = await self.api.call(
                "chat.postMessage",
                retries=retries,
                channel=self.place.channel,
                thread_ts=self.thread,
                text=text,
                metadata=meta,
                unfurl_links=False,
                unfurl_media=False,
            )
            self.ts = str(data.get("ts"))
            self.remember(self.ts)
        else:
            await self.api.call(
                "chat.update", channel=self.place.channel, ts=self.ts, text=text, metadata=meta
            )


class StreamSink(_Messages):
    """Slack's native streaming (``chat.startStream/appendStream/stopStream``), Markdown text.

    Interim updates append only the stable part of the text (up to the last
    whitespace, so neutralising never changes text already sent).  A stream
    older than ``lifetime`` is stopped and the text continues in a fresh one;
    a stream Slack has closed already is finished with ``chat.update``.
    """

    def __init__(
        self, api: SlackApi, place: Place, *, max_chars: int = STREAM_LIMIT, lifetime: float = STREAM_LIFETIME
    ) -> None:
        super().__init__(api, place)
        if not place.thread_ts:
            raise ValueError("a native stream needs a thread")
        self.max_chars = max_chars
        self.lifetime = lifetime
        self.ts: str | None = None
        self.started_at = 0.0
        self.sent = ""  # rendered Markdown already in the current Slack message
        self.offset = 0  # rendered characters of the current reply message held by earlier streams
        self.closed = False  # Slack ended the stream: the rest goes through chat.update

    def measure(self, text: str) -> int:
        return len(to_markdown(text))

    def locator(self) -> dict[str, object] | None:
        return self.where("stream", self.ts)

    async def start(self) -> None:
        await self._open("")

    async def update(self, text: str) -> None:
        stable = text[: max(text.rfind(" "), text.rfind("\n")) + 1]
        await self._show(to_markdown(stable))

    async def split(self, text: str) -> None:
        await self._end(to_markdown(text), "")
        self.part += 1
        self.offset = 0

    async def finish(self, text: str, notes: Sequence[str]) -> None:
        await self._end(to_markdown(text), markdown_footer(notes or ([] if text else [EMPTY_ANSWER])))

    async def fail(self, text: str, notes: Sequence[str], error: RelayError) -> None:
        foot = markdown_footer(notes or [error.user_message])
        await self._end(to_markdown(text), foot if text else foot.lstrip("\n"))

    # -- streams ---------------------------------------------------------------------------

    async def _open(self, rendered: str) -> None:
        data = await self.api.call(
            "chat.startStream",
            retries=3,
            channel=self.place.channel,
            thread_ts=self.place.thread_ts,
            recipient_team_id=self.place.team,
            recipient_user_id=self.place.user,
            markdown_text=rendered or None,
        )
        self.ts = str(data.get("ts"))
        self.remember(self.ts)
        self.started_at = time.monotonic()
        self.sent = rendered
        self.closed = False

    async def _show(self, rendered: str) -> None:
        """Bring the current message up to ``rendered`` (the whole reply message so far)."""
        if self.ts is None:
            await self._open(rendered[self.offset :])
            return
        mine = rendered[self.offset :]
        if self.closed or not mine.startswith(self.sent):
            await self._replace(mine)
            return
        if self.sent and time.monotonic() - self.started_at > self.lifetime:
            await self._roll_over(mine)
            return
        delta = mine[len(self.sent) :]
        if not delta:
            return
        try:
            await self.api.call(
                "chat.appendStream", channel=self.place.channel, ts=self.ts, markdown_text=delta
            )
        except StreamClosed:
            log.info("stream %s closed by Slack; finishing it with chat.update", self.ts)
            self.closed = True
            await self._replace(mine)
            return
        self.sent = mine

    async def _roll_over(self, mine: str) -> None:
        """Stop the ageing stream with what it holds and continue in a new one."""
        try:
            await self._stop("", self.meta())
        except StreamClosed:  # expired already: mark it as ours with chat.update
            await self._replace(self.sent, self.meta())
        self.offset += len(self.sent)
        self.part += 1
        self.ts = None
        await self._open(mine[len(self.sent) :])

    async def _replace(self, mine: str, meta: dict[str, Any] | None = None) -> None:
        await self.api.call(
            "chat.update", channel=self.place.channel, ts=self.ts, markdown_text=mine or " ", metadata=meta
        )
        self.sent = mine

    async def _end(self, rendered: str, foot: str) -> None:
        """Write the final text of the current reply message and close its stream."""
        if self.ts is None:
            await self._open("")
        mine = rendered[self.offset :]
        meta = self.meta(len(foot))
        if not self.closed:
            appendable = mine.startswith(self.sent)
            try:
                await self._stop(mine[len(self.sent) :] + foot if appendable else "", meta)
            except StreamClosed:
                self.closed = True
            else:
                if appendable:
                    self.ts, self.sent = None, ""
                    return
        await self._replace(mine + foot, meta)
        self.ts = None
        self.sent = ""

    async def _stop(self, rest: str, meta: dict[str, Any]) -> None:
        await self.api.call(
            "chat.stopStream",
            channel=self.place.channel,
            ts=self.ts,
            markdown_text=rest or None,
            metadata=meta,
        )
