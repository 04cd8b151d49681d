"""Controls on a Slack answer, end to end: the real Bolt app over Socket Mode against the fake
Slack (buttons in blocks, ``block_actions`` presses, 🛑 reactions) and the fake model."""

from __future__ import annotations

import time

import pytest

from adapters.slack.events import PLACEHOLDER
from tests.fakes.slack import BOT_USER, FakeSlack
from tests.slack_helpers import mention, reply_text, thread_texts, until

pytest_plugins = ("tests.slack_env",)

LONG = " ".join(f"word{n}" for n in range(400))
FINAL_BUTTONS = ["relay_regenerate", "relay_up", "relay_down"]


def answer_ts(slack, channel="C1"):
    messages = slack.bot_messages(channel)
    return messages[0]["ts"] if messages else None


def respond_texts(slack):
    return [c.params.get("text") for c in slack.called("respond")]


async def finished(slack, fake_llm, text: str, question: str = "hello"):
    """Ask ``question``, answered ``text``; wait for the final buttons: (question event, answer ts)."""
    fake_llm.reply(text)
    event = mention(slack, f"<@{BOT_USER}> {question}")
    await slack.deliver(slack.callback(event))
    await reply_text(slack, "C1", event["ts"], text)
    ts = answer_ts(slack)
    await until(lambda: slack.buttons("C1", ts) == FINAL_BUTTONS, what="the final buttons")
    return event, ts


async def streaming_reply(slack, fake_llm, text="tell me a long story", *, native=False):
    """Ask, and wait until the answer shows some text and its Stop button (a native stream: until it
    streams, with no button): (question event, answer ts)."""
    fake_llm.reply(LONG, delay=0.02)
    event = mention(slack, f"<@{BOT_USER}> {text}")
    await slack.deliver(slack.callback(event))

    def streaming():
        ts = answer_ts(slack)
        message = slack.messages["C1"].get(ts) if ts else None
        shown = message is not None and message["text"] not in ("", PLACEHOLDER) and "word5" in message["text"]
        if not shown:
            return None
        live = slack.streaming("C1", ts) if native else slack.buttons("C1", ts) == ["relay_stop"]
        return ts if live else None

    ts = await until(streaming, what="the answer to stream")
    return event, ts


async def test_stop_keeps_the_partial_text_closes_the_provider_stream_and_records_it(slack, start_bot, fake_llm):
    bot = await start_bot()
    _, ts = await streaming_reply(slack, fake_llm)

    await slack.deliver(slack.press("C1", ts, "relay_stop", user="U1"), kind="interactive")

    await until(lambda: slack.buttons("C1", ts) == FINAL_BUTTONS, what="the final buttons")
    text = slack.messages["C1"][ts]["text"]
    assert text.endswith("\n\n_stopped by Ada_")
    shown = text.split("\n")[0].split()
    assert 5 < len(shown) < 400  # the partial text stays, cut short
    await until(lambda: fake_llm.hung_up == 1, what="the provider's stream to be closed")
    assert fake_llm.sent[0] < 400
    await bot.service.tasks.wait_idle()
    record = await bot.service.store.request(1)
    assert record is not None and record.state == "stopped"
    [usage] = await bot.service.store.usage_totals("provider")
    assert 0 < usage.completion_tokens < 400  # the tokens actually generated
    assert respond_texts(slack) == []  # the asker's press needs no words


async def test_only_the_asker_or_an_admin_can_stop(slack, start_bot, fake_llm):
    await start_bot(bot_admins="U3")
    _, ts = await streaming_reply(slack, fake_llm)

    await slack.deliver(slack.press("C1", ts, "relay_stop", user="U2"), kind="interactive")
    await until(lambda: respond_texts(slack), what="the private refusal")
    assert respond_texts(slack) == ["Only the person who asked (or an admin) can stop this answer."]
    assert slack.called("respond")[0].params["response_type"] == "ephemeral"
    assert slack.buttons("C1", ts) == ["relay_stop"]  # still streaming

    await slack.deliver(slack.press("C1", ts, "relay_stop", user="U3"), kind="interactive")
    await until(lambda: slack.buttons("C1", ts) == FINAL_BUTTONS, what="the admin's stop")
    assert slack.messages["C1"][ts]["text"].endswith("_stopped by u3_")


async def test_a_stop_reaction_by_the_asker_stops_the_answer(slack, start_bot, fake_llm):
    await start_bot()
    _, ts = await streaming_reply(slack, fake_llm)

    await slack.deliver(slack.callback(slack.react("C1", ts, "thumbsup", user="U1")))  # not a stop
    await slack.deliver(slack.callback(slack.react("C1", ts, user="U2")))  # not the asker
    await until(lambda: slack.called("chat.postEphemeral"), what="the private refusal")
    assert slack.called("chat.postEphemeral")[0].params["user"] == "U2"
    assert slack.buttons("C1", ts) == ["relay_stop"]

    await slack.deliver(slack.callback(slack.react("C1", ts, user="U1")))
    await until(lambda: slack.buttons("C1", ts) == FINAL_BUTTONS, what="the stop")
    assert slack.messages["C1"][ts]["text"].endswith("_stopped by Ada_")
    await until(lambda: fake_llm.hung_up == 1, what="the provider's stream to be closed")


async def test_a_stop_reaction_stops_a_natively_streamed_answer(slack, start_bot, fake_llm):
    """An open native stream carries no button: the 🛑 finds the answer by its message."""
    bot = await start_bot(slack_native_streaming=True, bot_admins="U3")
    event, ts = await streaming_reply(slack, fake_llm, native=True)
    assert slack.buttons("C1", ts) == []

    await slack.deliver(slack.callback(slack.react("C1", ts, user="U2")))  # not the asker
    await until(lambda: slack.called("chat.postEphemeral"), what="the private refusal")
    [refusal] = slack.called("chat.postEphemeral")
    assert refusal.params["user"] == "U2" and refusal.params["thread_ts"] == event["ts"]
    assert refusal.params["text"] == "Only the person who asked (or an admin) can stop this answer."
    assert slack.streaming("C1", ts)

    await slack.deliver(slack.callback(slack.react("C1", ts, user="U1")))
    await until(lambda: slack.called("chat.stopStream"), what="the stream to stop")
    text = slack.messages["C1"][ts]["text"]
    assert text.endswith("\n\n*stopped by Ada*")
    assert 5 < len(text.split("\n")[0].split()) < 400  # the partial text stays, cut short
    assert slack.buttons("C1", ts) == FINAL_BUTTONS
    await until(lambda: fake_llm.hung_up == 1, what="the provider's stream to be closed")
    await bot.service.tasks.wait_idle()
    record = await bot.service.store.request(1)
    assert record is not None and record.state == "stopped"
    assert not slack.called("conversations.replies")  # found without reading the message back
    assert len(slack.called("chat.postEphemeral")) == 1  # the asker's 🛑 needs no words

    await slack.deliver(slack.callback(slack.react("C1", ts, user="U3")))  # an admin, too late
    fake_llm.reply("Done.")
    await slack.deliver(slack.callback(mention(slack, f"<@{BOT_USER}> barrier", thread_ts=event["ts"])))
    await until(lambda: len(slack.called("chat.stopStream")) == 2, what="a later question, as a barrier")
    assert len(slack.called("chat.postEphemeral")) == 1  # a 🛑 on an ended answer is ignored


async def test_a_finished_answer_has_no_stop_and_a_late_stop_is_answered_politely(slack, start_bot, fake_llm):
    await start_bot()
    _, ts = await finished(slack, fake_llm, "Short answer.", "quick one")
    message = slack.messages["C1"][ts]
    assert message["blocks"][0] == {"type": "section", "text": {"type": "mrkdwn", "text": "Short answer."}}

    # a Stop press that arrives after the end (a stale client, a second click)
    late = slack.press("C1", ts, "relay_regenerate", user="U1")
    late["actions"][0]["action_id"] = "relay_stop"
    await slack.deliver(late, kind="interactive")
    await until(lambda: respond_texts(slack), what="the polite answer")
    assert respond_texts(slack) == ["This answer has already ended."]
    assert slack.messages["C1"][ts]["text"] == "Short answer."


@pytest.mark.parametrize("native", [False, True], ids=["button", "native-stream-reaction"])
async def test_a_stop_pressed_on_another_replica_stops_the_answer(slack, make_settings, fake_llm, postgres_url, native):
    """Two replicas on one PostgreSQL: the question reaches one, the Stop press (or, on a native
    stream, which has no button, the 🛑) the other."""
    from adapters.slack import SlackBot
    from bot.runtime import build_router
    from bot.service import RelayService
    from bot.store import open_store

    bots, opened = [], []
    try:
        for n in range(2):
            settings = make_settings(
                slack_bot_token="xoxb-fake", slack_app_token="xapp-fake", slack_api_url=slack.api_url,
                bot_database=postgres_url, bot_replica=f"r{n}", slack_native_streaming=native,
            )
            store = await open_store(postgres_url, pool_size=3)
            router = build_router(settings)
            opened.append((store, router))
            bot = SlackBot(RelayService(settings, store, router), settings, host="127.0.0.1")
            await bot.start()
            bots.append(bot)
            await slack.wait_connections(n + 1)
        streaming_replica, other = slack.connections  # oldest first: the first bot's, then the second's

        fake_llm.reply(LONG, delay=0.02)
        event = mention(slack, f"<@{BOT_USER}> tell me a long story")
        await slack.deliver(slack.callback(event), via=streaming_replica)
        shows = (lambda t: slack.streaming("C1", t)) if native else (lambda t: slack.buttons("C1", t) == ["relay_stop"])
        ts = await until(
            lambda: (t := answer_ts(slack)) and shows(t) and "word5" in slack.messages["C1"][t]["text"] and t,
            what="the answer to stream",
        )
        if native:
            await slack.deliver(slack.callback(slack.react("C1", ts, user="U1")), via=other)
        else:
            await slack.deliver(slack.press("C1", ts, "relay_stop", user="U1"), kind="interactive", via=other)

        await until(lambda: slack.buttons("C1", ts) == FINAL_BUTTONS, what="the stop, noticed through the store")
        assert slack.messages["C1"][ts]["text"].endswith("*stopped by Ada*" if native else "_stopped by Ada_")
        await until(lambda: fake_llm.hung_up == 1, what="the provider's stream to be closed")
        assert fake_llm.sent[0] < 400
        assert respond_texts(slack) == [] and not slack.called("chat.postEphemeral")
        await bots[0].service.tasks.wait_idle()
        record = await bots[1].service.store.request(1)
        assert record is not None and record.owner.startswith("r0/") and record.state == "stopped"
    finally:
        for bot in bots:
            await bot.stop(grace=10)
        for store, router in opened:
            await router.aclose()
            await store.close()


async def test_regenerate_asks_again_without_the_old_answer_and_replaces_its_text(slack, start_bot, fake_llm):
    fake_llm.reply("Rome.")
    fake_llm.reply("First answer about its people.")
    fake_llm.reply("Second answer about its people.", delay=0.01)
    bot = await start_bot()
    root = mention(slack, f"<@{BOT_USER}> capital of Italy?")
    await slack.deliver(slack.callback(root))
    await reply_text(slack, "C1", root["ts"], "Rome.")
    follow = slack.say("and how many people live there?", user="U1", thread_ts=root["ts"])
    await slack.deliver(slack.callback(follow))
    await reply_text(slack, "C1", root["ts"], "First answer about its people.")
    ts = slack.bot_messages("C1")[-1]["ts"]
    await until(lambda: slack.buttons("C1", ts) == FINAL_BUTTONS, what="the final buttons")

    press = slack.press("C1", ts, "relay_regenerate", user="U1")
    await slack.deliver(press, kind="interactive")
    await slack.deliver(press, kind="interactive")  # pressed twice: one regeneration
    await reply_text(slack, "C1", root["ts"], "Second answer about its people.")
    await until(lambda: slack.buttons("C1", ts) == FINAL_BUTTONS, what="the new answer's buttons")
    await bot.service.tasks.wait_idle()

    assert len(fake_llm.requests) == 3
    assert fake_llm.requests[2]["messages"][1:] == fake_llm.requests[1]["messages"][1:] == [
        {"role": "user", "content": "Ada: capital of Italy?"},
        {"role": "assistant", "content": "Rome."},
        {"role": "user", "content": "Ada: and how many people live there?"},
    ]
    assert len(slack.called("chat.postMessage")) == 2  # the new answer went into the old message
    new_key = slack.messages["C1"][ts]["blocks"][-1]["elements"][0]["value"]
    assert new_key == "3:U1"
    assert await linked(bot, 3) == 2  # the ledger links the new answer to the one it replaced
    assert respond_texts(slack) == []


async def test_only_the_asker_can_regenerate(slack, start_bot, fake_llm):
    await start_bot()
    _, ts = await finished(slack, fake_llm, "Done.", "hello")
    await slack.deliver(slack.press("C1", ts, "relay_regenerate", user="U2"), kind="interactive")
    await until(lambda: respond_texts(slack), what="the refusal")
    assert respond_texts(slack) == ["Only the person who asked (or an admin) can regenerate this answer."]
    assert len(fake_llm.requests) == 1


async def linked(bot, request_id: int) -> int | None:
    """The request a regenerated one replaces, as the database says."""
    import sqlite3

    with sqlite3.connect(bot.settings.bot_database) as db:
        row = db.execute("SELECT regenerates FROM requests WHERE id = ?", (request_id,)).fetchone()
    return row[0] if row else None


async def test_feedback_one_vote_per_person_changeable_shown_in_usage_relay_and_metrics(
    slack, start_bot, fake_llm, tmp_path
):
    import socket

    import httpx

    from bot.ops import start_ops
    from tests.test_cli import run

    bot = await start_bot(bot_admins="U1")
    _, ts = await finished(slack, fake_llm, "An answer worth a vote.", "hello")

    for user, action in (("U1", "relay_up"), ("U1", "relay_up"), ("U2", "relay_down"), ("U1", "relay_down")):
        count = len(respond_texts(slack))
        await slack.deliver(slack.press("C1", ts, action, user=user), kind="interactive")
        await until(lambda n=count: len(respond_texts(slack)) > n, what=f"{user}'s vote")
    assert respond_texts(slack) == [
        "Thanks for the feedback: 👍 noted.",
        "Thanks for the feedback: 👍 noted.",
        "Thanks for the feedback: 👎 noted.",
        "Thanks for the feedback: 👎 noted.",
    ]
    assert await bot.service.store.vote_totals("provider") == {"openai": (0, 2)}
    assert slack.messages["C1"][ts]["text"] == "An answer worth a vote."  # votes leave the answer alone

    command = {"command": "/relay", "text": "usage", "user_id": "U1", "channel_id": "C1", "team_id": "T1",
               "trigger_id": "t9", "response_url": f"{slack.api_url}respond"}
    await slack.deliver(command, kind="slash_commands")
    await until(lambda: len(respond_texts(slack)) == 5, what="/relay usage")
    assert "openai: 1 requests" in respond_texts(slack)[-1] and "0 👍 / 2 👎" in respond_texts(slack)[-1]

    runner = await start_ops(bot.service, "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{runner.addresses[0][1]}") as client:
            metrics = (await client.get("/metrics")).text
    finally:
        await runner.cleanup()
    replica = f'replica="{socket.gethostname()}"'
    assert f'relay_feedback_votes{{provider="openai",{replica},vote="down"}} 2.0' in metrics
    assert f'relay_feedback_votes{{provider="openai",{replica},vote="up"}} 0.0' in metrics

    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BOT_DATABASE": str(bot.settings.bot_database),
           "OPENAI_API_KEY": "sk-unused", "OPENAI_BASE_URL": fake_llm.base_url}
    code, out, _ = await run(["usage", "--by", "provider"], env, tmp_path)
    assert code == 0
    assert out.splitlines()[0].split()[-2:] == ["👍", "👎"]
    assert [line.split()[-2:] for line in out.splitlines() if line.startswith("openai")] == [["0", "2"]]


async def test_an_edited_question_is_answered_again_in_place(slack, start_bot, fake_llm):
    slack.ts_base = int(time.time()) - 120  # asked two minutes ago
    fake_llm.reply("Paris.")
    fake_llm.reply("Rome.", delay=0.01)
    bot = await start_bot()
    question = mention(slack, f"<@{BOT_USER}> capital of France?")
    await slack.deliver(slack.callback(question))
    await reply_text(slack, "C1", question["ts"], "Paris.")
    ts = answer_ts(slack)
    await until(lambda: slack.buttons("C1", ts) == FINAL_BUTTONS, what="the final buttons")

    changed = slack.callback(slack.edit("C1", question["ts"], f"<@{BOT_USER}> capital of Italy?"))
    await slack.deliver(changed)
    await slack.deliver(changed, retry_attempt=1)  # Slack's retry of the same event: answered once
    await reply_text(slack, "C1", question["ts"], "Rome.")
    await bot.service.tasks.wait_idle()
    assert len(fake_llm.requests) == 2
    assert fake_llm.requests[1]["messages"][1:] == [{"role": "user", "content": "Ada: capital of Italy?"}]
    assert len(slack.called("chat.postMessage")) == 1
    assert await linked(bot, 2) == 1


async def test_an_edit_is_left_alone_when_the_answer_is_not_the_latest_or_the_question_is_old(
    slack, start_bot, fake_llm
):
    slack.ts_base = int(time.time()) - 60
    fake_llm.reply("Paris.")
    fake_llm.reply("About 2 million.")
    bot = await start_bot()
    question = mention(slack, f"<@{BOT_USER}> capital of France?")
    await slack.deliver(slack.callback(question))
    await reply_text(slack, "C1", question["ts"], "Paris.")
    follow = slack.say("how many people live there?", thread_ts=question["ts"])
    await slack.deliver(slack.callback(follow))
    await reply_text(slack, "C1", question["ts"], "About 2 million.")
    # the first answer is no longer the latest message of the thread
    replies = len(slack.called("conversations.replies"))
    await slack.deliver(slack.callback(slack.edit("C1", question["ts"], f"<@{BOT_USER}> capital of Spain?")))
    await until(lambda: len(slack.called("conversations.replies")) > replies, what="the edit to be read")
    await bot.service.tasks.wait_idle()

    slack.ts_base -= 3600  # a question asked an hour ago
    old = mention(slack, f"<@{BOT_USER}> capital of Peru?", channel="C2")
    old_answer = slack.say("Lima.", channel="C2", thread_ts=old["ts"])  # stands for an old answer
    replies = len(slack.called("conversations.replies"))
    await slack.deliver(slack.callback(slack.edit("C2", old["ts"], f"<@{BOT_USER}> capital of Chile?")))
    # a barrier: a later question is answered, so the edits before it have been handled
    fake_llm.reply("Pong.")
    probe = mention(slack, f"<@{BOT_USER}> ping", channel="C3")
    await slack.deliver(slack.callback(probe))
    await reply_text(slack, "C3", probe["ts"], "Pong.")
    await bot.service.tasks.wait_idle()
    assert len(fake_llm.requests) == 3
    assert thread_texts(slack, "C1", question["ts"]) == ["Paris.", "About 2 million."]
    assert len(slack.called("conversations.replies")) == replies  # too old: not even read
    assert old_answer["text"] == "Lima."


async def test_controls_pressed_after_a_restart_work_or_answer_politely(slack, start_bot, fake_llm):
    first = await start_bot()
    event, ts = await finished(slack, fake_llm, "Before the restart.", "hello")
    stale_stop = slack.press("C1", ts, "relay_regenerate", user="U1")
    stale_stop["actions"][0]["action_id"] = "relay_stop"  # a Stop press from a client that lagged behind
    await slack.deliver(slack.press("C1", ts, "relay_up", user="U3"), kind="interactive")
    await until(lambda: respond_texts(slack), what="the vote before the restart")
    await first.stop(grace=10)

    fake_llm.reply("After the restart.")
    second = await start_bot()
    up = {"provider": "openai", "vote": "up"}
    assert second.service.metrics.registry.get_sample_value("relay_feedback_votes", up) == 1.0  # from the store
    await slack.deliver(stale_stop, kind="interactive")
    await until(lambda: len(respond_texts(slack)) == 2, what="the polite answer")
    assert respond_texts(slack)[-1] == "This answer has already ended."
    await slack.deliver(slack.press("C1", ts, "relay_up", user="U2"), kind="interactive")
    await slack.deliver(slack.press("C1", ts, "relay_regenerate", user="U1"), kind="interactive")
    await reply_text(slack, "C1", event["ts"], "After the restart.")
    await until(lambda: slack.buttons("C1", ts) == FINAL_BUTTONS, what="the new answer's buttons")
    await second.service.tasks.wait_idle()
    assert await second.service.store.vote_totals("provider") == {"openai": (2, 0)}
    assert second.service.metrics.registry.get_sample_value("relay_feedback_votes", up) == 2.0
    assert len(slack.called("chat.postMessage")) == 1


async def test_a_regenerated_answer_goes_to_the_next_provider_in_the_failover_order(slack, start_bot, fake_llm):
    fake_llm.reply("From the first provider.")
    fake_llm.reply("From the second provider.")
    fake_llm.reply("From the first provider again.")
    bot = await start_bot(
        bot_providers="openai,deepinfra", deepinfra_token="di-secret", deepinfra_base_url=fake_llm.base_url
    )
    event = mention(slack, f"<@{BOT_USER}> hello")
    await slack.deliver(slack.callback(event))
    await reply_text(slack, "C1", event["ts"], "From the first provider.")
    ts = answer_ts(slack)
    for expected in ("From the second provider.", "From the first provider again."):
        await until(lambda: slack.buttons("C1", ts) == FINAL_BUTTONS, what="the final buttons")
        await bot.service.tasks.wait_idle()
        await slack.deliver(slack.press("C1", ts, "relay_regenerate", user="U1"), kind="interactive")
        await reply_text(slack, "C1", event["ts"], expected)
    keys = [h["Authorization"] for h in fake_llm.headers]
    assert keys == ["Bearer sk-test-secret", "Bearer di-secret", "Bearer sk-test-secret"]


async def test_a_press_over_the_http_events_api_is_signed_acked_and_handled(slack, start_bot, fake_llm):
    import json
    from urllib.parse import urlencode

    from tests.test_slack_modes import SECRET, post_event

    bot = await start_bot(slack_app_token=None, slack_signing_secret=SECRET)
    event = mention(slack, f"<@{BOT_USER}> over http")
    fake_llm.reply("Signed and answered.")
    body = json.dumps(slack.callback(event))
    assert await post_event(bot.port, body, FakeSlack.sign(body, SECRET)) == 200
    await reply_text(slack, "C1", event["ts"], "Signed and answered.")
    ts = answer_ts(slack)
    await until(lambda: slack.buttons("C1", ts) == FINAL_BUTTONS, what="the final buttons")

    form = urlencode({"payload": json.dumps(slack.press("C1", ts, "relay_up", user="U2"))})
    headers = {**FakeSlack.sign(form, SECRET), "Content-Type": "application/x-www-form-urlencoded"}
    assert await post_event(bot.port, form, {**headers, "X-Slack-Signature": "v0=forged"}) == 401
    assert await post_event(bot.port, form, headers) == 200
    await until(lambda: respond_texts(slack), what="the thanks")
    assert respond_texts(slack) == ["Thanks for the feedback: 👍 noted."]


async def test_an_edited_direct_message_is_answered_again_in_place(slack, start_bot, fake_llm):
    slack.ts_base = int(time.time()) - 60
    fake_llm.reply("Hi Ada.")
    fake_llm.reply("Goodbye Ada.")
    await start_bot()
    first = slack.say("hello", channel="D1")
    await slack.deliver(slack.callback(first))
    await reply_text(slack, "D1", None, "Hi Ada.")
    await until(lambda: slack.buttons("D1", answer_ts(slack, "D1")) == FINAL_BUTTONS, what="the final buttons")
    await slack.deliver(slack.callback(slack.edit("D1", first["ts"], "goodbye")))
    await reply_text(slack, "D1", None, "Goodbye Ada.")
    assert fake_llm.requests[1]["messages"][1:] == [{"role": "user", "content": "goodbye"}]
    assert len(slack.called("chat.postMessage")) == 1


async def test_a_longer_regenerated_answer_reuses_the_old_messages_and_a_shorter_one_deletes_the_rest(
    slack, start_bot, fake_llm
):
    long = " ".join(f"word{n}" for n in range(700))  # ~5,800 bytes: two messages
    bot = await start_bot()
    event, ts = await finished(slack, fake_llm, "Short first.", "a question")
    fake_llm.reply(long)
    fake_llm.reply("Short again.")
    await bot.service.tasks.wait_idle()
    await slack.deliver(slack.press("C1", ts, "relay_regenerate", user="U1"), kind="interactive")
    await until(lambda: len(thread_texts(slack, "C1", event["ts"])) == 2
                and slack.buttons("C1", slack.bot_messages("C1")[-1]["ts"]) == FINAL_BUTTONS, what="two messages")
    await bot.service.tasks.wait_idle()
    assert slack.bot_messages("C1")[0]["ts"] == ts  # the old message took the first part
    assert slack.buttons("C1", ts) == []
    assert len(slack.called("chat.postMessage")) == 2  # the old answer's one, and the second part

    last = slack.bot_messages("C1")[-1]["ts"]
    await slack.deliver(slack.press("C1", last, "relay_regenerate", user="U1"), kind="interactive")
    await reply_text(slack, "C1", event["ts"], "Short again.")
    await bot.service.tasks.wait_idle()
    assert thread_texts(slack, "C1", event["ts"]) == ["Short again."]
    assert [c.params["ts"] for c in slack.called("chat.delete")] == [last]
