"""Serving life cycle: run() until stop with a drain, crash recovery, /relay, allowlists and quotas."""

from __future__ import annotations

import asyncio
import socket

import pytest

from adapters.slack import run
from adapters.slack.events import PLACEHOLDER
from adapters.slack.surface import Place
from bot.errors import ConfigError
from bot.runtime import open_service
from bot.store_sqlite import SqliteStore
from tests.fakes.slack import BOT_USER
from tests.slack_helpers import mention, reply_text, thread_texts, until

pytest_plugins = ("tests.slack_env",)


def slack_settings(make_settings, slack, **extra):
    return make_settings(
        slack_bot_token="xoxb-fake", slack_app_token="xapp-fake", slack_api_url=slack.api_url, **extra
    )


async def test_run_answers_until_stop_and_lets_the_reply_in_flight_finish(slack, make_settings, fake_llm):
    settings = slack_settings(make_settings, slack)
    answer = " ".join(f"slow{n}" for n in range(30))
    fake_llm.reply(answer, delay=0.03)
    async with open_service(settings) as service:
        stop = asyncio.Event()
        serving = asyncio.create_task(run(service, settings, stop))
        event = mention(slack, f"<@{BOT_USER}> take your time")
        await slack.deliver(slack.callback(event))
        await until(lambda: slack.called("chat.update"), what="the reply to be streaming")
        assert service.health["slack"] is True
        stop.set()
        await asyncio.wait_for(serving, 20)
        assert thread_texts(slack, "C1", event["ts"]) == [answer]  # finished, not cut off
        assert service.health["slack"] is False


async def test_replies_left_by_a_crash_are_finalised_at_start(slack, start_bot, make_settings):
    settings = make_settings()
    stop = [{"type": "actions", "block_id": "relay_controls", "elements": [
        {"type": "button", "action_id": "relay_stop", "value": "1:U1", "text": {"type": "plain_text", "text": "Stop"}}
    ]}]  # what a streaming answer shows
    placeholder = slack._chat_postMessage(
        {"channel": "C1", "thread_ts": "5.000001", "text": PLACEHOLDER, "blocks": stop}
    )
    partial = slack._chat_postMessage({"channel": "C1", "thread_ts": "5.000001", "text": "half an ans", "blocks": stop})
    store = await SqliteStore.open(settings.bot_database)
    place = Place("C1", "5.000001", "T1", "U1").as_dict()
    for message, shown in ((placeholder, ""), (partial, "half an ans")):
        request_id = await store.accept((), "slack", "C1:5.000001", {}, owner="a crashed process")
        await store.update_request(
            request_id, state="answering", place=place, messages=[{"ts": message["ts"]}], shown=shown
        )
    await store.close()

    await start_bot()
    texts = thread_texts(slack, "C1", "5.000001")
    assert texts == ["_(interrupted — ask again)_", "half an ans\n\n_(interrupted — ask again)_"]
    assert slack.buttons("C1", placeholder["ts"]) == slack.buttons("C1", partial["ts"]) == []  # no Stop left
    # finalised from the saved text: nothing read back from Slack
    assert not slack.called("conversations.replies") and not slack.called("conversations.history")


async def test_relay_command_answers_the_caller_only(slack, start_bot):
    await start_bot(bot_admins="U1")
    command = {
        "command": "/relay",
        "text": "config temperature 0.3",
        "user_id": "U1",
        "channel_id": "C1",
        "team_id": "T1",
        "trigger_id": "t9",
        "response_url": f"{slack.api_url}respond",
    }
    await slack.deliver(command, kind="slash_commands")
    reply = await until(lambda: slack.called("respond"), what="the ephemeral answer")
    assert reply[0].params["response_type"] == "ephemeral"
    assert "`temperature` is now `0.3`" in reply[0].params["text"]
    assert not slack.called("chat.postMessage")


async def test_allowlisted_channels_only(slack, start_bot, fake_llm):
    await start_bot(slack_allowed_channels="C2")
    fake_llm.reply("allowed")
    outside = mention(slack, f"<@{BOT_USER}> here?", channel="C1")
    inside = mention(slack, f"<@{BOT_USER}> here?", channel="C2")
    await slack.deliver(slack.callback(outside))
    await slack.deliver(slack.callback(inside))
    await reply_text(slack, "C2", inside["ts"], "allowed")
    assert thread_texts(slack, "C1", outside["ts"]) == []
    assert len(fake_llm.requests) == 1


async def test_quota_refusal_is_a_short_note_in_the_thread(slack, start_bot, fake_llm):
    await start_bot(bot_user_requests_per_minute=1)
    fake_llm.reply("first")
    first = mention(slack, f"<@{BOT_USER}> one")
    await slack.deliver(slack.callback(first))
    await reply_text(slack, "C1", first["ts"], "first")
    second = mention(slack, f"<@{BOT_USER}> two")
    await slack.deliver(slack.callback(second))
    texts = await until(lambda: thread_texts(slack, "C1", second["ts"]), what="the refusal")
    assert texts[0].startswith("_You are asking faster than 1 questions a minute")  # no placeholder first
    assert len(texts) == 1 and len(fake_llm.requests) == 1


async def test_ask_in_a_channel_the_bot_is_not_in_tells_the_user(slack, start_bot, fake_llm):
    await start_bot()
    slack.errors["chat.postMessage"] += ["not_in_channel"] * 3
    command = {
        "command": "/ask",
        "text": "hello?",
        "user_id": "U1",
        "channel_id": "C5",
        "team_id": "T1",
        "trigger_id": "t10",
        "response_url": f"{slack.api_url}respond",
    }
    await slack.deliver(command, kind="slash_commands")
    reply = await until(lambda: slack.called("respond"), what="the ephemeral hint")
    assert "/invite @relaybot" in reply[0].params["text"]


async def test_a_bad_app_token_is_a_clear_config_error(slack, start_bot):
    slack.errors["apps.connections.open"].append("invalid_auth")
    with pytest.raises(ConfigError, match="SLACK_APP_TOKEN: cannot open Socket Mode \\(invalid_auth\\)"):
        await start_bot()


async def test_a_bad_bot_token_is_a_clear_config_error(slack, start_bot):
    slack.errors["auth.test"].append("invalid_auth")
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN"):
        await start_bot()


async def test_http_mode_needs_a_signing_secret(slack, start_bot):
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        await start_bot(slack_app_token=None)


async def test_http_port_in_use_is_a_clear_config_error(slack, start_bot):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"SLACK_HOST/SLACK_PORT: cannot listen on 127.0.0.1:{port}"):
            await start_bot(slack_app_token=None, slack_signing_secret="s", slack_port=port)
