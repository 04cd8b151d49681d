"""Helpers shared by the provider tests (the fixtures are in ``tests/provider_fixtures.py``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.conversation import Turn
from bot.errors import ProviderError
from bot.providers.base import ChatRequest, Provider, Sampling, Usage
from bot.providers.registry import build_provider, sampling_of
from bot.settings import Settings


@dataclass
class Collected:
    text: str = ""
    pieces: list[str] = field(default_factory=list)
    finish: str | None = None
    usage: Usage | None = None
    error: ProviderError | None = None


async def collect(
    provider: Provider, question: str = "Hi?", max_tokens: int = 64, sampling: Sampling | None = None
) -> Collected:
    """Stream one answer; the error (if any) is kept next to the partial text."""
    out = Collected()
    request = ChatRequest([Turn("system", "Be brief."), Turn("user", question)], max_tokens, sampling or Sampling())
    try:
        async for delta in provider.stream(request):
            if delta.text:
                out.pieces.append(delta.text)
            out.finish = delta.finish_reason or out.finish
            out.usage = delta.usage or out.usage
    except ProviderError as exc:
        out.error = exc
    out.text = "".join(out.pieces)
    return out


async def one_answer(name: str, settings: Settings, **kw: object) -> Collected:
    provider = build_provider(name, settings)
    try:
        return await collect(provider, sampling=sampling_of(settings), **kw)  # type: ignore[arg-type]
    finally:
        await provider.aclose()


async def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll ``condition`` until true (bounded)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


class Sleeps:
    """The router's ``sleep``: records the retry waits, takes none."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
