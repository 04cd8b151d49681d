"""End to end: the real Bolt AsyncApp + AsyncSocketModeHandler against the fake Slack and fake model."""

from __future__ import annotations

import logging

from adapters.slack.events import PLACEHOLDER
from bot.splitting import join_parts
from tests.fakes.slack import BOT_USER
from tests.slack_helpers import mention, reply_text, thread_texts, until

pytest_plugins = ("tests.slack_env",)


async def test_mention_gets_a_streamed_reply_in_its_thread(slack, start_bot, fake_llm):
    answer = " ".join(f"Paris is the **capital** of France ({n})." for n in range(12))
    fake_llm.reply(answer, delay=0.01)
    await start_bot()
    event = mention(slack, f"<@{BOT_USER}> what is the capital of France?")
    await slack.deliver(slack.callback(event))

    expected = answer.replace("**capital**", "*capital*")
    texts = await reply_text(slack, "C1", event["ts"], expected)
    assert texts == [expected]  # one message, in the mention's thread
    assert len(slack.called("chat.postMessage")) == 1
    updates = [c.params["text"] for c in slack.called("chat.update")]
    assert len(updates) >= 2 and len(updates[0]) < len(expected)  # streamed, not posted at the end
    assert fake_llm.requests[0]["messages"][-1] == {
        "role": "user",
        "content": "Ada: what is the capital of France?",
    }


async def test_thread_follow_up_carries_the_history(slack, start_bot, fake_llm):
    fake_llm.reply("Rome.")
    fake_llm.reply("About 2.8 million people.")
    bot = await start_bot()
    first = mention(slack, f"<@{BOT_USER}> capital of Italy?")
    await slack.deliver(slack.callback(first))
    await reply_text(slack, "C1", first["ts"], "Rome.")

    follow = slack.say("and how many people live there?", user="U2", thread_ts=first["ts"])
    await slack.deliver(slack.callback(follow))
    await reply_text(slack, "C1", first["ts"], "About 2.8 million people.")

    messages = fake_llm.requests[1]["messages"]
    assert messages[1:] == [
        {"role": "user", "content": "Ada: capital of Italy?"},
        {"role": "assistant", "content": "Rome."},
        {"role": "user", "content": "Grace: and how many people live there?"},
    ]
    # every turn's token count is cached under the message's channel and ts (saved once the answer ends)
    await bot.service.tasks.wait_idle()
    cached = await bot.service.store.cached_counts([f"slack:C1:{first['ts']}", f"slack:C1:{follow['ts']}"])
    assert len(cached) == 2


async def test_thread_message_without_the_bot_gets_no_answer(slack, start_bot, fake_llm, caplog):
    await start_bot()
    root = slack.say("lunch?", user="U2")
    chatter = slack.say("yes please", thread_ts=root["ts"])
    await slack.deliver(slack.callback(chatter))
    await until(lambda: slack.called("conversations.replies"), what="the thread check")
    probe = mention(slack, f"<@{BOT_USER}> ping")
    fake_llm.reply("pong")
    await slack.deliver(slack.callback(probe))
    await reply_text(slack, "C1", probe["ts"], "pong")
    assert thread_texts(slack, "C1", root["ts"]) == []
    assert len(fake_llm.requests) == 1


async def test_direct_messages_answer_at_the_top_level_with_history(slack, start_bot, fake_llm):
    fake_llm.reply("Hello Ada!")
    fake_llm.reply("You said hi.")
    await start_bot()
    first = slack.say("hi", channel="D1")
    await slack.deliver(slack.callback(first))
    await reply_text(slack, "D1", None, "Hello Ada!")
    second = slack.say("what did I say?", channel="D1")
    await slack.deliver(slack.callback(second))
    await reply_text(slack, "D1", None, "You said hi.")
    assert fake_llm.requests[1]["messages"][1:] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello Ada!"},
        {"role": "user", "content": "what did I say?"},
    ]


async def test_ask_command_streams_into_a_visible_message(slack, start_bot, fake_llm):
    fake_llm.reply("Use `git revert <sha>` to undo a pushed commit.", delay=0.01)
    await start_bot()
    command = {
        "command": "/ask",
        "text": "how do I undo a pushed commit? <!channel>",
        "user_id": "U1",
        "channel_id": "C7",
        "team_id": "T1",
        "trigger_id": "trig-1",
        "response_url": f"{slack.api_url}respond",
    }
    ack = await slack.deliver(command, kind="slash_commands")
    assert "payload" not in ack or not ack["payload"]  # acked at once, no ephemeral text
    expected = (
        "<@U1> asked: how do I undo a pushed commit? @\u200bchannel\n\n"
        "Use `git revert &lt;sha&gt;` to undo a pushed commit."
    )
    await reply_text(slack, "C7", None, expected)
    assert fake_llm.requests[0]["messages"][-1]["content"] == "Ada: how do I undo a pushed commit? @channel"


async def test_empty_ask_gets_usage_in_the_ack(slack, start_bot, fake_llm):
    await start_bot()
    ack = await slack.deliver(
        {
            "command": "/ask",
            "text": "  ",
            "user_id": "U1",
            "channel_id": "C7",
            "team_id": "T1",
            "trigger_id": "t2",
        },
        kind="slash_commands",
    )
    assert "/ask" in ack["payload"]["text"]
    assert fake_llm.requests == []


async def test_the_same_event_twice_gets_one_reply(slack, start_bot, fake_llm, caplog):
    caplog.set_level(logging.INFO)
    fake_llm.reply("Once.", delay=0.01)
    await start_bot()
    body = slack.callback(mention(slack, f"<@{BOT_USER}> say it once"))
    await slack.deliver(body)
    await slack.deliver(body, retry_attempt=1)
    await until(lambda: "delivered again" in caplog.text, what="the duplicate to be dropped")
    await reply_text(slack, "C1", body["event"]["ts"], "Once.")
    assert len(slack.called("chat.postMessage")) == 1
    assert len(fake_llm.requests) == 1


async def test_mention_and_message_events_for_one_message_answer_once(slack, start_bot, fake_llm, caplog):
    caplog.set_level(logging.INFO)
    fake_llm.reply("Just one answer.")
    await start_bot()
    message = slack.say(f"<@{BOT_USER}> hello")
    await slack.deliver(slack.callback(message))  # the message.channels copy
    await slack.deliver(slack.callback({**message, "type": "app_mention"}))  # the app_mention copy
    await until(lambda: "already handled" in caplog.text, what="the second copy to be dropped")
    await reply_text(slack, "C1", message["ts"], "Just one answer.")
    assert len(slack.called("chat.postMessage")) == 1
    assert len(fake_llm.requests) == 1


async def test_edits_other_bots_and_own_messages_are_ignored(slack, start_bot, fake_llm):
    await start_bot()
    ignored = [
        {**slack.say(f"<@{BOT_USER}> edited"), "subtype": "message_changed"},
        {**slack.say(f"<@{BOT_USER}> gone"), "subtype": "message_deleted"},
        {
            **slack.say(f"<@{BOT_USER}> from a bot", user="UOTHER"),
            "bot_id": "BOTHER",
            "subtype": "bot_message",
        },
        {**slack.say("my own message", user=BOT_USER), "bot_id": "BBOT"},
    ]
    for event in ignored:
        await slack.deliver(slack.callback(event))
    fake_llm.reply("only this")
    probe = mention(slack, f"<@{BOT_USER}> real question")
    await slack.deliver(slack.callback(probe))
    await reply_text(slack, "C1", probe["ts"], "only this")
    assert len(fake_llm.requests) == 1
    assert len(slack.called("chat.postMessage")) == 1


async def test_provider_error_replaces_the_placeholder_with_a_note(slack, start_bot, fake_llm):
    fake_llm.fail(401)
    await start_bot()
    event = mention(slack, f"<@{BOT_USER}> hello?")
    await slack.deliver(slack.callback(event))
    await until(lambda: any("rejected the API key" in t for t in thread_texts(slack, "C1", event["ts"])))
    texts = thread_texts(slack, "C1", event["ts"])
    assert len(texts) == 1
    assert texts[0].startswith("_") and texts[0].endswith("_")  # a short italic note
    assert PLACEHOLDER not in texts[0]
    assert "Traceback" not in texts[0]


async def test_long_answer_continues_in_more_messages_and_joins_back(slack, start_bot, fake_llm):
    paragraph = "word " * 150
    answer = "\n\n".join(f"Part {n}: {paragraph.strip()}" for n in range(12))  # ~9,000 chars
    fake_llm.reply(answer)
    fake_llm.reply("Yes, it was long.")
    await start_bot()
    event = mention(slack, f"<@{BOT_USER}> write a lot")
    await slack.deliver(slack.callback(event))
    await until(
        lambda: "".join(thread_texts(slack, "C1", event["ts"])) == answer, what="the whole long answer"
    )
    texts = thread_texts(slack, "C1", event["ts"])
    assert len(texts) >= 3
    assert all(len(t.encode()) <= 3500 for t in texts)
    assert join_parts(texts) == answer

    follow = slack.say("was that long?", thread_ts=event["ts"])
    await slack.deliver(slack.callback(follow))
    await reply_text(slack, "C1", event["ts"], "Yes, it was long.")
    history = fake_llm.requests[1]["messages"]
    assert history[-2] == {"role": "assistant", "content": answer}  # the split reply is one turn again


async def test_crowd_pings_in_model_output_are_neutralised(slack, start_bot, fake_llm):
    fake_llm.reply("Hey <!channel> and <!here>, <!everyone>, <!subteam^S0123|@devs>, @everyone and @here!")
    await start_bot()
    event = mention(slack, f"<@{BOT_USER}> ping everyone")
    await slack.deliver(slack.callback(event))
    text = (await until(lambda: [t for t in thread_texts(slack, "C1", event["ts"]) if "devs" in t]))[0]
    assert "<!" not in text and "<@" not in text
    assert "&lt;!channel&gt;" in text and "&lt;!subteam^S0123|@devs&gt;" in text
    assert "@\u200beveryone" in text and "@\u200bhere" in text
    for call in slack.called("chat.update") + slack.called("chat.postMessage"):
        assert not call.params.get("link_names")


async def test_twenty_concurrent_conversations_finish_while_the_limit_holds(slack, start_bot, fake_llm):
    slack.limit("chat.update", count=12, window=1.0)  # 720/min: the bot's budget below is set higher
    answers = [" ".join(f"answer{n}-word{w}" for w in range(25)) for n in range(20)]
    for answer in answers:
        fake_llm.reply(answer, delay=0.01)
    await start_bot(slack_edits_per_minute=1800)
    events = [mention(slack, f"<@{BOT_USER}> question {n}", channel=f"C{n + 10}") for n in range(20)]
    for event in events:
        await slack.deliver(slack.callback(event))

    def finished() -> bool:
        done = {join_parts(thread_texts(slack, event["channel"], event["ts"])) for event in events}
        return done == set(answers)

    await until(finished, timeout=40, what="all 20 answers complete")
    assert slack.rate_limited > 0  # the fake's limit did bite ...
    assert slack.early_retries == 0  # ... and every Retry-After was honoured


async def test_ask_with_a_provider_error_keeps_the_question_and_shows_the_note(slack, start_bot, fake_llm):
    fake_llm.fail(401)
    await start_bot()
    command = {
        "command": "/ask",
        "text": "anyone there?",
        "user_id": "U1",
        "channel_id": "C8",
        "team_id": "T1",
        "trigger_id": "trig-err",
        "response_url": f"{slack.api_url}respond",
    }
    await slack.deliver(command, kind="slash_commands")
    texts = await until(lambda: [t for t in thread_texts(slack, "C8", None) if "API key" in t])
    assert texts[0].startswith("<@U1> asked: anyone there?\n\n_") and texts[0].endswith("_")
    assert PLACEHOLDER not in texts[0]


async def test_a_bare_mention_gets_a_short_hint_and_no_model_call(slack, start_bot, fake_llm):
    await start_bot()
    event = mention(slack, f"<@{BOT_USER}>")
    await slack.deliver(slack.callback(event))
    texts = await until(lambda: thread_texts(slack, "C1", event["ts"]), what="the hint")
    await until(lambda: thread_texts(slack, "C1", event["ts"]) != [PLACEHOLDER], what="the placeholder to go")
    assert thread_texts(slack, "C1", event["ts"]) == ["_The question is empty: type something to ask._"]
    assert texts and fake_llm.requests == []


async def test_long_dm_answer_continues_at_the_top_level_and_joins_back(slack, start_bot, fake_llm):
    answer = "\n".join(f"line {n}: " + " ".join(["text"] * 12) for n in range(20))
    fake_llm.reply(answer)
    fake_llm.reply("ok")
    await start_bot(bot_message_limit=400)
    first = slack.say("tell me a lot", channel="D2")
    await slack.deliver(slack.callback(first))
    await until(lambda: join_parts(thread_texts(slack, "D2", None)) == answer, what="the whole DM answer")
    assert len(thread_texts(slack, "D2", None)) >= 3
    second = slack.say("thanks", channel="D2")
    await slack.deliver(slack.callback(second))
    await until(lambda: thread_texts(slack, "D2", None)[-1] == "ok")
    assert fake_llm.requests[1]["messages"][1:] == [
        {"role": "user", "content": "tell me a lot"},
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "thanks"},
    ]


async def test_long_ask_answer_continues_in_the_thread_of_its_message(slack, start_bot, fake_llm):
    answer = " ".join(f"word{n}" for n in range(200))
    fake_llm.reply(answer)
    await start_bot(bot_message_limit=500)
    command = {
        "command": "/ask",
        "text": "count",
        "user_id": "U1",
        "channel_id": "C9",
        "team_id": "T1",
        "trigger_id": "trig-long",
        "response_url": f"{slack.api_url}respond",
    }
    await slack.deliver(command, kind="slash_commands")
    header = "<@U1> asked: count\n\n"

    def whole() -> bool:
        top = thread_texts(slack, "C9", None)
        if not top:
            return False
        rest = thread_texts(slack, "C9", slack.bot_messages("C9")[0]["ts"])
        return top[0].startswith(header) and join_parts([top[0][len(header) :], *rest]) == answer

    await until(whole, what="the /ask answer with its continuations")
    assert len(thread_texts(slack, "C9", None)) == 1  # one visible message; the rest is in its thread


async def test_a_reply_whose_message_was_deleted_is_finished_in_one_new_message(
    slack, start_bot, fake_llm, caplog
):
    # The core replaces a message that cannot be edited any more (bot.reply): the deleted
    # message is not edited again and again, and the answer ends whole in one new message.
    caplog.set_level(logging.INFO)
    answer = " ".join(f"w{n}" for n in range(80))
    fake_llm.reply(answer, delay=0.02)
    bot = await start_bot()
    event = mention(slack, f"<@{BOT_USER}> long one")
    await slack.deliver(slack.callback(event))
    await until(lambda: slack.called("chat.update"), what="streaming to start")
    (first,) = slack.bot_messages("C1")
    del slack.messages["C1"][first["ts"]]  # the user deleted the reply
    await until(lambda: bot.service.in_flight == 0, what="the reply to end")
    assert thread_texts(slack, "C1", event["ts"]) == [answer]
    assert len(slack.called("chat.postMessage")) == 2  # the placeholder, then its one replacement
    gone = [c for c in slack.calls if c.method == "chat.update" and c.error == "message_not_found"]
    assert len(gone) == 1 and gone[0].params["ts"] == first["ts"]  # given up at the first failure
    assert "Traceback" not in caplog.text
