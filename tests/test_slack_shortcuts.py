"""End to end: Slack's message shortcut "Ask llama-relay" through the real Bolt app and Socket Mode.

A person uses the shortcut on a message, the bot opens the question form, the person submits
it; the answer lands in the message's thread with the message in the model's user turn.
"""

from __future__ import annotations

from adapters.slack.commands import NOT_ALLOWED
from adapters.slack.shortcuts import NO_MESSAGE
from tests.fakes.slack import BOT_USER, FakeSlack
from tests.slack_helpers import reply_text, thread_texts, until

pytest_plugins = ("tests.slack_env",)


def respond_texts(slack: FakeSlack) -> list[str]:
    return [c.params.get("text") for c in slack.called("respond")]


async def open_form(slack: FakeSlack, channel: str, ts: str, *, user: str = "U1") -> str:
    """``user`` uses the shortcut on the message at ``ts``: the id of the form the bot opens."""
    before = set(slack.views)
    ack = await slack.deliver(slack.shortcut(channel, ts, user=user), kind="interactive")
    assert not ack.get("payload")  # acked at once, nothing to show in the ack
    await until(lambda: set(slack.views) - before, what="the question form")
    (view_id,) = set(slack.views) - before
    return view_id


async def test_a_question_about_a_message_is_answered_in_its_thread(slack, start_bot, fake_llm):
    fake_llm.reply("E42 means the disk is full; free some space.", delay=0.01)
    await start_bot()
    message = slack.say("deploy failed: error E42 at step 3 <!channel>", user="U2")

    view_id = await open_form(slack, "C1", message["ts"])
    form = slack.views[view_id]
    assert form["callback_id"] == "relay_ask_view"
    assert "deploy failed" in form["blocks"][0]["elements"][0]["text"]  # the message, previewed
    ack = await slack.deliver(slack.submit(view_id, "what does E42 mean?"), kind="interactive")
    assert not ack.get("payload")  # the form closes

    expected = "<@U1> asked: what does E42 mean?\n\nE42 means the disk is full; free some space."
    assert await reply_text(slack, "C1", message["ts"], expected) == [expected]
    assert fake_llm.requests[0]["messages"][1:] == [
        {
            "role": "user",
            "content": "Ada: what does E42 mean?\n\n[message from Grace]\n"
            "deploy failed: error E42 at step 3 @channel\n[end of message]",
        }
    ]
    assert respond_texts(slack) == []


async def test_an_empty_question_explains_a_thread_reply_with_its_files_and_history(slack, start_bot, fake_llm):
    fake_llm.reply("The CI ran out of disk.")
    fake_llm.reply("Yes: clean the cache.")
    await start_bot()
    root = slack.say("CI is red again", user="U2")
    log = slack.file("ci.log", b"step 3\nERROR: no space left on device\n")
    reply = slack.say("here is the log", user="U2", thread_ts=root["ts"], files=[log])
    slack.say("anyone?", user="U2", thread_ts=root["ts"])  # after the message: not read

    view_id = await open_form(slack, "C1", reply["ts"])
    await slack.deliver(slack.submit(view_id, None), kind="interactive")
    await reply_text(slack, "C1", root["ts"], "<@U1> asked: Explain this message.\n\nThe CI ran out of disk.")

    turns = fake_llm.requests[0]["messages"][1:]
    assert turns[0] == {"role": "user", "content": "Grace: CI is red again"}
    assert len(turns) == 2 and "anyone?" not in str(turns)
    asked = turns[1]["content"]
    assert asked.startswith("Ada: Explain this message.\n\n[message from Grace]\nhere is the log\n[end of message]")
    assert "[file: ci.log]\nstep 3\nERROR: no space left on device" in asked

    # a follow-up in the thread is answered with the shortcut's question in the history
    follow = slack.say(f"<@{BOT_USER}> can I fix it myself?", thread_ts=root["ts"])
    await slack.deliver(slack.callback({**follow, "type": "app_mention"}))
    await until(lambda: len(fake_llm.requests) == 2, what="the follow-up's answer")
    history = fake_llm.requests[1]["messages"][1:]
    assert {"role": "user", "content": "Ada: Explain this message."} in history
    assert {"role": "assistant", "content": "The CI ran out of disk."} in history


async def test_a_blocked_user_is_told_privately_and_costs_no_model_call(slack, start_bot, fake_llm):
    await start_bot(bot_blocked_users="U1")
    message = slack.say("what is this?", user="U2")
    view_id = await open_form(slack, "C1", message["ts"])
    await slack.deliver(slack.submit(view_id, "explain"), kind="interactive")
    await until(lambda: respond_texts(slack), what="the private refusal")
    assert respond_texts(slack) == [NOT_ALLOWED]
    assert slack.called("respond")[0].params["response_type"] == "ephemeral"
    assert fake_llm.requests == [] and thread_texts(slack, "C1", message["ts"]) == []


async def test_someone_not_allowed_gets_no_form_but_a_private_refusal(slack, start_bot, fake_llm):
    await start_bot(slack_allowed_users="U2")
    message = slack.say("what is this?", user="U2")
    await slack.deliver(slack.shortcut("C1", message["ts"], user="U1"), kind="interactive")
    await until(lambda: respond_texts(slack), what="the private refusal")
    assert respond_texts(slack) == [NOT_ALLOWED]
    assert slack.views == {} and fake_llm.requests == []


async def test_over_the_quota_the_refusal_shows_in_the_thread(slack, start_bot, fake_llm):
    fake_llm.reply("First answer.")
    await start_bot(bot_user_requests_per_minute=1)
    message = slack.say("a long log", user="U2")
    first = await open_form(slack, "C1", message["ts"])
    await slack.deliver(slack.submit(first, "one"), kind="interactive")
    await reply_text(slack, "C1", message["ts"], "<@U1> asked: one\n\nFirst answer.")
    second = await open_form(slack, "C1", message["ts"])
    await slack.deliver(slack.submit(second, "two"), kind="interactive")
    await until(lambda: len(thread_texts(slack, "C1", message["ts"])) == 2, what="the refusal")
    refusal = thread_texts(slack, "C1", message["ts"])[-1]
    assert refusal.startswith("<@U1> asked: two\n\n") and "You are" in refusal
    assert len(fake_llm.requests) == 1


async def test_in_a_channel_the_bot_is_not_in_the_user_is_told_how_to_invite_it(slack, start_bot, fake_llm):
    await start_bot()
    message = slack.say("a message in a channel without the bot", channel="C5", user="U2")
    slack.errors["conversations.replies"] += ["not_in_channel"] * 2
    slack.errors["chat.postMessage"] += ["not_in_channel"] * 3
    view_id = await open_form(slack, "C5", message["ts"])
    await slack.deliver(slack.submit(view_id, "what is this?"), kind="interactive")
    await until(lambda: respond_texts(slack), what="the private hint")
    assert respond_texts(slack) == ["I can't post in this channel yet: invite me with `/invite @relaybot` and ask again."]


async def test_a_long_message_is_read_whole_though_the_form_carries_only_part_of_it(slack, start_bot, fake_llm):
    fake_llm.reply("A long log of retries.")
    await start_bot()
    long_text = "\n".join(f"line {n}: retrying the upload after a timeout" for n in range(250))
    message = slack.say(long_text, user="U2")
    view_id = await open_form(slack, "C1", message["ts"])
    assert len(slack.views[view_id]["private_metadata"]) <= 3000
    await slack.deliver(slack.submit(view_id, ""), kind="interactive")
    await reply_text(slack, "C1", message["ts"], "<@U1> asked: Explain this message.\n\nA long log of retries.")
    assert long_text in fake_llm.requests[0]["messages"][-1]["content"]


async def test_malformed_shortcut_and_form_payloads_get_a_clear_word_and_no_model_call(slack, start_bot, fake_llm):
    await start_bot()
    message = slack.say("hello", user="U2")
    broken = slack.shortcut("C1", message["ts"])
    broken["message"] = "not a message"
    ack = await slack.deliver(broken, kind="interactive")  # acked, then ignored
    view_id = await open_form(slack, "C1", message["ts"])
    submission = slack.submit(view_id, "why?")
    submission["view"]["private_metadata"] = "{not json"
    ack = await slack.deliver(submission, kind="interactive")
    assert ack["payload"] == {"response_action": "errors", "errors": {"question": NO_MESSAGE}}  # the form stays open
    assert len(slack.views) == 1 and fake_llm.requests == [] and slack.bot_messages("C1") == []
