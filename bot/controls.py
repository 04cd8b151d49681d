"""Controls on an answer: Stop, Regenerate and 👍/👎, the same for every platform.

An adapter turns a button press (or a 🛑 reaction) into a ``Press`` and hands it to
``Controls.press``; the core decides, and answers with a short sentence the adapter shows
only to the person who pressed (or None: nothing to say, the reply itself shows it).

* Every button carries the reply's key, ``"<request id>:<asker>"`` (``key``): the platform
  hands it back unchanged with the press, so the asker is known without a store round trip
  and the buttons need none before the first text either.
* **Stop** (the asker or a ``BOT_ADMINS`` user): an answer streaming in this process is
  stopped at once (``ReplyStream.stop``: the provider's stream is closed).  With replicas on
  a shared database a press may land on another replica: it marks the request
  (``Store.request_stop``) and the replica streaming it notices within ``STOP_POLL``
  seconds.  A reply that has ended already (or was cut short by a restart) says so.
  A 🛑 reaction names a message, not a key: ``streaming_at`` finds the answer streaming into
  it (here, or in an open request record a replica saves), with no button needed (Slack's
  native streams carry none while open); a platform's own stop (Slack's agent sessions) may
  name only the thread, and finds the answer streaming there.
* **Regenerate** (the asker or an admin): the same question again, read afresh from the
  platform up to the question (so without the old answer), written into the old answer's
  messages (those a shorter answer does not need are deleted), by the next provider in the failover order when there is one; the new request record names the one it replaces (``regenerates``).  One
  regeneration per answer: a second press of the same button is dropped by its dedupe key.
* **An edited question** (``reanswer``): the adapter checks the edit is recent and the
  answer is still the conversation's latest message; the core answers the edited question
  into that answer's message the same way, once per edit.
* **Feedback**: one vote per person per answer, changeable (``Store.vote``, with the
  answer's provider and model); the ``relay_feedback`` gauge follows the stored totals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .access import AccessPolicy, Caller
from .errors import RelayError
from .metrics import Metrics
from .store import OPEN_STATES, RequestRecord, Store
from .surface import Ref, capability

if TYPE_CHECKING:
    from .incoming import Incoming, Platform
    from .reply import ReplyStream

log = logging.getLogger(__name__)

ACTIONS = ("stop", "regenerate", "up", "down")
#: Replicas: how often the replica streaming answers looks for Stop presses another one took.
STOP_POLL = 0.5
#: An edited question is answered again only this long after it was asked (seconds).
EDIT_WINDOW = 600.0
#: A final button can be pressed a moment before its answer's state is written: how long a press
#: waits for that, and how often it looks.
SETTLE_WAIT = 5.0
SETTLE_POLL = 0.05

ONLY_ASKER_STOP = "Only the person who asked (or an admin) can stop this answer."
ONLY_ASKER_REGENERATE = "Only the person who asked (or an admin) can regenerate this answer."
ENDED = "This answer has already ended."
STILL_WRITING = "This answer is still being written; stop it first."
GONE = "This answer can no longer be regenerated; ask again."
UNKNOWN = "This button no longer works; ask again."
THANKS = {"up": "Thanks for the feedback: 👍 noted.", "down": "Thanks for the feedback: 👎 noted."}


@dataclass(frozen=True, slots=True)
class Press:
    """A control pressed on a platform: which, on which reply (its key), by whom."""

    platform: str
    action: str  # one of ``ACTIONS``
    key: str  # the reply's key, as the button carried it
    user: str
    name: str  # how the "stopped by …" note names the person


def key(request_id: int, asker: str | None) -> str:
    """The key a reply's buttons carry."""
    return f"{request_id}:{asker or ''}"


def parse_key(value: object) -> tuple[int, str] | None:
    """(request id, asker) from a button's key; None when it is not one of ours."""
    if not isinstance(value, str) or len(value) > 100:
        return None
    head, sep, asker = value.partition(":")
    if not sep or not head.isascii() or not head.isdigit() or len(head) > 18:
        return None
    return int(head), asker


@dataclass(slots=True)
class _Live:
    stream: ReplyStream
    platform: str  # a press from another platform never reaches it


Answer = Callable[[int, "Incoming"], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Streaming:
    """An answer still streaming, found by one of its messages (``Controls.streaming_at``)."""

    key: str  # the reply's key, as its buttons would carry it
    place: dict[str, Any]  # where it goes (its surface's place)


def _names(refs: list[Ref], place: dict[str, Any], ref: Ref | None, where: Mapping[str, Any]) -> bool:
    """Whether ``ref`` (in a place with the fields ``where``) is one of ``refs`` at ``place``;
    ``ref`` None: whether ``place`` has those fields (any of its messages, or none yet)."""
    return (ref is None or ref in refs) and all(place.get(name) == value for name, value in where.items())


class Controls:
    """The answers this process is streaming, and what a press on any reply does."""

    def __init__(self, store: Store, access: AccessPolicy, metrics: Metrics, owner: str) -> None:
        self.store = store
        self.access = access
        self.metrics = metrics
        self.owner = owner
        self._live: dict[int, _Live] = {}
        self._poll: asyncio.Task[None] | None = None

    # -- answers streaming here -------------------------------------------------------------

    @contextlib.contextmanager
    def live(self, request_id: int, platform: str, stream: ReplyStream) -> Iterator[None]:
        """While an answer streams: a Stop press (here, or on a replica) reaches ``stream``."""
        self._live[request_id] = _Live(stream, platform)
        if self.store.shared and (self._poll is None or self._poll.done()):
            self._poll = asyncio.ensure_future(self._watch_stops())
        try:
            yield
        finally:
            self._live.pop(request_id, None)

    async def _watch_stops(self) -> None:
        """Replicas: Stop presses another replica recorded for answers streaming here."""
        while self._live:
            await asyncio.sleep(STOP_POLL)
            try:
                stops = await self.store.stops(list(self._live))
            except RelayError as exc:
                log.warning("could not look for Stop presses: %s", exc)
                continue
            for request_id, by in stops.items():
                live = self._live.get(request_id)
                if live is not None and live.stream.stop(by):
                    log.info("request %s: stopped by %s (pressed on another replica)", request_id, by)

    async def streaming_at(
        self, platform: str, ref: Ref | None, where: Mapping[str, Any],
        asker: Callable[[dict[str, Any]], str | None],
    ) -> Streaming | None:
        """The answer streaming into the message ``ref`` (of a place with the fields ``where``):
        one streaming here, else (replicas on a shared database) an open request whose saved
        messages include it, its asker read from its place by ``asker``.  ``ref`` None: the answer
        streaming at a place with those fields (a thread), whether it shows a message yet or not.
        None: no answer is streaming there (it has ended, or it is not one of ours)."""
        for live in self._live.values():
            place = capability(live.stream.surface, "place", {}) or {}
            if live.platform == platform and live.stream.key and _names(live.stream.refs, place, ref, where):
                return Streaming(live.stream.key, place)
        if not self.store.shared:
            return None
        for record in await self.store.open_requests(platform):
            if _names(record.messages, record.place, ref, where):
                return Streaming(key(record.id, asker(record.place)), record.place)
        return None

    async def close(self) -> None:
        if self._poll is not None:
            self._poll.cancel()
            await asyncio.gather(self._poll, return_exceptions=True)

    # -- presses ----------------------------------------------------------------------------

    async def press(self, platform: Platform, press: Press, answer: Answer) -> str | None:
        """What ``press`` does; the sentence to show the presser privately, or None."""
        parsed = parse_key(press.key)
        if parsed is None or press.action not in ACTIONS:
            return UNKNOWN
        request_id, asker = parsed
        if press.action == "stop":
            return await self._stop(request_id, asker, press)
        if press.action == "regenerate":
            return await self._regenerate(platform, request_id, asker, press, answer)
        return await self._vote(request_id, press)

    def _may_control(self, asker: str, press: Press) -> bool:
        return press.user == asker or self.access.is_admin(Caller(press.platform, press.user, ""))

    async def _stop(self, request_id: int, asker: str, press: Press) -> str | None:
        if not self._may_control(asker, press):
            return ONLY_ASKER_STOP
        live = self._live.get(request_id)
        if live is not None and live.platform == press.platform:
            return None if live.stream.stop(press.name) else ENDED
        if self.store.shared and await self.store.request_stop(request_id, press.name):
            return None  # the replica streaming it notices within STOP_POLL
        return ENDED

    async def _regenerate(
        self, platform: Platform, request_id: int, asker: str, press: Press, answer: Answer
    ) -> str | None:
        if not self._may_control(asker, press):
            return ONLY_ASKER_REGENERATE
        record = await self._settled(request_id)
        if record is None or not record.messages or record.platform != press.platform:
            return GONE
        if record.state in OPEN_STATES:
            return STILL_WRITING
        incoming = await platform.revive(record.origin)
        if incoming is None:
            return GONE
        await self._again(platform, record, incoming, f"regenerate:{request_id}", answer)
        return None

    async def reanswer(
        self, platform: Platform, reply_key: str, incoming: Incoming, edit: str, asked_at: float, answer: Answer
    ) -> bool:
        """The asker edited the question (asked at ``asked_at``, epoch seconds) that the reply
        ``reply_key`` answers: answer ``incoming`` (the edited question) into that reply's message.
        ``edit`` names the edit on its platform (a redelivery of it answers nothing).  False when
        the question is older than ``EDIT_WINDOW``, the editor is not the asker, or the answer is
        not over yet."""
        parsed = parse_key(reply_key)
        if parsed is None or parsed[1] != incoming.caller.user or time.time() - asked_at > EDIT_WINDOW:
            return False
        record = await self._settled(parsed[0])
        if record is None or not record.messages or record.state in OPEN_STATES:
            return False
        if record.platform != incoming.caller.platform:
            return False
        return await self._again(platform, record, incoming, f"edit:{edit}", answer)

    async def _again(
        self, platform: Platform, record: RequestRecord, incoming: Incoming, claim: str, answer: Answer
    ) -> bool:
        """Answer ``incoming`` into the messages of ``record``'s answer, as a new request that
        names the one it replaces; False when ``claim`` was claimed before (pressed twice)."""
        replaces = list(record.messages)
        origin = {**record.origin, "regenerates": record.id, "replaces": replaces}
        keys = [f"{record.platform}:{claim}"]
        new_id = await self.store.accept(keys, record.platform, record.conversation, origin, self.owner)
        if new_id is None:
            return False
        await self.store.update_request(new_id, regenerates=record.id)
        place = record.place

        async def open_(turns: Any) -> Any:
            return platform.surface(place)

        again = replace(
            incoming, open=open_, keys=(), origin=origin, replaces=replaces, relevant=None, after=None,
            rotate_from=record.provider if claim.startswith("regenerate:") else None,
        )
        await answer(new_id, again)
        return True

    async def _vote(self, request_id: int, press: Press) -> str | None:
        vote = 1 if press.action == "up" else -1
        await self._settled(request_id)
        provider = await self.store.vote(request_id, press.platform, press.user, vote)
        if provider is None:
            return UNKNOWN
        await self.show_feedback()
        return THANKS[press.action]

    async def _settled(self, request_id: int) -> RequestRecord | None:
        """The request a final button (or an edited question) names, once its state is written:
        the final text, buttons and all, lands just before the answer is settled in the store.
        Still open after ``SETTLE_WAIT``: returned as it is."""
        deadline = time.monotonic() + SETTLE_WAIT
        while True:
            record = await self.store.request(request_id)
            if record is None or record.state not in OPEN_STATES or time.monotonic() >= deadline:
                return record
            await asyncio.sleep(SETTLE_POLL)

    async def show_feedback(self) -> None:
        """Set the ``relay_feedback_votes`` gauge from the stored totals (at start, after a vote)."""
        try:
            totals = await self.store.vote_totals("provider")
        except RelayError as exc:
            log.warning("could not read the feedback totals: %s", exc)
            return
        for provider, (up, down) in totals.items():
            self.metrics.feedback.labels(provider, "up").set(up)
            self.metrics.feedback.labels(provider, "down").set(down)
