"""Where a reply shows on Slack: post-then-``chat.update``, or Slack's native streaming.

Both implement ``bot.surface.Surface``; the core decides when to post, edit,
continue in a new message and finish.  Every message carries our reply
metadata (``events.REPLY_EVENT``: part number, header and footer lengths) so
the history reader can join a split reply back together and strip the notes.

An assistant thread or an agent DM (``Place.status``) shows a status line rotating the loading
messages instead of a placeholder; an agent DM thread (``Place.agent``) also has its agent
session ``processing`` while the answer comes (``agent``), and ``active`` once the reply's last
message is written: the final draft that carries notes or final buttons (a finished part of a
longer answer carries neither, ``bot.surface.Draft``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from bot.errors import PlatformError, StreamClosed
from bot.surface import Draft, Ref

from . import agent
from .api import SlackApi
from .controls import blocks
from .marks import Marks
from .events import PLACEHOLDER, REPLY_EVENT
from .format import footer, markdown_footer, to_markdown, to_mrkdwn, utf8_len

log = logging.getLogger(__name__)

#: interim ``text`` stays below Slack's ~4,000 char ``msg_too_long``, in UTF-8 bytes
TEXT_LIMIT = 3500
#: ``markdown_text`` takes 12,000 chars per call; a streamed message stays below that
STREAM_LIMIT = 8000
#: native streams end after ~5 minutes; the core continues in a fresh one before that
STREAM_LIFETIME = 270.0
STATUS = "is thinking…"
#: ends the render of a message whose native stream is still open (never sent to Slack)
OPEN = "\x00open"


@dataclass(slots=True)
class Place:
    """Where a reply goes (saved with the request, so a restart can finish the reply)."""

    channel: str
    thread_ts: str | None  # None: top level (a DM or /ask)
    team: str | None = None
    user: str | None = None  # the person asking (recipient of a native stream)
    header: str = ""  # mrkdwn shown above the answer in its first message (/ask)
    continue_in_thread: bool = False  # a top-level reply continues in its own thread
    stream: bool = False  # Slack's native streaming
    status: bool = False  # an assistant thread or agent DM: "is thinking…" status instead of a placeholder
    agent: bool = False  # an agent DM thread (agent_view): its agent session shows Slack's stop button
    title: str = ""  # the agent session's title: the question, shortened

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Place:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def metadata(part: int, head: int = 0, foot: int = 0, asker: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"part": part}
    if head:
        payload["head"] = head
    if foot:
        payload["foot"] = foot
    if asker:
        payload["asker"] = asker
    return {"event_type": REPLY_EVENT, "event_payload": payload}


def surface_for(
    api: SlackApi, place: Place, *, lifetime: float = STREAM_LIFETIME, loading: Sequence[str] = ()
) -> UpdateSurface | StreamSurface:
    """The surface of ``place``; ``lifetime``: seconds before a native stream continues in a new
    one; ``loading``: the messages a status line rotates through."""
    if place.stream and place.thread_ts:
        return StreamSurface(api, place, lifetime=lifetime, loading=loading)
    return UpdateSurface(api, place, loading=loading)


def ends_reply(draft: Draft) -> bool:
    """Whether ``draft`` is the last message of its reply: final, with notes or final buttons."""
    return draft.final and bool(draft.notes or [c for c in draft.controls if c != "stop"])


class _Messages:
    """What both surfaces share: the place, the thread continuations go to, metadata, status."""

    def __init__(self, api: SlackApi, place: Place, loading: Sequence[str] = ()) -> None:
        self.api = api
        self.where = place
        self.loading = list(loading)
        self.first_ts: str | None = None
        #: the question's ts, marked :eyes: until the first text shows (no placeholder: ``slack.relay``)
        self.seen_ts: str | None = None
        self.marks: Marks | None = None

    @property
    def place(self) -> dict[str, Any]:
        return self.where.as_dict()

    def thread(self, part: int) -> str | None:
        if self.where.thread_ts:
            return self.where.thread_ts
        if part and self.where.continue_in_thread:
            return self.first_ts
        return None

    def header(self, part: int) -> str:
        return self.where.header if part == 0 else ""

    def meta(self, draft: Draft, foot: int = 0) -> dict[str, Any]:
        head = self.header(draft.part)
        return metadata(draft.part, len(head), foot, self.where.user if head else None)

    def remember(self, ts: str) -> None:
        if self.first_ts is None:
            self.first_ts = ts

    async def delete(self, ref: Ref) -> None:
        """Delete one of the bot's messages (the rest of an answer a regenerated one replaced)."""
        await self.api.call("chat.delete", channel=self.where.channel, ts=ref["ts"])

    async def pending(self) -> None:
        """Show that the answer is coming, until the core cancels this (its first text shows).

        An agent DM's session turns ``processing`` (Slack shows its stop button); an assistant
        thread or agent DM shows "is thinking…" and the loading messages as its status (cleared
        by Slack when we post); a question answered without a placeholder gets :eyes:
        (``seen_ts``).
        """
        where = self.where
        if where.agent and where.thread_ts:
            await agent.set_session(
                self.api, where.channel, where.thread_ts, agent.PROCESSING, title=where.title, user=where.user
            )
        if where.status:
            await self._status()
        elif self.seen_ts is not None and self.marks is not None:
            await self._seen(self.seen_ts, self.marks)

    async def _status(self) -> None:
        where = self.where
        try:
            await self.api.call(
                "assistant.threads.setStatus",
                channel_id=where.channel,
                thread_ts=where.thread_ts,
                status=STATUS,
                loading_messages=self.loading or None,
            )
        except PlatformError as exc:
            log.info("assistant status not shown: %s", exc)

    async def _seen(self, ts: str, marks: Marks) -> None:
        """:eyes: on the question while this runs, taken off when it is cancelled (``marks``: the
        mark costs ``chat.update``'s budget nothing); taken off even when this is cancelled while
        the mark is being added."""
        adding = asyncio.ensure_future(marks.add(self.where.channel, ts))
        try:
            if await asyncio.shield(adding):
                await asyncio.Event().wait()  # until the core cancels the indicator
        finally:
            await asyncio.shield(self._unmark(adding, ts, marks))

    async def _unmark(self, adding: asyncio.Future[bool], ts: str, marks: Marks) -> None:
        if await adding:
            await marks.remove(self.where.channel, ts)

    async def written(self, draft: Draft) -> None:
        """After a write: the reply's last message ends an agent DM's ``processing``."""
        if self.where.agent and self.where.thread_ts and ends_reply(draft):
            await agent.set_session(self.api, self.where.channel, self.where.thread_ts, agent.ACTIVE)


class UpdateSurface(_Messages):
    """Post a message, edit it with ``chat.update`` (mrkdwn ``text``; with controls, the same
    text in blocks above the buttons, ``controls.blocks``).

    An interim text shows up to its last whitespace (all of it while it has
    none): a message never shows half a word, and the core can end a message
    with exactly what it shows when ``chat.update`` is busy, continuing in a
    new one.  Posts do not draw from the workspace's ``chat.update`` budget
    (``paced_posts``): ``chat.postMessage`` has its own limit, per channel.
    """

    controls = True
    paced_posts = False

    def __init__(
        self, api: SlackApi, place: Place, *, max_chars: int = TEXT_LIMIT, loading: Sequence[str] = ()
    ) -> None:
        super().__init__(api, place, loading)
        self.max_chars = max_chars
        self.placeholder = not place.status  # an assistant thread has its status line instead

    def _parts(self, draft: Draft) -> tuple[str, str]:
        text = draft.text if draft.final else _stable(draft.text) or draft.text
        body = self.header(draft.part) + (PLACEHOLDER if draft.pending else to_mrkdwn(text))
        foot = footer(draft.notes)
        if not draft.text:  # the notes stand alone (under the /ask header, if any)
            foot = foot.lstrip("\n")
        return body, foot

    def render(self, draft: Draft) -> str:
        return "".join(self._parts(draft))

    def measure(self, draft: Draft) -> int:
        """The length of the whole text (an interim render may hold back its last word)."""
        return utf8_len("".join(self._parts(replace(draft, final=True))))

    async def post(self, draft: Draft) -> Ref:
        body, foot = self._parts(draft)
        data = await self.api.call(
            "chat.postMessage",
            channel=self.where.channel,
            thread_ts=self.thread(draft.part),
            text=body + foot,
            blocks=_blocks(body + foot, draft),
            metadata=self.meta(draft, len(foot)),
            unfurl_links=False,
            unfurl_media=False,
        )
        ts = str(data.get("ts"))
        self.remember(ts)
        await self.written(draft)
        return {"ts": ts}

    async def edit(self, ref: Ref, draft: Draft) -> None:
        body, foot = self._parts(draft)
        await self.api.call(
            "chat.update",
            channel=self.where.channel,
            ts=ref["ts"],
            text=body + foot,
            blocks=_blocks(body + foot, draft),
            metadata=self.meta(draft, len(foot)),
        )
        await self.written(draft)


class StreamSurface(_Messages):
    """Slack's native streaming (``chat.startStream/appendStream/stopStream``), Markdown text.

    Interim edits append only the stable part of the text (up to the last
    whitespace, so neutralising never changes text already sent).  A stream
    Slack has closed already (or one from before a restart) is finished with
    ``chat.update``.  Streams expire, so messages roll over by age.  A stream
    carries no buttons while it is open (a ``blocks`` chunk becomes part of the
    streamed content, and nothing takes it off again: a Stop would stay on the
    final answer; a 🛑 reaction stops it instead); the final ones (Regenerate,
    👍/👎) go under the text as ``chat.stopStream`` stops it (not after a
    ``chat.update``, whose ``markdown_text`` takes no blocks).
    """

    placeholder = True
    controls = True

    def __init__(
        self, api: SlackApi, place: Place, *, max_chars: int = STREAM_LIMIT, lifetime: float = STREAM_LIFETIME,
        loading: Sequence[str] = (),
    ) -> None:
        super().__init__(api, place, loading)
        if not place.thread_ts:
            raise ValueError("a native stream needs a thread")
        self.max_chars = max_chars
        self.max_message_age = lifetime
        self._sent: dict[str, str] = {}  # ts -> Markdown already in that open stream

    def _foot(self, draft: Draft) -> str:
        foot = markdown_footer(draft.notes)
        return foot if draft.text else foot.lstrip("\n")

    def render(self, draft: Draft) -> str:
        """What the message shows: an open stream only its stable text, and an ``OPEN`` mark.

        The core skips a write whose render equals the last one; stopping a
        stream is never such a write, so an open stream never renders like a
        stopped one (the mark is never sent).
        """
        if draft.final:
            return to_markdown(draft.text) + self._foot(draft)
        return to_markdown(_stable(draft.text)) + OPEN

    def measure(self, draft: Draft) -> int:
        return len(to_markdown(draft.text) + self._foot(draft))

    async def post(self, draft: Draft) -> Ref:
        body = to_markdown(_stable(draft.text)) if not draft.final else to_markdown(draft.text)
        data = await self.api.call(
            "chat.startStream",
            channel=self.where.channel,
            thread_ts=self.where.thread_ts,
            recipient_team_id=self.where.team,
            recipient_user_id=self.where.user,
            markdown_text=body or None,
        )
        ts = str(data.get("ts"))
        self.remember(ts)
        self._sent[ts] = body
        if draft.final:
            await self.edit({"ts": ts}, draft)
        return {"ts": ts}

    async def edit(self, ref: Ref, draft: Draft) -> None:
        ts = str(ref["ts"])
        if draft.final:
            await self._end(ts, draft)
            return
        body = to_markdown(_stable(draft.text))
        sent = self._sent.get(ts)
        if sent is None or not body.startswith(sent):
            await self._replace(ts, body)
            return
        delta = body[len(sent) :]
        if not delta:
            return
        try:
            await self.api.call("chat.appendStream", channel=self.where.channel, ts=ts, markdown_text=delta)
        except StreamClosed:
            log.info("stream %s closed by Slack; finishing it with chat.update", ts)
            await self._replace(ts, body)
            return
        self._sent[ts] = body

    async def _replace(self, ts: str, body: str, meta: dict[str, Any] | None = None) -> None:
        """Write the whole text with ``chat.update``: the stream is closed (or unknown) from now on."""
        self._sent.pop(ts, None)
        await self.api.call(
            "chat.update", channel=self.where.channel, ts=ts, markdown_text=body or " ", metadata=meta
        )

    async def _end(self, ts: str, draft: Draft) -> None:
        """The final text: appended as the stream stops, or written with ``chat.update``."""
        body, foot = to_markdown(draft.text), self._foot(draft)
        meta = self.meta(draft, len(foot))
        sent = self._sent.get(ts)
        appendable = sent is not None and body.startswith(sent)
        buttons = blocks("", draft.controls, draft.key) if draft.key and draft.controls else None
        try:
            await self.api.call(
                "chat.stopStream",
                channel=self.where.channel,
                ts=ts,
                markdown_text=(body[len(sent) :] + foot if appendable and sent is not None else "") or None,
                metadata=meta,
                blocks=buttons,
            )
        except StreamClosed:
            appendable = False
        if appendable:
            self._sent.pop(ts, None)
        else:
            await self._replace(ts, body + foot, meta)
        await self.written(draft)


def _blocks(text: str, draft: Draft) -> list[dict[str, Any]] | None:
    """Blocks for a reply with controls (None: plain ``text``, as without)."""
    return blocks(text, draft.controls, draft.key) if draft.key else None


def _stable(text: str) -> str:
    """``text`` up to its last whitespace: what neutralising and Markdown can no longer change."""
    return text[: max(text.rfind(" "), text.rfind("\n")) + 1]
