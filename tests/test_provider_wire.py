"""Each provider's own wire format, through the real httpx client, against loopback fakes."""

from __future__ import annotations

import json

import pytest

from bot import errors
from tests.fakes.providers import (
    ACCOUNT,
    CF_MODEL,
    JSON,
    Script,
    cloudflare_frames,
    dataoorts_body,
    split_every,
    sse,
    words,
)
from tests.providers_support import one_answer

STREAMING = ("aigateway", "deepinfra", "openai", "cloudflare")
ALL = (*STREAMING, "dataoorts")
TEXT = "Hello there! Here is a short answer."

pytest_plugins = ["tests.provider_fixtures"]


@pytest.mark.parametrize("name", ALL)
async def test_normal_answer_text_finish_and_usage(name, fakes, settings_for):
    fakes.answer(name, TEXT)
    got = await one_answer(name, settings_for(name))
    assert got.error is None
    assert got.text == TEXT
    assert got.finish == "stop"
    if name == "openai":
        assert got.usage is None  # llama.cpp-style: none sent, the service counts locally
    else:
        assert got.usage is not None and got.usage.completion_tokens == len(words(TEXT))
    assert fakes.headers[name][0]["Authorization"] == f"Bearer fake-{name}-key"


async def test_aigateway_request_and_usage_frame_without_choices(fakes, settings_for):
    fakes.answer("aigateway", TEXT, prompt=24)
    got = await one_answer("aigateway", settings_for("aigateway"))
    assert got.usage is not None and got.usage.prompt_tokens == 24 and got.usage.cost_usd is None
    body = fakes.requests["aigateway"][0]
    assert body["model"] == "meta/llama-3.1-70b-instruct"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi?"},
    ]


async def test_deepinfra_quirks_leading_space_leaked_eos_and_estimated_cost(fakes, settings_for):
    fakes.answer("deepinfra", "Hi!", prompt=15, cost=0.0000268)
    got = await one_answer("deepinfra", settings_for("deepinfra"))
    assert got.text == "Hi!"  # not "  Hi!</s>"
    assert got.usage is not None and got.usage.prompt_tokens == 15 and got.usage.cost_usd == 0.0000268
    body = fakes.requests["deepinfra"][0]
    assert body["model"] == "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo"
    assert "stream_options" not in body  # usage rides on the finish chunk anyway


async def test_cloudflare_request_is_strict_and_always_has_max_tokens(fakes, settings_for):
    fakes.answer("cloudflare", TEXT)
    got = await one_answer("cloudflare", settings_for("cloudflare"), max_tokens=300)
    assert got.text == TEXT
    assert fakes.paths["cloudflare"][0] == f"/cloudflare/client/v4/accounts/{ACCOUNT}/ai/run/{CF_MODEL}"
    body = fakes.requests["cloudflare"][0]
    assert set(body) == {"messages", "stream", "max_tokens"}
    assert body["max_tokens"] == 300 and body["stream"] is True
    assert all(isinstance(m["content"], str) for m in body["messages"])


async def test_dataoorts_envelope_one_delta(fakes, settings_for):
    fakes.answer("dataoorts", TEXT, prompt=27)
    got = await one_answer("dataoorts", settings_for("dataoorts"), max_tokens=512)
    assert got.pieces == [TEXT]  # the whole answer as one delta
    assert got.usage is not None and got.usage.prompt_tokens == 27
    assert fakes.paths["dataoorts"][0] == "/dataoorts/api/v1"
    body = fakes.requests["dataoorts"][0]
    assert body == {
        "model": "meta/llama-3.1-70b-instruct",
        "data": {
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}],
            "max_tokens": 512,
        },
    }


ALL_PARAMS = {
    "bot_temperature": 0.7,
    "bot_top_p": 0.9,
    "bot_top_k": 40,
    "bot_min_p": 0.05,
    "bot_seed": 42,
    "bot_stop": "END",
    "bot_presence_penalty": 0.1,
    "bot_frequency_penalty": 0.2,
    "bot_repetition_penalty": 1.1,
}
SENT = {
    "openai": {"temperature", "top_p", "top_k", "min_p", "seed", "stop", "presence_penalty", "frequency_penalty", "repetition_penalty"},
    "aigateway": {"temperature", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty"},
    "deepinfra": {"temperature", "top_p", "top_k", "min_p", "seed", "stop", "presence_penalty", "frequency_penalty", "repetition_penalty"},
    "cloudflare": {"temperature", "top_p", "top_k", "seed", "presence_penalty", "frequency_penalty", "repetition_penalty"},
    "dataoorts": {"temperature", "top_p", "top_k", "seed", "presence_penalty", "frequency_penalty", "repetition_penalty"},
}
WIRE = {"messages", "stream", "max_tokens", "model", "stream_options"}


@pytest.mark.parametrize("name", ALL)
async def test_only_the_parameters_a_provider_takes_are_sent(name, fakes, settings_for):
    got = await one_answer(name, settings_for(name, **ALL_PARAMS))
    assert got.error is None
    body = fakes.requests[name][0]
    sent = body["data"] if name == "dataoorts" else body
    assert set(sent) - WIRE == SENT[name], sent
    assert sent["temperature"] == 0.7 and sent["top_p"] == 0.9
    if "stop" in sent:
        assert sent["stop"] == ["END"]


@pytest.mark.parametrize("name", STREAMING)
@pytest.mark.parametrize("crlf", [False, True])
async def test_frames_and_characters_split_across_reads(name, crlf, fakes, settings_for):
    text = "Grüße aus Köln — 世界 🎉 done."
    fakes.answer(name, text, parts=7, crlf=crlf)  # 7-byte writes split UTF-8 characters and frames
    fakes.queues[name][0].gap = 0.002
    got = await one_answer(name, settings_for(name))
    assert got.error is None
    assert got.text == text


async def test_dataoorts_body_split_across_reads(fakes, settings_for):
    fakes.answer("dataoorts", "Grüße 世界 🎉", parts=5)
    got = await one_answer("dataoorts", settings_for("dataoorts"))
    assert got.text == "Grüße 世界 🎉"


async def test_cloudflare_full_budget_without_finish_reason_is_length(fakes, settings_for):
    fakes.push("cloudflare", Script(parts=[sse(cloudflare_frames("a b c", completion=64))]))
    got = await one_answer("cloudflare", settings_for("cloudflare"), max_tokens=64)
    assert got.error is None and got.finish == "length"


async def test_dataoorts_full_budget_is_length(fakes, settings_for):
    body = json.dumps(dataoorts_body("cut off", completion=32)).encode()
    fakes.push("dataoorts", Script(parts=[body], content_type=JSON))
    got = await one_answer("dataoorts", settings_for("dataoorts"), max_tokens=32)
    assert got.finish == "length"


async def test_cloudflare_without_done_is_an_interruption_keeping_text(fakes, settings_for):
    fakes.raw("cloudflare", cloudflare_frames("partial answer here", done=False))
    got = await one_answer("cloudflare", settings_for("cloudflare"))
    assert got.text == "partial answer here"
    assert isinstance(got.error, errors.StreamInterrupted)
    assert got.error.user_message == "Cloudflare Workers AI cut the answer off: the answer is incomplete"


@pytest.mark.parametrize("name", ("aigateway", "openai", "deepinfra"))
async def test_openai_eof_without_done_or_finish_is_an_interruption(name, fakes, settings_for):
    fakes.raw(name, [{"choices": [{"index": 0, "delta": {"content": "Half "}}]}, {"choices": [{"index": 0, "delta": {"content": "an answer"}}]}])
    got = await one_answer(name, settings_for(name))
    assert got.text == "Half an answer"
    assert isinstance(got.error, errors.StreamInterrupted)


async def test_finish_reason_without_done_is_complete(fakes, settings_for):
    fakes.raw("openai", [{"choices": [{"index": 0, "delta": {"content": "All"}, "finish_reason": None}]}, {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}])
    got = await one_answer("openai", settings_for("openai"))
    assert got.error is None and got.text == "All" and got.finish == "length"


async def test_error_frame_mid_stream_keeps_partial_text(fakes, settings_for):
    fakes.raw("aigateway", [{"choices": [{"index": 0, "delta": {"content": "Part"}}]}, {"error": {"message": "upstream died", "type": "provider_error", "code": 502}}])
    got = await one_answer("aigateway", settings_for("aigateway"))
    assert got.text == "Part"
    assert isinstance(got.error, errors.StreamInterrupted)


async def test_vllm_error_object_before_text_is_retryable(fakes, settings_for):
    fakes.raw("openai", [{"object": "error", "message": "engine overloaded", "code": 503}])
    got = await one_answer("openai", settings_for("openai"))
    assert isinstance(got.error, errors.ProviderUnavailable) and got.error.retryable


async def test_event_error_frame(fakes, settings_for):
    data = b'event: error\ndata: {"message": "boom"}\n\n'
    fakes.push("openai", Script(parts=[data]))
    got = await one_answer("openai", settings_for("openai"))
    assert isinstance(got.error, errors.ProviderUnavailable)


async def test_cloudflare_error_frame_mid_stream(fakes, settings_for):
    fakes.raw("cloudflare", [{"response": "Some"}, {"errors": [{"code": 3040, "message": "capacity"}], "success": False}])
    got = await one_answer("cloudflare", settings_for("cloudflare"))
    assert got.text == "Some" and isinstance(got.error, errors.StreamInterrupted)


async def test_json_body_where_a_stream_was_asked(fakes, settings_for):
    completion = {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "model": "meta/llama-3.1-70b-instruct",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello! How can I help you today?"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 24, "completion_tokens": 12, "total_tokens": 36},
    }
    fakes.push("aigateway", Script(parts=[json.dumps(completion).encode()], content_type=JSON))
    got = await one_answer("aigateway", settings_for("aigateway"))
    assert got.text == "Hello! How can I help you today?" and got.finish == "stop"
    assert got.usage is not None and got.usage.completion_tokens == 12


async def test_cloudflare_json_envelope_where_a_stream_was_asked(fakes, settings_for):
    body = {"result": {"response": "Whole answer.", "usage": {"prompt_tokens": 9, "completion_tokens": 3}}, "success": True, "errors": [], "messages": []}
    fakes.push("cloudflare", Script(parts=[json.dumps(body).encode()], content_type=JSON))
    got = await one_answer("cloudflare", settings_for("cloudflare"))
    assert got.text == "Whole answer." and got.finish == "stop"


async def test_malformed_frame_before_text_is_retryable_after_text_interrupts(fakes, settings_for):
    fakes.push("openai", Script(parts=[b"data: {not json\n\n"]))
    got = await one_answer("openai", settings_for("openai"))
    assert isinstance(got.error, errors.ProviderUnavailable)
    fakes.push("openai", Script(parts=[sse([{"choices": [{"index": 0, "delta": {"content": "ok"}}]}]) + b"data: {not json\n\n"]))
    got = await one_answer("openai", settings_for("openai"))
    assert got.text == "ok" and isinstance(got.error, errors.StreamInterrupted)


async def test_dropped_connection_mid_stream(fakes, settings_for):
    parts = [sse([{"choices": [{"index": 0, "delta": {"content": "Begun"}}]}]), sse([{"choices": [{"index": 0, "delta": {"content": " more"}}]}])]
    fakes.push("deepinfra", Script(parts=parts, drop_after=1, gap=0.01))
    got = await one_answer("deepinfra", settings_for("deepinfra"))
    assert got.text == "Begun" and isinstance(got.error, errors.StreamInterrupted)


async def test_read_timeout_between_chunks(fakes, settings_for):
    parts = [sse([{"choices": [{"index": 0, "delta": {"content": "Slow"}}]}]), b""]
    fakes.push("openai", Script(parts=parts, stall_after=1))
    got = await one_answer("openai", settings_for("openai", bot_read_timeout=0.3))
    assert got.text == "Slow" and isinstance(got.error, errors.StreamInterrupted)
    fakes.push("openai", Script(parts=[b""], stall_after=0))
    got = await one_answer("openai", settings_for("openai", bot_read_timeout=0.3))
    assert isinstance(got.error, errors.ProviderTimeout) and got.error.retryable


async def test_turn_timeout_despite_keepalives(fakes, settings_for):
    keepalives = [b": keep-alive\n\n"] * 400
    first = sse([{"choices": [{"index": 0, "delta": {"content": "Start"}}]}])
    fakes.push("aigateway", Script(parts=[first, *keepalives], gap=0.02))
    settings = settings_for("aigateway", bot_read_timeout=1.0, bot_turn_timeout=0.5)
    got = await one_answer("aigateway", settings)
    assert got.text == "Start"
    assert isinstance(got.error, errors.StreamInterrupted)
    assert "took too long" in got.error.user_message


async def test_keepalive_gaps_shorter_than_read_timeout_are_fine(fakes, settings_for):
    data = sse([{"choices": [{"index": 0, "delta": {"content": "Patience"}}]}, {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, "[DONE]"], comment=": keep-alive")
    fakes.push("aigateway", Script(parts=split_every(data, 20), gap=0.05))
    got = await one_answer("aigateway", settings_for("aigateway", bot_read_timeout=3.0))
    assert got.error is None and got.text == "Patience"


async def test_a_web_page_instead_of_the_api_names_the_base_url(fakes, settings_for):
    fakes.push("openai", Script(parts=[b"<html>Welcome to nginx!</html>"], content_type="text/html"))
    got = await one_answer("openai", settings_for("openai"))
    assert isinstance(got.error, errors.NotFound) and not got.error.retryable
    assert got.error.user_message == (
        "The OpenAI-compatible server does not know this model or endpoint: "
        "check OPENAI_BASE_URL: it did not answer like the API"
    )
