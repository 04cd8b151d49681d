"""What an adapter hands the core: a platform event translated, nothing decided yet.

An adapter turns a mention, a thread message, a DM or a slash command into an
``Incoming`` and calls ``Core.handle``; the core decides everything else in
one order for every platform (``bot.service``): block list, claim and request
record, quota, per-conversation ordering, history, answer.  ``Platform`` is
what the core asks of an adapter after a restart (``bot.recovery``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .access import Caller, DailyUsage
from .controls import Press, Streaming
from .conversation import Turn
from .pacing import EditPacer
from .reply import ReplyOutcome
from .surface import Ref, Surface
from .tokens import TokenCounter

#: Reads the conversation (oldest first, ending with the question) within a token budget;
#: None when there is nothing to answer and the bot should stay silent.  Called once the question
#: is admitted (allowed, not blocked, within quota) and its turn in the conversation has come: an
#: adapter may show its pending indicator from here (Discord's typing).
ReadHistory = Callable[[int, TokenCounter], Awaitable[list[Turn] | None]]
#: Where the reply goes (may open a thread); called once the caller is known to be allowed.
OpenSurface = Callable[[list[Turn]], Awaitable[Surface]]


@dataclass(slots=True)
class Incoming:
    caller: Caller
    #: one answer at a time per conversation (a thread, a DM, a reply chain), in arrival order
    conversation: str
    read: ReadHistory
    open: OpenSurface
    #: dedupe keys as (kind, id), e.g. ("event", "Ev1"), ("message", "C1:1700.1"); stored as
    #: "platform:kind:id".  One answer per key, ever: a redelivery is dropped.
    keys: tuple[tuple[str, str], ...] = ()
    #: JSON: what ``Platform.revive`` needs to rebuild this request after a restart
    origin: dict[str, Any] = field(default_factory=dict)
    #: a platform check run once the caller is known not to be blocked (e.g. "did the bot answer
    #: in this thread?"); False: stay silent, claim nothing
    relevant: Callable[[], Awaitable[bool]] | None = None
    budget: EditPacer | None = None  # the shared edit budget of where the reply goes (``Core.edit_budget``)
    interval: float | None = None  # seconds between edits (default: BOT_EDIT_INTERVAL)
    provider: str | None = None  # force one provider (``ask --provider``)
    #: the store keeps this conversation's turns (the terminal)
    conversation_key: str | None = None
    #: run after the answer (e.g. Slack /ask: say so privately when nothing could be posted)
    after: Callable[[ReplyOutcome], Awaitable[None]] | None = None
    #: write the answer into these messages posted before (a regenerated answer, ``bot.controls``)
    replaces: list[Ref] | None = None
    #: a regenerated answer: try the providers after this one first (the failover order, rotated)
    rotate_from: str | None = None


class Platform(Protocol):
    """What the core asks of an adapter after a restart."""

    name: str

    def surface(self, place: dict[str, Any]) -> Surface:
        """The surface of a reply from its saved place."""

    async def revive(self, origin: dict[str, Any]) -> Incoming | None:
        """The request again from its saved origin, to answer it now; None if it cannot be rebuilt."""


class Core(Protocol):
    """The narrow port adapters see (``RelayService`` implements it)."""

    accepting: bool

    async def handle(self, incoming: Incoming) -> ReplyOutcome | None: ...

    def may_ask(self, caller: Caller) -> bool: ...

    async def relay_command(self, caller: Caller, text: str) -> str: ...

    def relay_suggestions(self, caller: Caller, text: str) -> list[str]:
        """Whole ``/relay`` texts completing ``text`` (option autocomplete)."""

    async def usage_today(self, caller: Caller) -> DailyUsage:
        """The caller's usage since midnight UTC and their own daily budget (a Home tab shows it)."""

    async def press(self, platform: Platform, press: Press) -> str | None:
        """A control pressed on a reply (``bot.controls``): what to tell the presser privately, or None."""

    async def reanswer(
        self, platform: Platform, reply_key: str, incoming: Incoming, edit: str, asked_at: float
    ) -> bool:
        """The asker edited the question (asked at ``asked_at``) the reply ``reply_key`` answers:
        answer it again in place (``bot.controls``)."""

    async def streaming_at(
        self, platform: str, ref: Ref | None, where: Mapping[str, Any],
        asker: Callable[[dict[str, Any]], str | None],
    ) -> Streaming | None:
        """The answer streaming into the message ``ref`` (a 🛑 reaction's target), if any
        (``bot.controls``)."""

    def report_health(self, platform: str, up: bool) -> None: ...

    def spawn(self, work: Coroutine[Any, Any, Any], name: str | None = None) -> Any: ...

    async def recover(self, platform: Platform) -> int: ...

    async def drain(self, grace: float | None = None) -> int: ...

    def edit_budget(
        self, key: str, per_minute: float, *, burst: int | None = None, window: float | None = None,
        reserve: bool = False, adapt: bool = False,
    ) -> EditPacer:
        """The edit budget ``key`` names (``slack:T1:chat.update``), the same object on every call:
        ``per_minute`` on average, ``burst`` at once or per sliding ``window`` seconds, with
        ``reserve`` room kept for final edits, ``adapt``ing to the platform's 429s (``bot.pacing``).  Shared by every replica on a
        shared database."""
