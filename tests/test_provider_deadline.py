"""The deadlines: the whole turn stops a stream kept alive by keep-alives, never the caller's own
work; the first-token deadline bounds a silent server, and only the wait for the first token."""

from __future__ import annotations

import asyncio
import json

from bot import errors
from bot.conversation import Turn
from bot.providers.base import ChatRequest
from bot.providers.registry import build_provider
from tests.fakes.providers import JSON, Script, dataoorts_body, openai_frames, sse

pytest_plugins = ["tests.provider_fixtures"]

FIRST = sse([{"choices": [{"index": 0, "delta": {"content": "First"}}]}])
REQUEST = ChatRequest([Turn("user", "Hi?")], 32)


async def test_a_busy_caller_is_not_cancelled_by_the_deadline(fakes, settings_for):
    fakes.push("aigateway", Script(parts=[FIRST, *[b": keep-alive\n\n"] * 200], gap=0.02))
    provider = build_provider("aigateway", settings_for("aigateway", bot_turn_timeout=0.2))
    slept = False
    try:
        stream = provider.stream(REQUEST)
        assert (await anext(stream)).text == "First"
        await asyncio.sleep(0.4)  # the caller's own work outlives the deadline: it must finish
        slept = True
        try:
            await anext(stream)
        except errors.StreamInterrupted as exc:
            assert "took too long" in exc.user_message
        else:
            raise AssertionError("the deadline did not stop the stream")
        await stream.aclose()
    finally:
        await provider.aclose()
    assert slept


async def test_an_outside_cancellation_stays_a_cancellation(fakes, settings_for):
    fakes.push("aigateway", Script(parts=[FIRST, b""], stall_after=1))
    provider = build_provider("aigateway", settings_for("aigateway", bot_turn_timeout=30))
    got: list[str] = []

    async def consume() -> None:
        async for delta in provider.stream(REQUEST):
            got.append(delta.text)

    task = asyncio.create_task(consume())
    try:
        while not got:
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.wait({task}, timeout=10)
        assert task.cancelled()
    finally:
        await provider.aclose()


async def test_deadline_before_the_first_token_is_a_final_timeout(fakes, settings_for):
    fakes.push("openai", Script(parts=[b": ping\n\n"] * 200, gap=0.02))
    provider = build_provider("openai", settings_for("openai", bot_turn_timeout=0.2))
    try:
        try:
            async for _ in provider.stream(REQUEST):
                pass
        except errors.ProviderTimeout as exc:
            assert not exc.retryable  # the whole answer's deadline passed: a retry cannot beat it
        else:
            raise AssertionError("no timeout")
    finally:
        await provider.aclose()


async def test_one_deadline_covers_retries_and_failover(fakes, settings_for):
    from bot.runtime import build_router
    from bot.tokens import TokenCounter

    for name in ("openai", "deepinfra"):
        fakes.push(name, Script(parts=[b": keep-alive\n\n"] * 400, gap=0.02))
    settings = settings_for("openai", "deepinfra", bot_turn_timeout=0.3)
    router = build_router(settings)
    try:
        routed = router.answer([Turn("user", "Hi?")], 32, TokenCounter())
        try:
            async for _ in routed:
                pass
        except errors.ProviderTimeout:
            pass
        else:
            raise AssertionError("no timeout")
    finally:
        await router.aclose()
    # the stalled provider is asked once (no retry); the next one gets what is left of the deadline
    assert len(fakes.requests["openai"]) == 1
    assert len(fakes.requests["deepinfra"]) <= 1


async def test_a_server_that_never_answers_is_a_retryable_first_token_timeout(fakes, settings_for):
    fakes.hang("openai")
    settings = settings_for("openai", bot_first_token_timeout=0.3, bot_turn_timeout=30)
    provider = build_provider("openai", settings)
    try:
        async with asyncio.timeout(10):
            try:
                async for _ in provider.stream(REQUEST):
                    pass
            except errors.ProviderTimeout as exc:
                assert exc.retryable and exc.detail == "no first token in time"
                said = "The OpenAI-compatible server timed out: it sent nothing in time; try again"
                assert exc.user_message == said
            else:
                raise AssertionError("no timeout")
    finally:
        await provider.aclose()
    assert len(fakes.requests["openai"]) == 1


async def test_after_the_first_token_only_the_gap_between_chunks_counts(fakes, settings_for):
    frames = openai_frames("One two three four.")[1:]  # text in the first frame, then one frame per gap
    fakes.push("openai", Script(parts=[sse([f]) for f in frames], gap=0.6))  # gaps > first-token deadline
    settings = settings_for("openai", bot_first_token_timeout=0.4, bot_turn_timeout=30)
    provider = build_provider("openai", settings)
    try:
        async with asyncio.timeout(10):
            text = "".join([delta.text async for delta in provider.stream(REQUEST)])
    finally:
        await provider.aclose()
    assert text == "One two three four."


async def test_dataoorts_answers_whole_so_the_first_token_deadline_does_not_apply(fakes, settings_for):
    whole = json.dumps(dataoorts_body("Slow but whole.")).encode()
    # the whole answer comes later than the first-token deadline
    fakes.push("dataoorts", Script(parts=[whole], content_type=JSON, ttft=0.5))
    settings = settings_for("dataoorts", bot_first_token_timeout=0.1, bot_turn_timeout=30)
    provider = build_provider("dataoorts", settings)
    try:
        async with asyncio.timeout(10):
            text = "".join([delta.text async for delta in provider.stream(REQUEST)])
    finally:
        await provider.aclose()
    assert text == "Slow but whole."
