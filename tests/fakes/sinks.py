"""A recording surface: what a platform would show, message by message."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bot.errors import PlatformRateLimited
from bot.surface import Draft, Ref


@dataclass
class RecordingSurface:
    """Keeps every call; ``messages`` holds each message's latest text.

    ``calls`` names each write by what it means to a reader: "placeholder",
    "update" (interim text), "split" (the final text of a message another one
    follows), "finish" and "fail" (the final text of the reply).
    """

    max_chars: int = 2000
    edit_delay: float = 0.0  # simulated platform latency per call
    rate_limit_every: int = 0  # raise a 429 on every n-th interim write
    placeholder: bool = False
    controls: bool = False  # shows the core's buttons (``Draft.controls``, kept in ``drafts``)
    calls: list[tuple[str, str]] = field(default_factory=list)
    drafts: list[Draft] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    _updates: int = 0

    def render(self, draft: Draft) -> str:
        """What a reader would see: the text, its notes, and whether the reply is finished."""
        return "\n".join([draft.text, *draft.notes]) + ("\n(final)" if draft.final else "")

    def measure(self, draft: Draft) -> int:
        return len(draft.text) + sum(len(n) + 1 for n in draft.notes)

    async def post(self, draft: Draft) -> Ref:
        if self.calls and self.calls[-1][0] == "finish":  # that message was a part, not the end
            self.calls[-1] = ("split", self.calls[-1][1])
        await self._call(draft)
        self.messages.append(draft.text)
        return {"index": len(self.messages) - 1}

    async def edit(self, ref: Ref, draft: Draft) -> None:
        await self._call(draft)
        self.messages[ref["index"]] = draft.text

    async def _call(self, draft: Draft) -> None:
        if not draft.final and not draft.pending:
            self._updates += 1
            if self.rate_limit_every and self._updates % self.rate_limit_every == 0:
                raise PlatformRateLimited(retry_after=0.05)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.edit_delay:
                await asyncio.sleep(self.edit_delay)
        finally:
            self.in_flight -= 1
        self.drafts.append(draft)
        self.calls.append((_kind(draft), draft.text))
        if draft.final:
            self.notes = list(draft.notes)


def _kind(draft: Draft) -> str:
    if draft.pending:
        return "placeholder"
    if not draft.final:
        return "update"
    return "fail" if draft.failed else "finish"


def incoming(
    turns: list,
    surface: object,
    *,
    user: str | None = "U1",
    channel: str = "C1",
    platform: str = "slack",
    keys: tuple[tuple[str, str], ...] = (),
    conversation: str | None = None,
):
    """An ``Incoming`` whose history is ``turns`` and whose reply goes to ``surface``."""
    from bot.access import Caller
    from bot.incoming import Incoming

    async def read(budget, counter):
        return list(turns)

    async def open_(turns):
        return surface

    return Incoming(
        caller=Caller(platform, user, channel),
        conversation=conversation or channel,
        read=read,
        open=open_,
        keys=keys,
    )
