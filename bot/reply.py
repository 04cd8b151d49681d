"""The one streaming loop: provider deltas in, paced platform edits out.

``ReplyStream`` drives a ``Sink`` (what an adapter implements):

* the first visible text goes out at once, later edits at most one per
  ``interval`` per message, one edit in flight, the latest text wins;
* every edit draws from a shared ``EditBudget`` (per workspace or channel);
  a platform 429 pauses that budget and slows this stream down;
* past the sink's length limit the answer continues in a new message, cut on
  a safe boundary (``bot.splitting``);
* whatever fails, the reply ends in a final state: complete, or the partial
  text plus a short note.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from . import splitting
from .errors import MessageGone, NoRoom, PlatformError, PlatformRateLimited, RelayError, StreamInterrupted
from .pacing import EditBudget
from .providers.base import Delta, Usage

log = logging.getLogger(__name__)

#: Room kept free in the last message for the notes the sink appends.
NOTE_ROOM = 300
FINAL_ATTEMPTS = 6
MAX_FINAL_WAIT = 10.0  # longest pause between two tries of a final edit
MAX_INTERVAL = 8.0
INTERRUPT_TIMEOUT = 5.0  # shutdown: how long the "interrupted" final edit may take


State = Literal["complete", "partial", "failed"]


class Sink(Protocol):
    """Where a reply is shown.  Adapters implement this; the core drives it.

    ``max_chars`` is the length limit of one message in ``measure`` units
    (rendered length: escaping and conversions included).  ``start`` may not
    have been called before ``fail`` (a request refused before streaming), and
    ``update`` may never be called before ``finish``: each method must work on
    its own.  A platform 429 is raised as ``PlatformRateLimited``; a deleted
    message or expired interaction as ``MessageGone``.
    """

    max_chars: int

    def measure(self, text: str) -> int: ...

    async def start(self) -> None:
        """Show that an answer is coming (placeholder, typing, status)."""

    async def update(self, text: str) -> None:
        """Show ``text`` in the current message (posting it if needed)."""

    async def split(self, text: str) -> None:
        """``text`` is the final text of the current message; later updates go to a new one."""

    async def finish(self, text: str, notes: Sequence[str]) -> None:
        """Final text of the last message, with notes (e.g. "earlier messages were left out")."""

    async def fail(self, text: str, notes: Sequence[str], error: RelayError) -> None:
        """Final state after a failure: the partial ``text`` (may be empty) and notes saying why."""


@dataclass(slots=True)
class ReplyOutcome:
    text: str = ""  # the provider's whole answer, as received
    state: State = "complete"
    finish_reason: str | None = None
    usage: Usage | None = None
    error: RelayError | None = None
    edits: int = 0
    messages: int = 1
    rate_limited: int = 0
    #: monotonic times, for benchmarks
    first_delta_at: float | None = None
    first_visible_at: float | None = None
    last_delta_at: float | None = None
    final_at: float | None = None
    notes: list[str] = field(default_factory=list)


class _Source:
    """Collects deltas; the text grows as a list of pieces, joined on demand."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.length = 0
        self.version = 0
        self.changed = asyncio.Event()
        self.finish_reason: str | None = None
        self.usage: Usage | None = None

    def text(self) -> str:
        if len(self.pieces) > 1:
            self.pieces[:] = ["".join(self.pieces)]
        return self.pieces[0] if self.pieces else ""


class ReplyStream:
    def __init__(
        self,
        sink: Sink,
        *,
        interval: float = 1.0,
        budget: EditBudget | None = None,
        max_chars: int = 0,
    ) -> None:
        self.sink = sink
        #: per-message limit: the sink's, or a smaller configured one (BOT_MESSAGE_LIMIT)
        self.max_chars = min(sink.max_chars, max_chars) if max_chars > 0 else sink.max_chars
        self.interval = interval
        self._base_interval = interval
        self.budget = budget
        self._outcome = ReplyOutcome()
        self._src = _Source()
        self._committed = 0  # characters of the answer already in finished messages
        self._reopen = ""  # fence reopened at the start of the current message
        self._shown_version = 0  # version 0: no text yet
        self._last_edit = 0.0
        self._message_shown = False  # has the current message shown any text yet?
        self._notes: Sequence[str] | Callable[[], Sequence[str]] = ()

    # -- public ---------------------------------------------------------------

    async def run(
        self, deltas: AsyncIterator[Delta], notes: Sequence[str] | Callable[[], Sequence[str]] = ()
    ) -> ReplyOutcome:
        """Stream ``deltas`` into the sink and always leave a final state.

        Provider errors end the reply as partial/failed with a note; platform
        errors during interim edits are survived; cancellation (shutdown)
        finalises the reply as interrupted and re-raises.
        """
        if self.budget is not None:
            self.budget.join()
        try:
            return await self._run(deltas, notes)
        finally:
            if self.budget is not None:
                self.budget.leave()

    async def _run(
        self, deltas: AsyncIterator[Delta], notes: Sequence[str] | Callable[[], Sequence[str]]
    ) -> ReplyOutcome:
        out = self._outcome
        self._notes = notes
        reader = asyncio.ensure_future(self._read(deltas))
        error: RelayError | None = None
        try:
            await self._pump(reader)
            await reader
        except RelayError as exc:
            error = exc
        except asyncio.CancelledError:
            reader.cancel()
            await self._interrupted()
            raise
        finally:
            if not reader.done():
                reader.cancel()
        if error is None and self._src.finish_reason is None:
            error = StreamInterrupted("The provider", hint="the stream ended early")
        try:
            await self._finalise(error)
        except asyncio.CancelledError:
            if out.final_at is None:
                await self._interrupted()
            raise
        return out

    @property
    def outcome(self) -> ReplyOutcome:
        return self._outcome

    async def _interrupted(self) -> None:
        """Shutdown: one quick attempt at the "interrupted" final state, bounded in time.

        If it cannot land, ``outcome.final_at`` stays None and the reply stays
        open in the store, so the next start finalises it (``RelayService.recover``).
        """
        try:
            async with asyncio.timeout(INTERRUPT_TIMEOUT):
                await self._finalise(StreamInterrupted("The bot", hint="it was restarted; ask again"), quick=True)
        except TimeoutError:
            log.warning("could not show the interrupted note in time")

    # -- reading --------------------------------------------------------------

    async def _read(self, deltas: AsyncIterator[Delta]) -> None:
        src, out = self._src, self._outcome
        async for delta in deltas:
            now = time.monotonic()
            if delta.text:
                if out.first_delta_at is None:
                    out.first_delta_at = now
                src.pieces.append(delta.text)
                src.length += len(delta.text)
                src.version += 1
                src.changed.set()
                out.last_delta_at = now
            if delta.usage is not None:
                src.usage = delta.usage
            if delta.finish_reason is not None:
                src.finish_reason = delta.finish_reason

    # -- interim edits ----------------------------------------------------------

    async def _pump(self, reader: asyncio.Future[None]) -> None:
        """Interim edits until the reader is done (or fails)."""
        src = self._src
        while not reader.done():
            if src.version == self._shown_version:
                src.changed.clear()
                await _first(reader, src.changed.wait())
                continue
            if self._outcome.edits:  # the first text goes out at once
                delay = self._last_edit + self.interval - time.monotonic()
                if delay > 0 and not await _until_done(reader, delay):
                    break
            if self.budget is not None:
                acquired = asyncio.ensure_future(self.budget.acquire(first=not self._message_shown))
                await _first(reader, acquired)
                if not acquired.done():
                    acquired.cancel()  # the final edit will take an urgent token instead
                    break
            await self._show_interim()

    async def _show_interim(self) -> None:
        version = self._src.version
        try:
            text = await self._roll_over(self._current())
            self._last_edit = time.monotonic()
            await self.sink.update(text)
        except PlatformRateLimited as exc:
            self._rate_limited(exc)
            return
        except MessageGone:
            raise
        except PlatformError as exc:  # an interim edit may be lost; the final one is retried
            log.warning("interim edit failed: %s", exc)
            return
        self._shown_version = version
        self._message_shown = True
        self._outcome.edits += 1
        self.interval = max(self._base_interval, self.interval * 0.9)  # recover after 429s
        if self._outcome.first_visible_at is None:
            self._outcome.first_visible_at = time.monotonic()

    def _rate_limited(self, exc: PlatformRateLimited) -> None:
        self._outcome.rate_limited += 1
        if self.budget is not None:
            self.budget.pause(exc.retry_after)
        self._last_edit = time.monotonic() + exc.retry_after
        self.interval = min(self.interval * 1.5, MAX_INTERVAL)

    # -- text and rollover ------------------------------------------------------

    def _current(self) -> str:
        return self._reopen + self._src.text()[self._committed :]

    async def _roll_over(self, text: str, room: int = 0, *, quick: bool = False) -> str:
        """Finish messages while ``text`` is too long; return what stays in the current one."""
        limit = self.max_chars - room
        while self.sink.measure(text) > limit:
            try:
                cut = splitting.cut(text, limit, self.sink.measure)
            except ValueError as exc:  # the sink left no room at all (e.g. a huge header)
                raise NoRoom("the message has no room left for the answer") from exc
            await self._final_call(self.sink.split, cut.head, quick=quick)
            self._committed += cut.consumed - len(self._reopen)
            self._reopen = cut.reopen
            self._message_shown = False
            self._outcome.messages += 1
            text = self._current()
        return text

    # -- the final state ----------------------------------------------------------

    async def _finalise(self, error: RelayError | None, *, quick: bool = False) -> None:
        """Show the final state.  ``quick``: one attempt per call, no waiting (shutdown)."""
        out, src = self._outcome, self._src
        out.text = src.text()
        out.usage = src.usage
        out.finish_reason = src.finish_reason
        # Notes are read at the end: a failover may have trimmed the history differently.
        notes = list(self._notes() if callable(self._notes) else self._notes)
        if error is not None:
            out.error = error
            out.state = "partial" if out.text else "failed"
            notes.append(error.user_message)
        elif src.finish_reason == "length":
            notes.append("(the answer reached the length limit)")
        out.notes = notes
        room = min(NOTE_ROOM, self.max_chars // 4) if notes else 0
        try:
            try:
                text = await self._roll_over(self._current(), room=room, quick=quick)
            except NoRoom:
                text = ""  # show at least the notes: never leave a placeholder behind
            if error is None:
                await self._final_call(self.sink.finish, text, notes, quick=quick)
            else:
                await self._final_call(self.sink.fail, text, notes, error, quick=quick)
        except RelayError as exc:
            # Not shown: final_at stays None, the store keeps the reply open for recovery.
            # A message or channel someone deleted (or the bot may no longer post in) is no fault here.
            level = logging.WARNING if isinstance(exc, MessageGone) else logging.ERROR
            log.log(level, "could not finalise the reply: %s", exc)
            out.state = "partial" if out.text else "failed"
            out.error = out.error or exc
            return
        out.final_at = time.monotonic()
        if out.first_visible_at is None:
            out.first_visible_at = out.final_at

    async def _final_call(self, method, *args, quick: bool = False) -> None:  # type: ignore[no-untyped-def]
        """A call that must land: urgent budget, retried on 429s and transient platform errors.

        ``quick`` (shutdown): a single attempt, no budget wait.
        """
        attempts = 1 if quick else FINAL_ATTEMPTS
        for attempt in range(attempts):
            if self.budget is not None and not quick:
                await self.budget.acquire(urgent=True)
            try:
                await method(*args)
            except PlatformRateLimited as exc:
                self._rate_limited(exc)
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(min(exc.retry_after, MAX_FINAL_WAIT))
                continue
            except PlatformError as exc:
                if not exc.retryable or attempt == attempts - 1:
                    raise
                log.warning("final edit failed (%s); retrying", exc)
                await asyncio.sleep(min(0.5 * 2**attempt, MAX_FINAL_WAIT))
                continue
            self._outcome.edits += 1
            self._last_edit = time.monotonic()
            return


async def _first(reader: asyncio.Future[None], other: object) -> None:
    """Wait until ``other`` (a coroutine or future) completes or the reader is done."""
    task = asyncio.ensure_future(other)  # type: ignore[arg-type]
    try:
        await asyncio.wait({reader, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done() and not isinstance(other, asyncio.Future):
            task.cancel()


async def _until_done(reader: asyncio.Future[None], delay: float) -> bool:
    """Sleep ``delay`` seconds; False if the reader finished first."""
    await asyncio.wait({reader}, timeout=delay)
    return not reader.done()
