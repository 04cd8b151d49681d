"""Router: retries before the first token, failover, cooldowns, window choice, fast config errors.

Real providers (httpx) against the loopback fakes; the service and a real
SQLite file for what is stored per reply (provider, model, usage, cost).
"""

from __future__ import annotations

import sqlite3

import pytest

from bot import errors
from bot.conversation import Turn
from bot.runtime import build_router
from bot.service import RelayService, Request
from bot.store_sqlite import SqliteStore
from tests.fakes.providers import Script, cloudflare_error_body, sse
from tests.fakes.sinks import RecordingSurface
from tests.providers_support import Sleeps

pytest_plugins = ["tests.provider_fixtures"]


def aig_error(status: int) -> dict[str, object]:
    return {"error": {"message": f"error {status}", "type": "x", "code": status}}


async def ask(
    settings,
    question: str = "Hi?",
    turns: list[Turn] | None = None,
    provider: str | None = None,
    sleeps: Sleeps | None = None,
):
    """One question through the real service (retry waits recorded, not taken); returns (sink, outcome, db path)."""
    store = await SqliteStore.open(settings.bot_database)
    router = build_router(settings, provider, sleep=sleeps if sleeps is not None else Sleeps())
    service = RelayService(settings, store, router)
    sink = RecordingSurface()
    try:
        request = Request("terminal", "c1", [*(turns or []), Turn("user", question)], user_id="u1", provider=provider)
        outcome = await service.answer(request, sink, interval=0.0)
    finally:
        await router.aclose()
        await store.close()
    return sink, outcome, settings.bot_database


def ledger(path) -> list[tuple]:
    with sqlite3.connect(path) as db:
        usage = db.execute(
            "SELECT provider, model, prompt_tokens, completion_tokens, cost_usd FROM usage ORDER BY id"
        ).fetchall()
        replies = db.execute("SELECT state, provider, model FROM requests ORDER BY id").fetchall()
    return usage, replies


async def test_retries_a_503_then_answers(fakes, settings_for):
    fakes.fail("aigateway", 503, aig_error(503))
    fakes.answer("aigateway", "Second time lucky.")
    sink, outcome, _ = await ask(settings_for("aigateway"))
    assert outcome.state == "complete" and sink.messages == ["Second time lucky."]
    assert len(fakes.requests["aigateway"]) == 2


@pytest.mark.parametrize(("headers", "wait"), [({"Retry-After": "0.4"}, 0.4), ({"retry-after-ms": "300"}, 0.3)])
async def test_retry_after_is_honoured(headers, wait, fakes, settings_for):
    sleeps = Sleeps()
    fakes.fail("deepinfra", 429, {"error": {"message": "Rate limited"}}, headers=headers)
    fakes.answer("deepinfra", "Waited.")
    sink, _, _ = await ask(settings_for("deepinfra"), sleeps=sleeps)
    assert sink.messages == ["Waited."]
    assert sleeps.waits == [pytest.approx(wait)]  # what the header said, waited before the retry


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (401, aig_error(401)),
        (402, aig_error(402)),
        (404, aig_error(404)),
        (400, aig_error(400)),
    ],
)
async def test_no_retry_on_auth_payment_not_found_or_bad_request(status, body, fakes, settings_for):
    fakes.fail("aigateway", status, body)
    fakes.answer("openai", "From the fallback.")
    sink, outcome, _ = await ask(settings_for("aigateway", "openai"))
    assert len(fakes.requests["aigateway"]) == 1
    assert sink.messages == ["From the fallback."] and outcome.state == "complete"


async def test_daily_quota_is_not_retried_and_cools_down_long(fakes, settings_for):
    fakes.fail("cloudflare", 429, cloudflare_error_body(3036, "you have used up your daily free allocation"))
    settings = settings_for("cloudflare", "deepinfra")
    store = await SqliteStore.open(settings.bot_database)
    router = build_router(settings)
    service = RelayService(settings, store, router)
    try:
        sink = RecordingSurface()
        await service.answer(Request("terminal", "c", [Turn("user", "Hi?")]), sink, interval=0.0)
        assert sink.messages == ["Hello from deepinfra."]
        assert len(fakes.requests["cloudflare"]) == 1
        assert router.cooling("cloudflare") > 300 or router.cooling("cloudflare") > 0.9 * _to_midnight()
        sink = RecordingSurface()  # the next question goes straight to DeepInfra
        await service.answer(Request("terminal", "c", [Turn("user", "Again?")]), sink, interval=0.0)
        assert sink.messages == ["Hello from deepinfra."]
        assert len(fakes.requests["cloudflare"]) == 1 and len(fakes.requests["deepinfra"]) == 2
    finally:
        await router.aclose()
        await store.close()


def _to_midnight() -> float:
    from bot.providers.cloudflare import seconds_to_midnight_utc

    return seconds_to_midnight_utc()


async def test_capacity_error_retries_cloudflare(fakes, settings_for):
    fakes.fail("cloudflare", 429, cloudflare_error_body(3040, "Capacity temporarily exceeded"), headers={"Retry-After": "0.1"})
    fakes.answer("cloudflare", "Capacity came back.")
    sink, _, _ = await ask(settings_for("cloudflare"))
    assert sink.messages == ["Capacity came back."]
    assert len(fakes.requests["cloudflare"]) == 2


async def test_long_retry_after_fails_over_instead_of_waiting(fakes, settings_for):
    fakes.fail("aigateway", 429, aig_error(429), headers={"Retry-After": "30"})
    sink, _, _ = await ask(settings_for("aigateway", "deepinfra"))
    assert sink.messages == ["Hello from deepinfra."]
    assert len(fakes.requests["aigateway"]) == 1  # not retried after a wait: handed over at once


async def test_retry_after_beyond_the_cap_is_not_waited_out(fakes, settings_for):
    fakes.fail("aigateway", 429, aig_error(429), headers={"Retry-After": "3600"})
    sink, outcome, _ = await ask(settings_for("aigateway"))
    assert outcome.state == "failed" and len(fakes.requests["aigateway"]) == 1
    assert sink.notes == ["AIGateway is rate limiting us (429): try again in a minute"]


async def test_all_retries_exhausted_shows_one_line(fakes, settings_for):
    sleeps = Sleeps()
    fakes.fail("deepinfra", 503, {"error": {"message": "down"}}, times=3)
    sink, _, _ = await ask(settings_for("deepinfra"), sleeps=sleeps)
    assert len(fakes.requests["deepinfra"]) == 3
    assert len(sleeps.waits) == 2 and 0.375 <= sleeps.waits[0] <= 0.5 <= sleeps.waits[1] <= 1.0  # backoff
    assert sink.messages == [""]
    assert sink.notes == ["DeepInfra is unavailable (503): try again shortly"]


async def test_no_failover_once_text_has_flowed(fakes, settings_for):
    first = sse([{"choices": [{"index": 0, "delta": {"content": "Partial"}}]}])
    fakes.push("openai", Script(parts=[first, first], drop_after=1, gap=0.01))
    sink, outcome, path = await ask(settings_for("openai", "deepinfra"))
    assert outcome.state == "partial" and sink.messages == ["Partial"]
    assert len(fakes.requests["deepinfra"]) == 0
    assert sink.notes == ["The OpenAI-compatible server cut the answer off: the answer is incomplete"]
    _, replies = ledger(path)
    assert replies == [("partial", "openai", "meta-llama/Llama-3.1-70B-Instruct")]


async def test_failing_provider_cools_down_and_is_tried_last(fakes, settings_for):
    fakes.fail("aigateway", 401, aig_error(401))
    settings = settings_for("aigateway", "deepinfra")
    store = await SqliteStore.open(settings.bot_database)
    router = build_router(settings)
    service = RelayService(settings, store, router)
    try:
        for _ in range(2):
            sink = RecordingSurface()
            await service.answer(Request("terminal", "c", [Turn("user", "Hi?")]), sink, interval=0.0)
            assert sink.messages == ["Hello from deepinfra."]
        assert len(fakes.requests["aigateway"]) == 1  # cooling down: not tried again
    finally:
        await router.aclose()
        await store.close()


def long_history(tokens: int) -> list[Turn]:
    """Alternating turns of about 1,000 tokens each."""
    block = "lorem ipsum dolor sit amet " * 200  # ~1,000 tokens
    turns = []
    for n in range(tokens // 1000):
        turns.append(Turn("user" if n % 2 == 0 else "assistant", f"{n}: {block}"))
    if turns and turns[-1].role == "user":
        turns.append(Turn("assistant", "ok"))
    return turns


async def test_long_history_prefers_the_128k_provider_over_trimming(fakes, settings_for):
    sink, _, path = await ask(settings_for("cloudflare", "deepinfra"), turns=long_history(30_000))
    assert sink.messages == ["Hello from deepinfra."]
    assert len(fakes.requests["cloudflare"]) == 0
    assert "(earlier messages were left out)" not in sink.notes
    assert len(fakes.requests["deepinfra"][0]["messages"]) == 32  # system + 30 turns + question
    _, replies = ledger(path)
    assert replies == [("done", "deepinfra", "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo")]


async def test_cloudflare_window_counts_max_tokens(fakes, settings_for):
    settings = settings_for("cloudflare", bot_max_tokens=4000)
    sink, _, _ = await ask(settings, turns=long_history(30_000))
    body = fakes.requests["cloudflare"][0]
    from bot import tokens

    prompt = sum(tokens.count(m["content"]) + 5 for m in body["messages"]) + 30
    assert body["max_tokens"] <= 4000
    assert prompt + body["max_tokens"] <= 24_000
    assert "(earlier messages were left out)" in sink.notes


@pytest.mark.parametrize(
    ("names", "overrides", "message"),
    [
        (("deepinfra",), {"bot_temperature": 3.0}, "BOT_TEMPERATURE=3 is out of range for DeepInfra"),
        (("aigateway",), {"bot_top_p": 1.5}, "BOT_TOP_P=1.5 is out of range for AIGateway"),
        (("cloudflare",), {"bot_top_k": 100}, "BOT_TOP_K=100 is out of range for Cloudflare Workers AI"),
        (("dataoorts",), {"bot_seed": 0}, "BOT_SEED=0 is out of range for Dataoorts"),
        (("deepinfra",), {"bot_repetition_penalty": 6.0}, "BOT_REPETITION_PENALTY=6 is out of range for DeepInfra"),
        (("cloudflare",), {"bot_presence_penalty": -1.0}, "BOT_PRESENCE_PENALTY=-1 is out of range"),
        (("aigateway",), {"bot_max_tokens": 10_000}, "BOT_MAX_TOKENS=10000 is above AIGateway's output limit"),
        (("deepinfra",), {"bot_stop": ",".join(f"s{n}" for n in range(17))}, "BOT_STOP has 17 sequences"),
    ],
)
def test_out_of_range_parameters_fail_when_the_router_is_built(names, overrides, message, settings_for):
    with pytest.raises(errors.ConfigError) as caught:
        build_router(settings_for(*names, **overrides))
    assert str(caught.value).startswith(message)


def test_the_same_value_is_fine_where_the_range_allows_it(settings_for):
    router = build_router(settings_for("cloudflare", "dataoorts", bot_temperature=3.0))
    assert [p.info.name for p in router.providers] == ["cloudflare", "dataoorts"]


async def test_ledger_usage_and_cost_per_provider(fakes, settings_for):
    fakes.answer("deepinfra", "Priced by DeepInfra.", prompt=100, cost=0.000123)
    _, _, path = await ask(settings_for("deepinfra"))
    fakes.answer("cloudflare", "Priced by table.", prompt=1000)
    await ask(settings_for("cloudflare"))
    await ask(settings_for("cloudflare", cloudflare_price_in=1.0, cloudflare_price_out=2.0))
    fakes.answer("openai", "No usage sent here.")
    await ask(settings_for("openai", openai_price_in=1.0, openai_price_out=1.0))
    usage, replies = ledger(path)
    deepinfra, cloudflare, overridden, local = usage
    assert deepinfra[:4] == ("deepinfra", "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo", 100, 3)
    assert deepinfra[4] == pytest.approx(0.000123)  # the provider's own estimated_cost
    assert cloudflare[:4] == ("cloudflare", "@cf/meta/llama-3.1-70b-instruct", 1000, 3)
    assert cloudflare[4] == pytest.approx((1000 * 0.40 + 3 * 0.40) / 1e6)
    assert overridden[4] == pytest.approx((30 * 1.0 + 3 * 2.0) / 1e6)  # fake's default prompt=30
    assert local[0] == "openai" and local[2] > 0 and local[3] > 0  # counted locally
    assert local[4] == pytest.approx((local[2] + local[3]) / 1e6)
    assert [r[0] for r in replies] == ["done"] * 4
    assert [r[1] for r in replies] == ["deepinfra", "cloudflare", "cloudflare", "openai"]


def closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_connection_refused_is_retried_then_fails_over(fakes, settings_for):
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    sink, outcome, path = await ask(settings_for("aigateway", "deepinfra", aigateway_base_url=dead))
    assert sink.messages == ["Hello from deepinfra."] and outcome.state == "complete"
    _, replies = ledger(path)
    assert replies[0][1] == "deepinfra"


async def test_connection_refused_alone_is_one_clear_line(fakes, settings_for):
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    sink, outcome, _ = await ask(settings_for("openai", openai_base_url=dead))
    assert outcome.state == "failed"
    assert sink.notes == ["The OpenAI-compatible server is unavailable: could not connect"]


async def test_a_channel_asking_for_more_than_aigateway_takes_is_clamped(fakes, settings_for):
    settings = settings_for("aigateway")
    store = await SqliteStore.open(settings.bot_database)
    router = build_router(settings)
    try:
        await store.set_channel_setting("terminal", "c", "max_tokens", "20000")
        sink = RecordingSurface()
        await RelayService(settings, store, router).answer(Request("terminal", "c", [Turn("user", "Hi?")]), sink, interval=0.0)
    finally:
        await router.aclose()
        await store.close()
    assert fakes.requests["aigateway"][0]["max_tokens"] == 8192


async def test_context_too_long_above_24k_is_tried_once_more_trimmed_to_24k(fakes, settings_for):
    too_long = {"error": {"message": "This model's maximum context length is 24000 tokens", "type": "invalid_request_error", "code": 400}}
    fakes.fail("aigateway", 400, too_long)
    fakes.answer("aigateway", "Fits now.")
    sink, outcome, _ = await ask(settings_for("aigateway"), turns=long_history(30_000))
    assert outcome.state == "complete" and sink.messages == ["Fits now."]
    first, second = fakes.requests["aigateway"]
    assert len(first["messages"]) == 32 and len(second["messages"]) < 32
    from bot import tokens

    prompt = sum(tokens.count(m["content"]) + 5 for m in second["messages"]) + 30
    assert prompt + second["max_tokens"] <= 24_000


@pytest.mark.parametrize("url", ["api.deepinfra.com/v1/openai", "ftp://example.org", "http://"])
def test_a_base_url_without_scheme_or_host_is_a_config_error(url, settings_for):
    with pytest.raises(errors.ConfigError) as caught:
        build_router(settings_for("deepinfra", deepinfra_base_url=url))
    assert str(caught.value).startswith("DEEPINFRA_BASE_URL=")


async def test_an_empty_answer_is_retried(fakes, settings_for):
    fakes.raw("deepinfra", [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": " "}}]},
        {"choices": [{"index": 0, "delta": {"content": "</s>"}}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        "[DONE]",
    ])
    fakes.answer("deepinfra", "Something this time.")
    sink, outcome, _ = await ask(settings_for("deepinfra"))
    assert sink.messages == ["Something this time."] and outcome.state == "complete"
    assert len(fakes.requests["deepinfra"]) == 2


@pytest.mark.parametrize("status", [408, 409, 500, 502, 504])
async def test_transient_statuses_are_retried(status, fakes, settings_for):
    fakes.fail("openai", status, {"error": {"message": "transient"}})
    fakes.answer("openai", "Recovered.")
    sink, _, _ = await ask(settings_for("openai"))
    assert sink.messages == ["Recovered."] and len(fakes.requests["openai"]) == 2
