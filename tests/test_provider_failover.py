"""Providers that hang, refuse or fail cost seconds: quick failover, a circuit breaker, a probe.

Real providers (httpx) over loopback to the fakes; the router's clock is a
fake one (it only drives the breakers' cooldowns) and its ``sleep`` records
the waits instead of taking them.  Timing is never asserted tightly: request
counts and who answered say what happened, ``asyncio.timeout`` only guards
against a hang of the test itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot import errors
from bot.conversation import Turn
from bot.providers.base import ChatRequest, Delta, Provider
from bot.providers.registry import build_provider
from bot.providers.router import Router
from bot.settings import Settings
from bot.tokens import TokenCounter
from tests.fakes.providers import Script
from tests.providers_support import Sleeps

pytest_plugins = ["tests.provider_fixtures"]

GUARD = 20.0  # seconds: a generous bound on a whole test, never a measurement


class Clock:
    """The router's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Counting:
    """A provider that counts its tries (each ``stream`` call is one connection attempt)."""

    def __init__(self, inner: Provider) -> None:
        self.inner = inner
        self.info = inner.info
        self.tries = 0

    def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        self.tries += 1
        return self.inner.stream(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def make_router(
    settings: Settings, clock: Clock, sleeps: Sleeps | None = None
) -> tuple[Router, list[Counting]]:
    providers = [Counting(build_provider(name, settings)) for name in settings.provider_order()]
    router = Router(
        providers, sleep=sleeps or Sleeps(), clock=clock, turn_timeout=settings.bot_turn_timeout
    )
    return router, providers


async def ask(router: Router, question: str = "Hi?") -> tuple[str, str]:
    """(provider name, full text) of one routed answer."""
    routed = router.answer([Turn("user", question)], 64, TokenCounter())
    text = "".join([delta.text async for delta in routed])
    assert routed.provider is not None
    return routed.provider.name, text


async def test_after_a_hang_the_next_question_goes_straight_to_the_healthy_provider(fakes, settings_for):
    fakes.hang("openai")
    fakes.answer("deepinfra", "The healthy answer.")
    clock = Clock()
    router, _ = make_router(settings_for("openai", "deepinfra", bot_first_token_timeout=1.0), clock)
    try:
        async with asyncio.timeout(GUARD):
            assert await ask(router) == ("deepinfra", "The healthy answer.")
            assert len(fakes.requests["openai"]) == 1  # a hang is not retried when another provider is there
            assert router.breaker("openai").state == "open"

            clock.advance(20)  # the question 20 s later does not wait on it again
            assert await ask(router, "Again?") == ("deepinfra", "Hello from deepinfra.")
            assert len(fakes.requests["openai"]) == 1
            assert len(fakes.requests["deepinfra"]) == 2

            clock.advance(router.cooling("openai") + 0.1)  # the cooldown is over: one probe
            assert router.breaker("openai").state == "half-open"
            fakes.answer("openai", "Back again.")
            assert await ask(router, "Third?") == ("openai", "Back again.")
            assert router.breaker("openai").state == "closed"
            assert await ask(router, "Fourth?") == ("openai", "Hello from openai.")
    finally:
        await router.aclose()
    assert len(fakes.requests["openai"]) == 3 and len(fakes.requests["deepinfra"]) == 2


async def test_half_open_lets_one_probe_through_while_the_others_go_to_the_healthy_one(fakes, settings_for):
    fakes.hang("openai", times=2)
    clock = Clock()
    router, _ = make_router(settings_for("openai", "deepinfra", bot_first_token_timeout=1.0), clock)
    try:
        async with asyncio.timeout(GUARD):
            assert (await ask(router))[0] == "deepinfra"
            first_bench = router.cooling("openai")
            clock.advance(first_bench + 0.1)
            answers = await asyncio.gather(*(ask(router, f"Question {n}?") for n in range(4)))
    finally:
        await router.aclose()
    assert [name for name, _ in answers] == ["deepinfra"] * 4
    assert len(fakes.requests["openai"]) == 2  # the first hang, then exactly one probe
    assert len(fakes.requests["deepinfra"]) == 5
    breaker = router.breaker("openai")
    assert breaker.state == "open" and breaker.failures == 2
    assert router.cooling("openai") > first_bench  # the probe failed: benched longer


async def test_keep_alives_without_a_token_are_bounded_by_the_first_token_deadline(fakes, settings_for):
    fakes.push("openai", Script(parts=[b": ping\n\n"] * 2000, gap=0.01))
    router, _ = make_router(settings_for("openai", "deepinfra", bot_first_token_timeout=1.0), Clock())
    try:
        async with asyncio.timeout(GUARD):
            assert await ask(router) == ("deepinfra", "Hello from deepinfra.")
    finally:
        await router.aclose()
    assert len(fakes.requests["openai"]) == 1


async def test_a_500_with_a_fallback_gets_at_most_one_quick_retry(fakes, settings_for):
    fakes.fail("openai", 500, {"error": {"message": "internal"}}, times=3)
    sleeps = Sleeps()
    router, _ = make_router(settings_for("openai", "deepinfra"), Clock(), sleeps)
    try:
        async with asyncio.timeout(GUARD):
            assert await ask(router) == ("deepinfra", "Hello from deepinfra.")
    finally:
        await router.aclose()
    assert 1 <= len(fakes.requests["openai"]) <= 2
    assert all(wait <= 1.0 for wait in sleeps.waits) and len(sleeps.waits) <= 1
    assert router.breaker("openai").state == "open"


async def test_a_refused_connection_with_a_fallback_gets_at_most_one_quick_retry(fakes, settings_for):
    sleeps = Sleeps()
    settings = settings_for("openai", "deepinfra", openai_base_url=fakes.closed_url("openai"))
    router, (openai, deepinfra) = make_router(settings, Clock(), sleeps)
    try:
        async with asyncio.timeout(GUARD):
            assert await ask(router) == ("deepinfra", "Hello from deepinfra.")
            assert await ask(router, "Again?") == ("deepinfra", "Hello from deepinfra.")
    finally:
        await router.aclose()
    assert 1 <= openai.tries <= 2  # and none for the second question: it is benched
    assert deepinfra.tries == 2
    assert all(wait <= 1.0 for wait in sleeps.waits) and len(sleeps.waits) <= 1


async def test_alone_a_hanging_provider_is_retried_each_try_bounded(fakes, settings_for):
    fakes.hang("openai", times=2)
    fakes.answer("openai", "Third time lucky.")
    sleeps = Sleeps()
    router, _ = make_router(settings_for("openai", bot_first_token_timeout=1.0), Clock(), sleeps)
    try:
        async with asyncio.timeout(GUARD):
            assert await ask(router) == ("openai", "Third time lucky.")
    finally:
        await router.aclose()
    assert len(fakes.requests["openai"]) == 3  # the usual three tries when nothing else can answer
    assert len(sleeps.waits) == 2
    assert router.breaker("openai").state == "closed"


async def test_alone_a_benched_provider_is_still_asked(fakes, settings_for):
    fakes.fail("openai", 401, {"error": {"message": "bad key"}})
    router, _ = make_router(settings_for("openai"), Clock())
    try:
        async with asyncio.timeout(GUARD):
            with pytest.raises(errors.AuthFailed):
                await ask(router)
            assert router.cooling("openai") >= 300  # auth: benched long
            assert await ask(router, "Fixed now?") == ("openai", "Hello from openai.")
    finally:
        await router.aclose()
    assert len(fakes.requests["openai"]) == 2
    assert router.breaker("openai").state == "closed"
