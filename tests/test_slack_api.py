"""Slack Web API errors mapped to bot.errors, through the real AsyncWebClient and the fake Slack."""

from __future__ import annotations

import asyncio

import logging

import pytest
from aiohttp import web
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.api import SlackApi
from adapters.slack.history import History
from adapters.slack.surface import Place, StreamSurface, UpdateSurface
from bot.providers.base import Delta
from bot.reply import ReplyStream
from bot.errors import MessageGone, PlatformError, PlatformRateLimited, StreamClosed
from bot.tokens import TokenCounter
from tests.fakes.local import serving

pytest_plugins = ("tests.slack_env",)


@pytest.fixture
def api(slack):
    return SlackApi(AsyncWebClient(token="xoxb-fake", base_url=slack.api_url))


async def test_rate_limit_becomes_platform_rate_limited_with_retry_after(slack, api):
    slack.limit("chat.update", count=0, window=3.0)
    posted = await api.call("chat.postMessage", channel="C1", text="x")
    with pytest.raises(PlatformRateLimited) as caught:
        await api.call("chat.update", channel="C1", ts=posted["ts"], text="y")
    assert 1.0 <= caught.value.retry_after <= 3.0


@pytest.mark.parametrize(
    ("header", "wait"), [("soon", 1.0), ("", 1.0), ("2", 2.0), ("-1", 0.0), ("3600", 60.0)]
)
async def test_any_retry_after_header_maps_to_a_wait(header: str, wait: float) -> None:
    """A 429 whose Retry-After is unreadable waits the default; a readable one is clamped to 0..60 s."""

    async def limited(request: web.Request) -> web.Response:
        body = {"ok": False, "error": "ratelimited"}
        return web.json_response(body, status=429, headers={"Retry-After": header})

    app = web.Application()
    app.router.add_post("/api/{method}", limited)
    async with serving(app) as port:
        api = SlackApi(AsyncWebClient(token="xoxb-fake", base_url=f"http://127.0.0.1:{port}/api/"))
        with pytest.raises(PlatformRateLimited) as caught:
            await api.call("chat.update", channel="C1", ts="1.000", text="y")
        assert caught.value.retry_after == wait


async def test_retries_wait_out_a_rate_limit(slack, api):
    slack.limit("users.info", count=1, window=1.0)
    await api.call("users.info", user="U1")
    data = await api.call("users.info", retries=2, user="U1")
    assert data["user"]["id"] == "U1"
    assert slack.rate_limited == 1 and slack.early_retries == 0


async def test_deleted_message_is_message_gone(slack, api):
    with pytest.raises(MessageGone):
        await api.call("chat.update", channel="C1", ts="1.000", text="y")
    slack.errors["chat.postMessage"].append("channel_not_found")
    with pytest.raises(MessageGone):
        await api.call("chat.postMessage", channel="C404", text="x")


async def test_expired_stream_is_stream_closed(slack, api):
    with pytest.raises(StreamClosed):
        await api.call("chat.appendStream", channel="C1", ts="1.000", markdown_text="x")


async def test_missing_scope_and_not_in_channel_are_logged_clearly(slack, api, caplog):
    caplog.set_level(logging.ERROR, logger="adapters.slack")
    slack.errors["conversations.replies"].append({"error": "missing_scope", "needed": "channels:history"})
    with pytest.raises(PlatformError):
        await api.call("conversations.replies", channel="C1", ts="1.0")
    assert "lacks the scope 'channels:history'" in caplog.text
    slack.errors["chat.postMessage"].append("not_in_channel")
    with pytest.raises(PlatformError):
        await api.call("chat.postMessage", channel="C42", text="x")
    assert "not in channel C42" in caplog.text and "/invite" in caplog.text


async def test_other_errors_are_platform_errors_without_secrets(slack, api):
    slack.errors["chat.postMessage"].append("invalid_blocks")
    with pytest.raises(PlatformError) as caught:
        await api.call("chat.postMessage", channel="C1", text="x")
    assert "invalid_blocks" in str(caught.value) and "xoxb" not in str(caught.value)


async def test_unreachable_slack_is_a_platform_error():
    api = SlackApi(AsyncWebClient(token="xoxb-fake", base_url="http://127.0.0.1:9/api/", timeout=2))
    with pytest.raises(PlatformError):
        await api.call("auth.test")


async def _pieces(pieces, between=None):
    """Deltas of an answer; ``between(n)`` runs before piece ``n`` (to change the fake mid-answer)."""
    for n, piece in enumerate(pieces):
        if between is not None:
            between(n)
        await asyncio.sleep(0.01)
        yield Delta(text=piece)
    yield Delta(finish_reason="stop")


async def test_update_surface_posts_placeholder_then_edits_it(slack, api):
    surface = UpdateSurface(api, Place("C1", "5.0"))
    out = await ReplyStream(surface, interval=0.0).run(
        _pieces(["partial ", "**done**"]), notes=["(earlier messages were left out)"]
    )
    (message,) = slack.bot_messages("C1")
    assert out.state == "complete"
    assert message["text"] == "partial *done*\n\n_(earlier messages were left out)_"
    assert message["thread_ts"] == "5.0"
    assert message["metadata"]["event_payload"]["foot"] == len("\n\n_(earlier messages were left out)_")
    assert slack.called("chat.postMessage")[0].params["text"] == "_thinking…_"


async def test_history_pages_through_a_long_thread(slack, api):
    root = slack.say("root")
    for n in range(450):
        slack.say(f"reply {n}", thread_ts=root["ts"])
    messages = await History(api).thread("C1", root["ts"], budget=100_000)
    assert len(messages) == 451 and messages[-1]["text"] == "reply 449"
    assert len(slack.called("conversations.replies")) == 3  # 200 + 200 + 51


async def test_history_keeps_only_the_tail_the_budget_can_use(slack, api):
    root = slack.say("root")
    for n in range(450):
        slack.say(f"reply number {n} " + "word " * 20, thread_ts=root["ts"])
    messages = await History(api).thread("C1", root["ts"], budget=500)
    assert 10 < len(messages) < 40 and messages[-1]["text"].startswith("reply number 449")


async def test_history_sizes_come_from_the_cores_counter_once_per_message(slack, api):
    root = slack.say("root")
    for n in range(50):
        slack.say(f"reply number {n} " + "word " * 20, thread_ts=root["ts"])
    counter = TokenCounter()
    first = await History(api).thread("C1", root["ts"], budget=100_000, count=counter.count)
    assert len(first) == 51 and counter.misses == 51  # each raw message tokenised once
    again = await History(api).thread("C1", root["ts"], budget=100_000, count=counter.count)
    assert again == first and counter.misses == 51  # read again: no tokenising


async def test_dm_history_stops_reading_once_the_budget_is_full(slack, api):
    for n in range(300):
        slack.say(f"message {n} " + "word " * 20, channel="D1")
    latest = slack.say("latest", channel="D1")["ts"]
    messages = await History(api).channel("D1", budget=500, latest=latest)
    assert messages[-1]["text"] == "latest"
    assert len(slack.called("conversations.history")) == 1  # the first page already filled it


async def test_stream_surface_rolls_over_by_age_even_when_the_old_stream_just_expired(slack, api):
    surface = StreamSurface(api, Place("C1", "5.000001", team="T1", user="U1", stream=True))
    surface.max_message_age = 0.0  # every message is old at once: the core rolls over at each edit

    def expire(n: int) -> None:
        slack.stream_lifetime = -1.0 if n == 2 else 300.0  # Slack expires the streams mid-answer

    out = await ReplyStream(surface, interval=0.0).run(
        _pieces(["first part ", "second part ", "third part ", "end"], between=expire)
    )
    texts = [m["text"] for m in slack.bot_messages("C1")]
    assert out.state == "complete" and len(texts) > 1
    assert "".join(texts) == "first part second part third part end"
    assert [m["metadata"]["event_payload"]["part"] for m in slack.bot_messages("C1")] == list(
        range(len(texts))
    )


async def test_stream_surface_finishes_a_closed_stream_with_chat_update(slack, api):
    surface = StreamSurface(api, Place("C1", "5.000001", team="T1", user="U1", stream=True))

    def expire(n: int) -> None:
        if n == 2:
            slack.stream_lifetime = -1.0

    await ReplyStream(surface, interval=0.0).run(
        _pieces(["some ", "words ", "and the end"], between=expire), notes=["(a note)"]
    )
    (message,) = slack.bot_messages("C1")
    assert message["text"] == "some words and the end\n\n*(a note)*"
    assert slack.called("chat.update")[-1].params["metadata"]["event_payload"]["foot"] == len(
        "\n\n*(a note)*"
    )


async def test_display_names_are_looked_up_once_each(slack, api):
    slack.names.update({f"U{n}": f"Person {n}" for n in range(30)})
    history = History(api)
    names = await history.names([f"U{n}" for n in range(30)] * 2)
    assert names["U7"] == "Person 7" and len(names) == 30
    assert await history.names(["U7"]) == {"U7": "Person 7"}
    assert len(slack.called("users.info")) == 30
