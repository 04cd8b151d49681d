"""A recording sink: what a platform would show, message by message."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.errors import PlatformRateLimited, RelayError


@dataclass
class RecordingSink:
    """Keeps every call; ``messages`` holds each message's latest text."""

    max_chars: int = 2000
    edit_delay: float = 0.0  # simulated platform latency per call
    rate_limit_every: int = 0  # raise a 429 on every n-th update
    calls: list[tuple[str, str]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: RelayError | None = None
    in_flight: int = 0
    max_in_flight: int = 0
    _open: bool = False
    _updates: int = 0

    def measure(self, text: str) -> int:
        return len(text)

    async def _call(self, kind: str, text: str) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.edit_delay:
                await asyncio.sleep(self.edit_delay)
            self.calls.append((kind, text))
            if not self._open:
                self.messages.append(text)
                self._open = True
            else:
                self.messages[-1] = text
        finally:
            self.in_flight -= 1

    async def start(self) -> None:
        self.calls.append(("start", ""))

    async def update(self, text: str) -> None:
        self._updates += 1
        if self.rate_limit_every and self._updates % self.rate_limit_every == 0:
            raise PlatformRateLimited(retry_after=0.05)
        await self._call("update", text)

    async def split(self, text: str) -> None:
        await self._call("split", text)
        self._open = False

    async def finish(self, text: str, notes: Sequence[str]) -> None:
        await self._call("finish", text)
        self.notes = list(notes)

    async def fail(self, text: str, notes: Sequence[str], error: RelayError) -> None:
        await self._call("fail", text)
        self.notes = list(notes)
        self.error = error
