"""One request end to end through the real HTTP provider client, router, reply stream and store."""

from __future__ import annotations

from bot.conversation import Turn
from bot.service import RelayService, Request
from tests.fakes.sinks import RecordingSurface, incoming


def ask(text: str, **kw) -> Request:
    return Request("test", "C1", [Turn("user", text, author="Ana", message_id="m1")], user_id="U1", **kw)


async def test_answer_is_streamed_recorded_and_costed(make_settings, fake_llm):
    from bot.runtime import open_service

    settings = make_settings(openai_price_in=1.0, openai_price_out=2.0, bot_temperature=0.3)
    fake_llm.reply("The answer is forty-two.", delay=0.01, usage={"prompt_tokens": 1000, "completion_tokens": 500})
    async with open_service(settings) as service:
        sink = RecordingSurface()
        out = await service.answer(ask("What is the answer?"), sink)
        assert out.state == "complete"
        assert sink.messages == ["The answer is forty-two."]
        sent = fake_llm.requests[-1]
        assert sent["messages"][0]["role"] == "system"
        assert sent["messages"][-1] == {"role": "user", "content": "Ana: What is the answer?"}
        assert sent["temperature"] == 0.3 and sent["stream"] is True
        assert fake_llm.headers[-1]["Authorization"] == "Bearer sk-test-secret"
        (reply,) = [r async for r in _replies(service.store)]
        assert reply == ("done", "openai", settings.openai_model)
        (total,) = await service.store.usage_totals("user")
        assert (total.key, total.prompt_tokens, total.completion_tokens) == ("U1", 1000, 500)
        assert abs(total.cost_usd - (1000 * 1.0 + 500 * 2.0) / 1e6) < 1e-12


async def _replies(store):
    async with store._db.execute("SELECT state, provider, model FROM requests") as cur:
        for row in await cur.fetchall():
            yield tuple(row)


async def test_wrong_key_turns_into_one_clear_note(service, fake_llm):
    fake_llm.fail(401, {"error": {"message": "Not authenticated", "type": "invalid_request_error"}})
    sink = RecordingSurface()
    out = await service.answer(ask("hi", conversation_key="terminal:x"), sink)
    assert out.state == "failed"
    assert sink.calls[-1] == ("fail", "")
    assert sink.notes == ["The OpenAI-compatible server rejected the API key (401): check OPENAI_API_KEY"]
    assert len(fake_llm.requests) == 1  # never retried
    assert await service.store.load_turns("terminal:x") == []  # nothing half-stored


async def test_server_error_before_first_token_is_retried(service, fake_llm):
    fake_llm.fail(503)
    fake_llm.reply("recovered")
    sink = RecordingSurface()
    out = await service.answer(ask("hi"), sink)
    assert out.state == "complete" and sink.messages == ["recovered"]
    assert len(fake_llm.requests) == 2


async def test_cut_stream_keeps_partial_text_and_the_conversation(service, fake_llm):
    fake_llm.cut("one two three four five six", after=3)
    sink = RecordingSurface()
    out = await service.answer(ask("count", conversation_key="terminal:c"), sink)
    assert out.state == "partial"
    assert sink.calls[-1] == ("fail", "one two three ")
    assert "cut the answer off" in sink.notes[-1]
    turns = await service.store.load_turns("terminal:c")
    assert [(t.role, t.text) for t in turns] == [("user", "count"), ("assistant", "one two three ")]


async def test_empty_question_is_refused_without_calling_the_provider(service, fake_llm):
    sink = RecordingSurface()
    out = await service.answer(ask("   "), sink)
    assert out.state == "failed" and "empty" in sink.notes[-1]
    assert fake_llm.requests == []


async def test_long_history_is_trimmed_and_the_user_is_told(make_settings, fake_llm):
    from bot.runtime import open_service

    settings = make_settings(openai_context_window=1024, bot_max_tokens=256)
    turns = []
    for i in range(60):
        turns += [Turn("user", f"message {i} " * 10, message_id=f"u{i}"), Turn("assistant", f"reply {i} " * 10, message_id=f"a{i}")]
    turns.append(Turn("user", "latest question", message_id="q"))
    async with open_service(settings) as service:
        sink = RecordingSurface()
        await service.answer(Request("test", "C1", turns), sink)
    sent = fake_llm.requests[-1]["messages"]
    assert sent[-1]["content"] == "latest question"
    assert len(sent) < len(turns)
    assert "(earlier messages were left out)" in sink.notes


async def test_failover_to_a_smaller_window_still_says_history_was_left_out(make_settings, fake_llm):
    from bot.runtime import open_service

    settings = make_settings(
        bot_providers=["openai", "aigateway"],
        aigateway_api_key="sk-aig",
        aigateway_base_url=fake_llm.base_url,
        aigateway_context_window=1024,
        bot_max_tokens=200,
    )
    turns = [Turn("user" if i % 2 == 0 else "assistant", f"turn {i} " * 40, message_id=f"t{i}") for i in range(21)]
    fake_llm.fail(401)  # openai, whose window holds everything, fails first
    fake_llm.reply("from the small window")
    async with open_service(settings) as service:
        sink = RecordingSurface()
        out = await service.answer(Request("test", "C1", turns), sink)
    assert out.state == "complete" and sink.messages == ["from the small window"]
    assert len(fake_llm.requests[0]["messages"]) == 22 and len(fake_llm.requests[1]["messages"]) < 22
    assert "(earlier messages were left out)" in sink.notes


async def test_six_questions_at_once_overshoot_a_daily_budget_by_one_answer_at_most(make_settings, fake_llm):
    import asyncio

    from bot.runtime import open_service

    one_answer = 30 + 18
    for _ in range(6):
        fake_llm.reply("An answer.", delay=0.01, usage={"prompt_tokens": 30, "completion_tokens": 18})
    sinks = [RecordingSurface() for _ in range(6)]
    asks = [
        incoming([Turn("user", f"question {i}")], sink, conversation=f"T{i}") for i, sink in enumerate(sinks)
    ]
    async with open_service(make_settings(bot_user_daily_tokens=150)) as service:
        outcomes = await asyncio.gather(*(service.handle(a) for a in asks))
        (total,) = await service.store.usage_totals("user")
        assert await service.access.held("user:U1") == (0, 0.0)  # every reservation was settled
    answered = [s for s, o in zip(sinks, outcomes, strict=True) if o.state == "complete"]
    refused = [s for s, o in zip(sinks, outcomes, strict=True) if o.state != "complete"]
    assert total.prompt_tokens + total.completion_tokens <= 150 + one_answer
    assert answered and refused
    assert len(fake_llm.requests) == len(answered)  # a refused question costs no provider call
    for sink in refused:
        assert sink.calls[-1] == ("fail", "")
        assert "daily budget" in sink.notes[0] and "Try again" in sink.notes[0]


async def test_a_failed_answer_gives_its_reservation_back(make_settings, fake_llm):
    from bot.runtime import open_service

    fake_llm.fail(401)
    fake_llm.reply("second time lucky")
    async with open_service(make_settings(bot_user_daily_tokens=150)) as service:
        failed = await service.handle(incoming([Turn("user", "hi")], RecordingSurface()))
        assert failed is not None and failed.state == "failed" and await service.access.held("user:U1") == (0, 0.0)
        sink = RecordingSurface()
        out = await service.handle(incoming([Turn("user", "hi again")], sink))
    assert out.state == "complete" and sink.messages == ["second time lucky"]


async def test_a_question_the_store_cannot_record_gets_a_note_not_silence(make_settings, fake_llm):
    from bot.store_sqlite import SqliteStore
    from tests.test_store_locks import write_lock_in_this_process

    settings = make_settings()
    store = await SqliteStore.open(settings.bot_database, wait=0.3, busy_timeout=0.1)
    from bot.runtime import build_router

    router = build_router(settings)
    try:
        service = RelayService(settings, store, router)
        sink = RecordingSurface()
        async with write_lock_in_this_process(settings.bot_database):  # held past BOT_DATABASE_WAIT
            out = await service.handle(incoming([Turn("user", "hi")], sink, keys=(("event", "E1"),)))
    finally:
        await router.aclose()
        await store.close()
    assert out is not None and out.state == "failed"
    assert sink.calls[-1] == ("fail", "") and "database is busy" in sink.notes[-1]
    assert fake_llm.requests == []
