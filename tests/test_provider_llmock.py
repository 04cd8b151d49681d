"""Fault scenarios against an independent mock server: llmock (PyPI), via its pytest fixture.

The ``openai`` provider (real httpx client) talks to llmock's real HTTP server
on 127.0.0.1; llmock injects the faults and grades the retry behaviour.
"""

from __future__ import annotations

from bot import errors
from bot.conversation import Turn
from bot.runtime import build_router
from bot.service import RelayService, Request
from bot.store_sqlite import SqliteStore
from tests.fakes.sinks import RecordingSurface
from tests.providers_support import one_answer

pytest_plugins = ["tests.provider_fixtures"]


def at_llmock(settings_for, llmock, *more: str, **overrides: object):
    return settings_for(
        "openai", *more, openai_base_url=llmock.base_url("openai"), openai_model="gpt-4o-mini", **overrides
    )


async def answer(settings) -> tuple[RecordingSurface, object]:
    store = await SqliteStore.open(settings.bot_database)
    router = build_router(settings)
    router.ask_windows = False  # llmock applies its scripted faults to every path, /v1/models too
    try:
        sink = RecordingSurface()
        outcome = await RelayService(settings, store, router).answer(
            Request("terminal", "c", [Turn("user", "Hello?")]), sink, interval=0.0
        )
    finally:
        await router.aclose()
        await store.close()
    return sink, outcome


async def test_scripted_reply(llmock, settings_for):
    llmock.reply("scripted answer here")
    got = await one_answer("openai", at_llmock(settings_for, llmock))
    assert got.error is None and got.text == "scripted answer here" and got.finish == "stop"


async def test_rate_limit_is_retried_after_retry_after(llmock, settings_for):
    llmock.rate_limit(retry_after=1)
    llmock.reply("after the wait")
    sink, outcome = await answer(at_llmock(settings_for, llmock))
    assert sink.messages == ["after the wait"] and outcome.state == "complete"
    assert len(llmock.requests) == 2
    llmock.assert_resilient()  # llmock's own verdict: Retry-After honoured


async def test_truncated_stream_keeps_partial_text(llmock, settings_for):
    llmock.reply("one two three four five six seven eight")
    llmock.truncate(after_chunks=3)
    got = await one_answer("openai", at_llmock(settings_for, llmock))
    assert isinstance(got.error, errors.StreamInterrupted)
    assert got.text and "one two three four five six seven eight".startswith(got.text)


async def test_disconnect_mid_stream(llmock, settings_for):
    llmock.reply("one two three four five six seven eight")
    llmock.disconnect(after_chunks=3)
    sink, outcome = await answer(at_llmock(settings_for, llmock))
    assert outcome.state == "partial" and sink.messages[0]
    assert sink.notes == ["The OpenAI-compatible server cut the answer off: the answer is incomplete"]
    assert len(llmock.requests) == 1  # no retry after the first token


async def test_malformed_chunk(llmock, settings_for):
    llmock.reply("one two three four five six seven eight")
    llmock.corrupt(after_chunks=3)
    got = await one_answer("openai", at_llmock(settings_for, llmock))
    assert isinstance(got.error, errors.StreamInterrupted) and got.text


async def test_stall_hits_the_read_timeout(llmock, settings_for):
    llmock.reply("one two three four five six seven eight")
    llmock.stall(after_chunks=2, seconds=5)
    got = await one_answer("openai", at_llmock(settings_for, llmock, bot_read_timeout=0.5))
    assert isinstance(got.error, errors.StreamInterrupted) and got.text


async def test_slow_first_token_within_the_turn(llmock, settings_for):
    llmock.slow_first_token(0.3)
    llmock.reply("late but fine")
    got = await one_answer("openai", at_llmock(settings_for, llmock))
    assert got.error is None and got.text == "late but fine"


async def test_outage_fails_over_to_the_next_provider(llmock, fakes, settings_for):
    llmock.outage(status=503)
    sink, outcome = await answer(at_llmock(settings_for, llmock, "deepinfra"))
    assert sink.messages == ["Hello from deepinfra."] and outcome.state == "complete"
    assert len(llmock.requests) == 2  # one quick retry, then handed over (a fallback is there)


async def test_context_overflow_is_not_retried(llmock, settings_for):
    llmock.context_overflow()
    sink, outcome = await answer(at_llmock(settings_for, llmock))
    assert len(llmock.requests) == 1 and outcome.state == "failed"
    assert sink.notes == [
        "The OpenAI-compatible server says the conversation is too long for its context window (400): "
        "start a new thread, or check OPENAI_CONTEXT_WINDOW"
    ]
