"""The HTTP Events API (signed requests), native streaming and AI-app assistant threads, end to end."""

from __future__ import annotations

import json
import time

import aiohttp

from adapters.slack.format import ZWSP
from bot.splitting import join_parts
from tests.fakes.slack import BOT_USER, FakeSlack
from tests.fakes.slack_socket import ACK_DEADLINE
from tests.slack_helpers import mention, reply_text, thread_texts, until

SECRET = "test-signing-secret"

pytest_plugins = ("tests.slack_env",)


async def post_event(port: int, body: str, headers: dict[str, str]) -> int:
    url = f"http://127.0.0.1:{port}/slack/events"
    timeout = aiohttp.ClientTimeout(total=ACK_DEADLINE)  # later than this, Slack retries the event
    async with aiohttp.ClientSession(timeout=timeout) as session, session.post(url, data=body, headers=headers) as response:
        return response.status


async def test_http_mode_answers_a_correctly_signed_event(slack, start_bot, fake_llm):
    fake_llm.reply("Signed and answered.")
    bot = await start_bot(slack_app_token=None, slack_signing_secret=SECRET)
    assert bot.mode == "http"
    event = mention(slack, f"<@{BOT_USER}> over http")
    body = json.dumps(slack.callback(event))
    assert await post_event(bot.port, body, FakeSlack.sign(body, SECRET)) == 200
    await reply_text(slack, "C1", event["ts"], "Signed and answered.")
    assert not slack.called("apps.connections.open")


async def test_http_mode_rejects_a_bad_signature(slack, start_bot, fake_llm):
    bot = await start_bot(slack_app_token=None, slack_signing_secret=SECRET)
    event = mention(slack, f"<@{BOT_USER}> forged")
    body = json.dumps(slack.callback(event))
    assert await post_event(bot.port, body, FakeSlack.sign(body, "wrong-secret")) == 401
    stale = FakeSlack.sign(body, SECRET, timestamp=int(time.time()) - 600)
    assert await post_event(bot.port, body, stale) == 401
    # A good request afterwards is answered, and it is the only one.
    fake_llm.reply("Only the signed one.")
    good = mention(slack, f"<@{BOT_USER}> genuine")
    good_body = json.dumps(slack.callback(good))
    assert await post_event(bot.port, good_body, FakeSlack.sign(good_body, SECRET)) == 200
    await reply_text(slack, "C1", good["ts"], "Only the signed one.")
    assert len(fake_llm.requests) == 1
    assert thread_texts(slack, "C1", event["ts"]) == []


async def test_http_mode_retry_header_gets_no_second_answer(slack, start_bot, fake_llm, caplog):
    caplog.set_level("INFO", logger="bot.service")  # the core drops redeliveries
    fake_llm.reply("Once over http.")
    bot = await start_bot(slack_app_token=None, slack_signing_secret=SECRET)
    body = json.dumps(slack.callback(mention(slack, f"<@{BOT_USER}> retry me")))
    assert await post_event(bot.port, body, FakeSlack.sign(body, SECRET)) == 200
    retry = {**FakeSlack.sign(body, SECRET), "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    assert await post_event(bot.port, body, retry) == 200
    await until(lambda: "delivered again" in caplog.text)
    await until(
        lambda: slack.bot_messages("C1") and slack.bot_messages("C1")[-1]["text"] == "Once over http."
    )
    assert len(fake_llm.requests) == 1


async def test_native_streaming_streams_into_the_thread(slack, start_bot, fake_llm):
    answer = "Streaming **natively** works, <!here> @channel. " * 6
    fake_llm.reply(answer, delay=0.01)
    await start_bot(slack_native_streaming=True)
    event = mention(slack, f"<@{BOT_USER}> stream it")
    await slack.deliver(slack.callback(event))
    expected = answer.replace("<!here>", f"<{ZWSP}!here>").replace("@channel", f"@{ZWSP}channel")
    await reply_text(slack, "C1", event["ts"], expected)
    await until(lambda: slack.called("chat.stopStream"), what="the stream to stop")
    start = slack.called("chat.startStream")
    assert len(start) == 1
    assert start[0].params["thread_ts"] == event["ts"]
    assert start[0].params["recipient_user_id"] == "U1" and start[0].params["recipient_team_id"] == "T1"
    assert len(slack.called("chat.appendStream")) >= 1
    assert len(slack.called("chat.stopStream")) == 1
    assert not slack.called("chat.update")
    ts = slack.bot_messages("C1")[0]["ts"]
    # no Stop on an open stream; the final buttons come with chat.stopStream
    assert slack.buttons("C1", ts) == ["relay_regenerate", "relay_up", "relay_down"]
    assert slack.messages["C1"][ts]["text"] == expected


async def test_native_stream_closed_by_slack_falls_back_to_chat_update(slack, start_bot, fake_llm):
    slack.stream_lifetime = 0.3
    answer = " ".join(f"token{n}" for n in range(60))
    fake_llm.reply(answer, delay=0.02)  # ~1.2 s: the stream expires half way
    await start_bot(slack_native_streaming=True)
    event = mention(slack, f"<@{BOT_USER}> long stream")
    await slack.deliver(slack.callback(event))
    await reply_text(slack, "C1", event["ts"], answer)
    assert len(slack.called("chat.startStream")) == 1
    assert any(c.params.get("markdown_text") == answer for c in slack.called("chat.update"))


async def test_native_stream_rolls_over_before_it_expires(slack, start_bot, fake_llm):
    answer = " ".join(f"piece{n}" for n in range(60))
    fake_llm.reply(answer, delay=0.02)
    fake_llm.reply("It was one answer.")
    bot = await start_bot(slack_native_streaming=True)
    bot.relay.stream_lifetime = 0.3
    event = mention(slack, f"<@{BOT_USER}> roll over")
    await slack.deliver(slack.callback(event))
    await until(
        lambda: "".join(thread_texts(slack, "C1", event["ts"])) == answer, what="the whole streamed answer"
    )
    assert len(slack.called("chat.startStream")) >= 2
    assert not any(c.status == 200 and c.method == "chat.update" for c in slack.calls)
    follow = slack.say("one answer?", thread_ts=event["ts"])
    await slack.deliver(slack.callback(follow))
    await until(lambda: thread_texts(slack, "C1", event["ts"])[-1] == "It was one answer.")
    assert fake_llm.requests[1]["messages"][-2] == {"role": "assistant", "content": answer}


async def test_native_stream_provider_error_leaves_a_note(slack, start_bot, fake_llm):
    fake_llm.fail(401)
    await start_bot(slack_native_streaming=True)
    event = mention(slack, f"<@{BOT_USER}> fail please")
    await slack.deliver(slack.callback(event))
    texts = await until(lambda: [t for t in thread_texts(slack, "C1", event["ts"]) if "API key" in t])
    assert texts[0].startswith("*") and len(slack.called("chat.stopStream")) == 1


async def test_assistant_thread_greets_shows_status_titles_and_answers(slack, start_bot, fake_llm):
    fake_llm.reply("Here is a haiku.")
    await start_bot()
    started = slack.thread_started("U1", "D9")
    thread_ts = started["assistant_thread"]["thread_ts"]
    await slack.deliver(slack.callback(started))
    await until(lambda: slack.called("assistant.threads.setSuggestedPrompts"), what="suggested prompts")
    assert any(c.params.get("thread_ts") == thread_ts for c in slack.called("chat.postMessage"))

    question = slack.say("write me a haiku about queues", channel="D9", thread_ts=thread_ts)
    await slack.deliver(slack.callback(question))
    await reply_text(slack, "D9", thread_ts, "Here is a haiku.")
    status = slack.called("assistant.threads.setStatus")
    assert status and status[0].params["status"] == "is thinking…"
    title = slack.called("assistant.threads.setTitle")
    assert title and title[0].params["title"] == "write me a haiku about queues"
    assert fake_llm.requests[0]["messages"][-1] == {
        "role": "user",
        "content": "write me a haiku about queues",
    }


async def test_native_stream_long_answer_continues_in_new_streams(slack, start_bot, fake_llm):
    answer = "\n\n".join(f"Paragraph {n}: " + "lorem ipsum " * 20 for n in range(8))
    fake_llm.reply(answer)
    await start_bot(slack_native_streaming=True, bot_message_limit=600)
    event = mention(slack, f"<@{BOT_USER}> long native")
    await slack.deliver(slack.callback(event))

    def finished() -> bool:
        texts = thread_texts(slack, "C1", event["ts"])
        return join_parts(texts) == answer and len(slack.called("chat.stopStream")) == len(texts)

    await until(finished, what="the whole answer, every stream stopped")
    texts = thread_texts(slack, "C1", event["ts"])
    assert len(texts) >= 3 and all(len(t) <= 600 for t in texts)
    assert len(slack.called("chat.startStream")) == len(texts)


async def test_http_mode_answers_slacks_url_verification(slack, start_bot):
    bot = await start_bot(slack_app_token=None, slack_signing_secret=SECRET)
    body = json.dumps({"type": "url_verification", "token": "t", "challenge": "abc123"})
    url = f"http://127.0.0.1:{bot.port}/slack/events"
    headers = FakeSlack.sign(body, SECRET)
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
        assert response.status == 200
        assert (await response.json())["challenge"] == "abc123"
