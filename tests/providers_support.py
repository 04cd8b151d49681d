"""Fixtures and helpers shared by the provider tests (imported by those modules)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from bot.conversation import Turn
from bot.errors import ProviderError
from bot.providers.base import ChatRequest, Provider, Sampling, Usage
from bot.providers.registry import build_provider, sampling_of
from bot.settings import Settings
from tests.fakes.providers import FakeProviders


@pytest.fixture
async def fakes() -> AsyncIterator[FakeProviders]:
    server = FakeProviders()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def settings_for(tmp_path, fakes: FakeProviders) -> Callable[..., Settings]:
    """Settings with the named providers pointed at the fakes; keyword overrides win."""

    def make(*names: str, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "bot_database": tmp_path / "relay.db",
            "bot_edit_interval": 0.0,
            "bot_providers": ",".join(names),
        }
        for name in names:
            values.update(fakes.settings(name))
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[arg-type]

    return make


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
