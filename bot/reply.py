"""The life of one reply on a chat platform, from the first text to its final state.

``ReplyStream`` drives a ``bot.surface.Surface`` (what a platform implements):

* the first visible text goes out at once, later edits at most one per
  ``interval`` per message, one call in flight, the latest text wins;
* every edit draws from a shared ``EditBudget`` (per workspace or channel);
  final edits go first; a platform 429 pauses that budget and slows this
  stream down;
* past the surface's length limit (or its ``max_message_age``) the answer
  continues in a new message, cut on a safe boundary (``bot.splitting``); in
  the last message a surface allows (``max_messages``) it is cut there instead,
  and the final notes say so (``cut_note``);
* every message it posts, and the text last shown in it, is saved through
  ``save`` as it appears, so a restart can finish the reply (``bot.recovery``);
* whatever fails, the reply ends in a final state: complete, or the partial
  text plus a short note.  A final text is retried for as long as it takes
  (bounded in time, not tries), and posted as a new message when its message
  cannot be edited any more.  The placeholder is only an optimisation: if it
  cannot be posted, the first text is;
* with ``controls`` (a key naming the reply) and a surface that shows buttons,
  every interim message carries Stop and the final one Regenerate and feedback
  (``bot.controls``); ``stop`` ends the answer early: the provider's stream is
  closed, the partial text stays with a "stopped by …" note, state ``stopped``;
* finals first: a message's last edit never waits long behind a busy budget.
  When no edit is granted within ``FINAL_WAIT``, the message ends with exactly
  what it shows and the rest of the answer continues in a new message (a
  surface whose posts do not draw from the budget, ``paced_posts = False``,
  posts it at once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from . import splitting
from .errors import MessageGone, NoRoom, PlatformError, PlatformRateLimited, RelayError, StreamInterrupted
from .pacing import EditPacer
from .providers.base import Delta, Usage
from .surface import Draft, Ref, Surface, capability

log = logging.getLogger(__name__)

EMPTY_ANSWER = "(the model returned an empty answer)"
LENGTH_NOTE = "(the answer reached the length limit)"
INTERRUPTED_HINT = "it was restarted; ask again"
#: How long a final text keeps being retried before its message is given up and it is posted anew.
FINAL_PATIENCE = 600.0
MAX_FINAL_WAIT = 10.0  # longest pause between two tries of a final edit
PLACEHOLDER_TRIES = 3
MAX_INTERVAL = 8.0
INTERRUPT_TIMEOUT = 5.0  # shutdown: how long the "interrupted" final edit may take
#: How long the end of a message waits for an edit before the rest continues in a new message.
FINAL_WAIT = 1.0


def cut_note(messages: int) -> str:
    """The note under an answer cut because its place holds only ``messages`` messages."""
    return f"(the answer was cut here: a reply in this place can use at most {messages} messages)"


State = Literal["complete", "partial", "failed", "stopped"]
#: the buttons of a message still streaming, and of the reply's final message (``bot.controls``)
STREAMING_CONTROLS = ("stop",)
FINAL_CONTROLS = ("regenerate", "up", "down")
#: ``save(messages, shown, part)``: every message posted so far, the text shown in the last one, its part.
Save = Callable[[list[Ref], str, int], Awaitable[None]]


@dataclass(slots=True)
class ReplyOutcome:
    text: str = ""  # the provider's whole answer, as received
    state: State = "complete"
    finish_reason: str | None = None
    usage: Usage | None = None
    error: RelayError | None = None
    edits: int = 0
    messages: int = 0  # messages posted
    rate_limited: int = 0
    #: monotonic times, for benchmarks
    first_delta_at: float | None = None
    first_visible_at: float | None = None
    last_delta_at: float | None = None
    final_at: float | None = None
    notes: list[str] = field(default_factory=list)
    #: the final text can be shown nowhere (the channel is gone, no access): nothing left to settle
    undeliverable: bool = False


class _Source:
    """Collects deltas; the text grows as a list of pieces, joined on demand."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.chars = 0  # characters received
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
        surface: Surface,
        *,
        interval: float = 1.0,
        budget: EditPacer | None = None,
        max_chars: int = 0,
        save: Save | None = None,
        patience: float = FINAL_PATIENCE,
        controls: str | None = None,
    ) -> None:
        self.surface = surface
        #: the reply's key in its buttons' values; None: no buttons (or the surface shows none)
        self._key = controls if capability(surface, "controls", False) else None
        self._stopped_by: str | None = None
        self._reader: asyncio.Future[None] | None = None
        self._buttons: tuple[str, ...] = ()  # the buttons the current message shows
        self._spare: list[Ref] = []  # messages of an answer this one replaces, not written yet
        self._stale = False  # the current message shows another answer's text
        self.patience = patience  # how long a final text keeps being retried before it is posted anew
        #: per-message limit: the surface's, or a smaller configured one (BOT_MESSAGE_LIMIT)
        self.max_chars = min(surface.max_chars, max_chars) if max_chars > 0 else surface.max_chars
        self.interval = interval
        self._base_interval = interval
        self.budget = budget
        self._save_to = save
        self._max_age: float | None = capability(surface, "max_message_age")
        self._max_messages: int | None = capability(surface, "max_messages")
        self._clipped = False  # the last message the surface allows could not hold the answer
        #: do new messages draw from the edit budget? (Slack's chat.postMessage has a limit of its own)
        self._posts_paced: bool = capability(surface, "paced_posts", True)
        self._joined = False  # counted in the budget's streaming replies (``join``)
        self._granted = False  # an urgent grant taken and not used yet
        self._full = asyncio.Event()  # the current message's text may have outgrown it
        self._full_at = self.max_chars  # ... once ``_Source.chars`` reaches this
        self._outcome = ReplyOutcome()
        self._src = _Source()
        self.refs: list[Ref] = []  # every message posted, in order
        self._current: Ref | None = None  # the message being written; None: the next write posts
        self._part = 0
        self._shown = ""  # text shown in the current message
        self._rendered = ""  # ... as the platform shows it
        self._opened_at = 0.0
        self._committed = 0  # characters of the answer already in finished messages
        self._reopen = ""  # fence reopened at the start of the current message
        self._shown_version = 0  # version 0: no text yet
        self._last_edit = 0.0
        self._message_shown = False  # has the current message shown answer text yet?
        self._gone = False  # the message went away mid-answer: no more interim edits, the final posts anew
        self._notes: Sequence[str] | Callable[[], Sequence[str]] = ()
        self._pending: asyncio.Task[None] | None = None
        self._placing: asyncio.Task[None] | None = None
        self._started = False

    @property
    def outcome(self) -> ReplyOutcome:
        return self._outcome

    # -- start ----------------------------------------------------------------------------

    def start(self) -> None:
        """Show that an answer is coming (indicator, placeholder) without waiting for either."""
        if self._started:
            return
        self._join()
        if capability(self.surface, "pending") is not None:
            self._pending = asyncio.ensure_future(self._indicate())
        if capability(self.surface, "placeholder", False):
            self._placing = asyncio.ensure_future(self._place())

    async def _indicate(self) -> None:
        try:
            await self.surface.pending()  # type: ignore[attr-defined]
        except RelayError as exc:
            log.info("no pending indicator: %s", exc)

    async def _place(self) -> None:
        """Post the placeholder, retried a few times; a failure only means the first text posts."""
        for attempt in range(PLACEHOLDER_TRIES):
            try:
                await self._write(Draft("", pending=True))
                return
            except PlatformRateLimited as exc:
                wait = exc.retry_after
            except PlatformError as exc:
                if not exc.retryable:
                    log.warning("placeholder not posted: %s", exc)
                    return
                wait = 0.5 * 2**attempt
            if attempt + 1 < PLACEHOLDER_TRIES:
                await asyncio.sleep(min(wait, MAX_FINAL_WAIT))
        log.warning("placeholder not posted after %d tries; the answer will post its first text", PLACEHOLDER_TRIES)

    async def _placed(self) -> None:
        """One call in flight: wait for the placeholder before writing anything else."""
        if self._placing is not None and not self._placing.done():
            await asyncio.wait({self._placing})

    def _stop_pending(self) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()

    # -- public ---------------------------------------------------------------------------

    async def run(
        self, deltas: AsyncIterable[Delta], notes: Sequence[str] | Callable[[], Sequence[str]] = ()
    ) -> ReplyOutcome:
        """Stream ``deltas`` into the surface and always leave a final state.

        Provider errors end the reply as partial/failed with a note; platform
        errors during interim edits are survived; cancellation (shutdown)
        finalises the reply as interrupted and re-raises.
        """
        self.start()
        try:
            return await self._run(deltas, notes)
        finally:
            self._stop_pending()
            if self._placing is not None and not self._placing.done():
                self._placing.cancel()
            self._leave()

    def _leave(self) -> None:
        if self.budget is not None and self._joined:
            self._joined = False
            self.budget.leave()

    @property
    def key(self) -> str | None:
        """The reply's key (``bot.controls``); None: it shows no controls."""
        return self._key

    @property
    def stopped_by(self) -> str | None:
        return self._stopped_by

    def stop(self, by: str) -> bool:
        """End the answer early (a Stop press by ``by``): the provider's stream is cancelled (its
        HTTP response closed) and the reply ends ``stopped``.  False when it has ended already."""
        if self._stopped_by is not None or self._outcome.final_at is not None:
            return False
        if self._reader is not None and self._reader.done():
            return False
        self._stopped_by = by
        if self._reader is not None:
            self._reader.cancel()
        return True

    def resume(self, refs: list[Ref]) -> None:
        """Write into messages posted before, in order (a regenerated answer replaces the old
        one's text); those the answer does not need are deleted once it is final (``delete``)."""
        if refs:
            self._reuse(refs[0])
            self._spare = list(refs[1:])

    def _reuse(self, ref: Ref) -> None:
        self._current = ref
        self.refs.append(ref)
        self._opened_at = time.monotonic()
        self._stale = True  # its text is the old answer's: the next write edits it whatever it says

    async def finish_message(self, ref: Ref, draft: Draft) -> None:
        """Land the final ``draft`` in a message posted before (recovery after a restart)."""
        self._current = ref
        self.refs.append(ref)
        await self._land(draft)

    async def fail(self, error: RelayError) -> ReplyOutcome:
        """End the reply at once with ``error`` as its note (a refusal, a request that could not start).

        Not started yet: no indicator and no placeholder, the note is posted as it is (a placeholder
        already under way is edited into it)."""
        if not self._started:
            self._join()
        return await self.run(failing(error))

    def _join(self) -> None:
        self._started = True
        if self.budget is not None:
            self.budget.join()
            self._joined = True

    async def _run(
        self, deltas: AsyncIterable[Delta], notes: Sequence[str] | Callable[[], Sequence[str]]
    ) -> ReplyOutcome:
        out = self._outcome
        self._notes = notes
        reader = asyncio.ensure_future(self._read(deltas if self._stopped_by is None else _nothing()))
        self._reader = reader
        error: RelayError | None = None
        try:
            await self._pump(reader)
            await reader
        except RelayError as exc:
            error = exc
        except asyncio.CancelledError:
            reader.cancel()
            if self._stopped_by is None or _cancelling():  # shutdown, not a Stop press
                await self._interrupted()
                raise
        finally:
            if not reader.done():
                reader.cancel()
        if error is None and self._src.finish_reason is None and self._stopped_by is None:
            error = StreamInterrupted("The provider", hint="the stream ended early")
        try:
            await self._finalise(error)
        except asyncio.CancelledError:
            if out.final_at is None:
                await self._interrupted()
            raise
        return out

    async def interrupted(self) -> None:
        """Shutdown before the answer started: the "interrupted" final state, one quick attempt."""
        try:
            await self._interrupted()
        finally:
            self._stop_pending()
            if self._placing is not None and not self._placing.done():
                self._placing.cancel()
            self._leave()

    async def _interrupted(self) -> None:
        """Shutdown: one quick attempt at the "interrupted" final state, bounded in time.

        If it cannot land, ``outcome.final_at`` stays None and the request stays
        open in the store, so the next start finalises it (``bot.recovery``).
        """
        try:
            async with asyncio.timeout(INTERRUPT_TIMEOUT):
                await self._finalise(StreamInterrupted("The bot", hint=INTERRUPTED_HINT), quick=True)
        except TimeoutError:
            log.warning("could not show the interrupted note in time")

    # -- reading --------------------------------------------------------------------------

    async def _read(self, deltas: AsyncIterable[Delta]) -> None:
        src, out = self._src, self._outcome
        async for delta in deltas:
            now = time.monotonic()
            if delta.text:
                if out.first_delta_at is None:
                    out.first_delta_at = now
                src.pieces.append(delta.text)
                src.chars += len(delta.text)
                if src.chars >= self._full_at:
                    self._full.set()
                src.version += 1
                src.changed.set()
                out.last_delta_at = now
            if delta.usage is not None:
                src.usage = delta.usage
            if delta.finish_reason is not None:
                src.finish_reason = delta.finish_reason

    # -- interim edits ----------------------------------------------------------------------

    async def _pump(self, reader: asyncio.Future[None]) -> None:
        """Interim edits until the reader is done (or fails)."""
        src = self._src
        while not reader.done() and not self._gone:
            if src.version == self._shown_version:
                src.changed.clear()
                await _first(reader, src.changed.wait())
                continue
            if self._outcome.edits:  # the first text goes out at once
                delay = self._last_edit + self.interval - time.monotonic()
                if delay > 0 and not await _until_done(reader, delay):
                    break
            if self.budget is not None and self._paced():
                first = not self._message_shown and self._part == 0  # a continuation's first text is not urgent
                # A placeholder's first text was budgeted when the placeholder went out (the
                # platform's ``placeholder`` choice): it may use the room kept for finals, or
                # replies arriving later would keep "thinking…" up until the window turns.
                owed = first and not self._posts_paced
                acquired = asyncio.ensure_future(self.budget.acquire(urgent=owed, cut=owed, first=first))
                full = asyncio.ensure_future(self._full.wait())
                waiting: set[asyncio.Future[Any]] = {reader, acquired, full}
                try:
                    await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    full.cancel()
                if not acquired.done():
                    acquired.cancel()  # the final edit will take an urgent token instead
                    if reader.done():
                        break
                    await self._end_full()
                    continue
            await self._show_interim()

    async def _end_full(self) -> None:
        """The text outgrew its message while an interim edit waited: end the message now (an
        urgent ``cut`` write, or as shown when edits are busy), not after that interim edit."""
        self._full.clear()
        try:
            await self._placed()
            await self._roll_over(self._current_text())
        except PlatformError as exc:  # as an interim edit's: the final text is retried
            log.warning("could not end a full message: %s", exc)
            if isinstance(exc, MessageGone):
                self._current, self._gone = None, True
        self._full_at = max(self._committed + self.max_chars, self._src.chars + self.max_chars // 10)

    async def _show_interim(self) -> None:
        version = self._src.version
        paced = self._paced()
        try:
            await self._placed()
            text = await self._roll_over(self._current_text())
            text = await self._age_out(text)
            self._last_edit = time.monotonic()
            await self._write(Draft(text, self._part))
        except PlatformRateLimited as exc:
            self._rate_limited(exc, paced)
            return
        except PlatformError as exc:  # an interim edit may be lost; the final one is retried
            log.warning("interim edit failed: %s", exc)
            if isinstance(exc, MessageGone):
                self._current, self._gone = None, True  # the final text goes to one new message
            return
        self._shown_version = version
        self._message_shown = True
        self._outcome.edits += 1
        self.interval = max(self._base_interval, self.interval * 0.9)  # recover after 429s
        if self._outcome.first_visible_at is None:
            self._outcome.first_visible_at = time.monotonic()

    def _rate_limited(self, exc: PlatformRateLimited, paced: bool = True) -> None:
        """A 429: slow down; pause the budget when the refused write draws from it."""
        self._outcome.rate_limited += 1
        if self.budget is not None and paced:
            self.budget.pause(exc.retry_after)
        self._last_edit = time.monotonic() + exc.retry_after
        self.interval = min(self.interval * 1.5, MAX_INTERVAL)

    def _paced(self) -> bool:
        """Does the next write draw from the edit budget (an edit, or a post where posts are paced)?"""
        placing = self._placing is not None and not self._placing.done()
        return self._posts_paced or self._current is not None or bool(self._spare) or placing

    async def _edit_soon(self) -> bool:
        """Is an edit granted within ``FINAL_WAIT``?  The grant is kept for the next ``_land``."""
        if self.budget is None or self._granted:
            return True
        if self.budget.next_grant() > FINAL_WAIT:
            return False
        try:
            async with asyncio.timeout(FINAL_WAIT):
                await self.budget.acquire(urgent=True)
        except TimeoutError:
            return False
        self._granted = True
        return True

    async def _end_here(self, text: str) -> str | None:
        """Finals first: when the current message cannot be edited soon, end it with exactly what
        it shows (no platform call) and return what the next message continues with; None when
        it is edited instead (an edit is granted, it shows no answer yet, or its end would look
        different from what it shows)."""
        if self._posts_paced or self._current is None or not self._message_shown or self._gone or self._stale:
            return None  # (where a new message draws from the same budget, it would not help)
        if self._last_message():
            return None  # no new message allowed: this one is clipped instead
        shown = self._shown
        end = max(shown.rfind(" "), shown.rfind("\n")) + 1 or len(shown)  # a word boundary if it has one
        head = text[:end]
        if not len(self._reopen) < end < len(text) or not text.startswith(head) or head != shown[:end]:
            return None
        if splitting.open_fence(head) or self.surface.render(Draft(head, self._part, final=True)) != self._rendered:
            return None
        if await self._edit_soon():
            return None
        log.info("edits are busy: message %d ends as shown, the answer continues in a new one", self._part)
        self._committed += end - len(self._reopen)
        self._reopen = ""
        self._current, self._shown, self._message_shown = None, "", False
        self._part += 1
        return self._current_text()

    # -- writing ----------------------------------------------------------------------------

    async def _write(self, draft: Draft) -> None:
        """Show ``draft`` in the current message, posting one if there is none; save where it is."""
        draft = self._buttoned(draft)
        rendered = self.surface.render(draft)
        if self._current is None and self._spare:
            self._reuse(self._spare.pop(0))
        if self._current is None:
            ref = await self.surface.post(draft)
            self._current = ref
            self.refs.append(ref)
            self._opened_at = time.monotonic()
            self._outcome.messages += 1
            await self._save(draft.text)
        elif self._stale or rendered != self._rendered or draft.controls != self._buttons:  # else wasted
            await self._edit_saving(self._current, draft)
        self._rendered, self._buttons, self._stale = rendered, draft.controls, False
        if not draft.pending:
            self._stop_pending()
        self._shown = draft.text

    async def _edit_saving(self, ref: Ref, draft: Draft) -> None:
        """Save ``draft``'s text, then edit ``ref`` to it.

        In that order: a crash right after the edit lands finds a saved text at least as long as
        the one shown, so recovery's note never takes back words a user has read (saving beside
        the edit won ~0.3 ms and lost that race when the process was killed mid-answer).
        """
        await self._save(draft.text)
        await self.surface.edit(ref, draft)

    def _buttoned(self, draft: Draft) -> Draft:
        """``draft`` with its buttons: Stop while the answer streams, from a message's second write
        on (its first, the placeholder or the first text, goes out bare: buttons cost Discord a
        quarter of a millisecond on the first text); a finished part has none, the final message
        those ``_finalise`` chose."""
        if self._key is None:
            return draft
        if not draft.final:
            if self._stopped_by is not None or self._current is None:
                return draft
            return replace(draft, controls=STREAMING_CONTROLS, key=self._key)
        return replace(draft, key=self._key)

    async def _save(self, shown: str) -> None:
        if self._save_to is None:
            return
        try:
            await self._save_to(list(self.refs), shown, self._part)
        except RelayError as exc:  # the reply goes on; only a crash right now would lose track of it
            log.warning("could not save where the reply is: %s", exc)

    # -- text and rollover ----------------------------------------------------------------

    def _current_text(self) -> str:
        return self._reopen + self._src.text()[self._committed :]

    def _measure(self, text: str) -> int:
        return self.surface.measure(Draft(text, self._part))

    async def _roll_over(self, text: str, room: int = 0, *, quick: bool = False, limit: int = 0) -> str:
        """Finish messages while ``text`` is too long; return what stays in the current one."""
        limit = (limit or self.max_chars) - room
        while self._measure(text) > limit:
            if self._last_message():
                return self._clip(text, limit)
            rest = None if quick else await self._end_here(text)
            if rest is not None:
                text, limit = rest, self.max_chars - room
                continue
            try:
                cut = splitting.cut(text, limit, self._measure)
            except ValueError as exc:  # the surface left no room at all (e.g. a huge header)
                raise NoRoom("the message has no room left for the answer") from exc
            await self._land(Draft(cut.head, self._part, final=True), quick=quick, cut=True)
            self._committed += cut.consumed - len(self._reopen)
            self._reopen = cut.reopen
            self._current, self._shown, self._message_shown = None, "", False
            self._part += 1
            text = self._current_text()
            limit = self.max_chars - room
        return text

    def _last_message(self) -> bool:
        """Is the current message the last one the surface allows (``max_messages``)?"""
        return self._max_messages is not None and self._part + 1 >= self._max_messages

    def _clip(self, text: str, limit: int) -> str:
        """The head of ``text`` that fits the last message allowed; the rest is not shown."""
        try:
            cut = splitting.cut(text, limit, self._measure)
        except ValueError as exc:
            raise NoRoom("the message has no room left for the answer") from exc
        self._clipped = True
        return cut.head

    async def _age_out(self, text: str) -> str:
        """A message older than the surface's ``max_message_age`` ends with what it shows."""
        if self._max_age is None or self._current is None or not self._shown or self._last_message():
            return text
        if time.monotonic() - self._opened_at < self._max_age:
            return text
        # End on the last word boundary of the shown text: a native stream has sent exactly that,
        # so nothing already shown moves to the next message (no rewrite of the old one).
        end = max(self._shown.rfind(" "), self._shown.rfind("\n")) + 1
        if end <= len(self._reopen) or not text.startswith(self._shown[:end]):
            return await self._roll_over(text, limit=max(1, self._measure(self._shown)))
        fence = splitting.open_fence(text[:end])
        head = text[:end] + ("\n" + splitting.FENCE if fence else "")
        await self._land(Draft(head, self._part, final=True), cut=True)
        self._committed += end - len(self._reopen)
        self._reopen = fence + "\n" if fence else ""
        self._current, self._shown, self._message_shown = None, "", False
        self._part += 1
        return self._current_text()

    # -- the final state ----------------------------------------------------------------------

    def _final_notes(self, error: RelayError | None) -> list[str]:
        out, src = self._outcome, self._src
        # Notes are read at the end: a failover may have trimmed the history differently.
        notes = list(self._notes() if callable(self._notes) else self._notes)
        if self._stopped_by is not None:
            out.state = "stopped"
            notes.append(f"stopped by {self._stopped_by}")
        elif error is not None:
            out.error = error
            out.state = "partial" if out.text else "failed"
            notes.append(error.user_message)
        elif src.finish_reason == "length":
            notes.append(LENGTH_NOTE)
        elif not out.text:
            notes.append(EMPTY_ANSWER)
        return notes

    async def _finalise(self, error: RelayError | None, *, quick: bool = False) -> None:
        """Show the final state.  ``quick``: one attempt per call, no waiting (shutdown)."""
        out, src = self._outcome, self._src
        out.text = src.text()
        out.usage = src.usage
        out.finish_reason = src.finish_reason
        notes = self._final_notes(error)
        out.notes = notes
        failed = error is not None
        try:
            await self._placed()
            final = Draft("", self._part, tuple(notes), failed, final=True)
            room = self.surface.measure(final) - self._measure("") if notes else 0
            try:
                text = await self._roll_over(self._current_text(), room=room, quick=quick)
                if self._clipped and self._max_messages is not None:
                    notes.append(cut_note(self._max_messages))
                    room = self.surface.measure(replace(final, notes=tuple(notes))) - self._measure("")
                    text = await self._roll_over(self._current_text(), room=room, quick=quick)
            except NoRoom:
                text = ""  # show at least the notes: never leave a placeholder behind
            if not quick and (rest := await self._end_here(text)) is not None:
                text = rest
            buttons = FINAL_CONTROLS if self._key and out.state != "failed" and not quick else ()
            await self._land(Draft(text, self._part, tuple(notes), failed, final=True, controls=buttons), quick=quick)
        except RelayError as exc:
            # Not shown: final_at stays None, the request stays open for recovery.
            level = logging.WARNING if isinstance(exc, MessageGone) else logging.ERROR
            log.log(level, "could not finalise the reply: %s", exc)
            out.state = "partial" if out.text else "failed"
            out.error = out.error or exc
            out.undeliverable = not exc.retryable
            return
        out.final_at = time.monotonic()
        if out.first_visible_at is None:
            out.first_visible_at = out.final_at
        await self._drop_spare()

    async def _drop_spare(self) -> None:
        """Delete what is left of the messages of an answer this one replaced (when the surface
        can; otherwise they stay as they were)."""
        spare, self._spare = self._spare, []
        delete = capability(self.surface, "delete")
        for ref in spare if delete is not None else ():
            try:
                await delete(ref)
            except RelayError as exc:
                log.info("a message of the replaced answer stays: %s", exc)

    async def _land(self, draft: Draft, *, quick: bool = False, cut: bool = False) -> None:
        """A write that must land: urgent budget, retried with backoff for up to ``FINAL_PATIENCE``.

        A message that cannot be edited any more (deleted, or still failing
        when patience runs out) is replaced: the text is posted anew.
        ``quick`` (shutdown): a single attempt, no budget wait.  ``cut``: the answer continues
        in a next message (other replies' final writes go first).
        """
        give_up_at = time.monotonic() + self.patience
        attempt = 0
        shown = self._buttoned(draft)
        if self._current is not None and not self._stale and shown.controls == self._buttons:
            if self.surface.render(shown) == self._rendered:
                self._shown = draft.text  # the message shows it already: no call, no grant
                return
        while True:
            paced = self._paced()
            if self._granted:
                self._granted = False
            elif self.budget is not None and not quick and paced:
                await self.budget.acquire(urgent=True, cut=cut)
            try:
                await self._write(draft)
            except PlatformRateLimited as exc:
                self._rate_limited(exc, paced)
                wait = exc.retry_after
                error: PlatformError = exc
            except PlatformError as exc:
                if self._current is not None and (isinstance(exc, MessageGone) or not exc.retryable):
                    log.warning("final edit failed (%s); posting the text anew", exc)
                    self._current = None
                    if not quick:
                        continue
                elif not exc.retryable:
                    raise
                wait = min(0.5 * 2**attempt, MAX_FINAL_WAIT)
                error = exc
            else:
                self._outcome.edits += 1
                self._last_edit = time.monotonic()
                return
            if quick:
                raise error
            if time.monotonic() + wait > give_up_at:
                if self._current is None:
                    raise error
                log.warning("final edit still failing after %.0f s; posting the text anew", FINAL_PATIENCE)
                self._current = None
                give_up_at = time.monotonic() + self.patience
                continue
            log.info("final edit failed (%s); trying again in %.1f s", error, wait)
            await asyncio.sleep(min(wait, MAX_FINAL_WAIT))
            attempt += 1


async def _nothing() -> AsyncIterator[Delta]:
    """The answer stream of a reply stopped before it started."""
    return
    yield  # pragma: no cover - makes this an async generator


def _cancelling() -> bool:
    """Whether the running task itself is being cancelled (shutdown), not only a task it awaited."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def failing(error: RelayError) -> AsyncIterator[Delta]:
    """An answer stream that fails at once: drives a reply straight to its error state."""
    raise error
    yield  # pragma: no cover - makes this an async generator


async def _first(reader: asyncio.Future[None], other: Any) -> None:
    """Wait until ``other`` (a coroutine or future) completes or the reader is done."""
    task = asyncio.ensure_future(other)
    try:
        await asyncio.wait({reader, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not task.done() and not isinstance(other, asyncio.Future):
            task.cancel()


async def _until_done(reader: asyncio.Future[None], delay: float) -> bool:
    """Sleep ``delay`` seconds; False if the reader finished first."""
    await asyncio.wait({reader}, timeout=delay)
    return not reader.done()
