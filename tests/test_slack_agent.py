"""Slack's agent messaging experience, the assistant view's greeting and the App Home tab, end to
end: the real Bolt app over Socket Mode against the fake Slack and the fake model."""

from __future__ import annotations

import pytest

from adapters.slack.events import PLACEHOLDER
from tests.fakes.slack import BOT_USER
from tests.slack_helpers import mention, reply_text, thread_texts, until

pytest_plugins = ("tests.slack_env",)

LONG = " ".join(f"word{n}" for n in range(400))
FINAL_BUTTONS = ["relay_regenerate", "relay_up", "relay_down"]
PROMPTS = [{"title": "Summarise", "message": "Summarise this for me:"}, {"title": "Explain", "message": "Explain"}]


def home_text(slack, user: str) -> str:
    """All the text of the Home tab published for ``user``."""
    blocks = slack.home[user]["blocks"]
    return "\n".join(b["text"]["text"] for b in blocks if "text" in b)


async def agent_bot(slack, start_bot, **settings):
    slack.agent_view = True  # the app's manifest says agent_view
    return await start_bot(slack_agent_view=True, **settings)


# -- the agent DM ----------------------------------------------------------------------------------


async def test_opening_the_agent_dm_shows_the_greeting_once_and_the_prompts(slack, start_bot):
    await agent_bot(
        slack, start_bot, slack_greeting="Welcome! Ask away.", slack_suggested_prompts=PROMPTS,
        slack_allowed_users="U1,U3",
    )
    await slack.deliver(slack.callback(slack.app_opened("U2", "D2", "messages")))  # not allowed to ask

    await slack.deliver(slack.callback(slack.app_opened("U1", "D1", "messages")))
    await until(lambda: thread_texts(slack, "D1", None) == ["Welcome! Ask away."], what="the greeting")
    await until(lambda: slack.prompts.get("D1") == PROMPTS, what="the prompts at the top of the DM")
    assert all("thread_ts" not in c.params for c in slack.called("assistant.threads.setSuggestedPrompts"))

    await slack.deliver(slack.callback(slack.app_opened("U1", "D1", "messages")))  # opened again
    await until(lambda: len(slack.called("assistant.threads.setSuggestedPrompts")) == 2, what="the prompts again")
    assert thread_texts(slack, "D1", None) == ["Welcome! Ask away."]  # greeted once
    assert not slack.called("assistant.threads.setStatus") and not slack.home
    assert "D2" not in slack.prompts and not slack.bot_messages("D2")

    slack.say("an old question", channel="D3", user="U3")  # a DM with messages already
    await slack.deliver(slack.callback(slack.app_opened("U3", "D3", "messages")))
    await until(lambda: slack.prompts.get("D3") == PROMPTS, what="the prompts in a DM with messages")
    assert not slack.bot_messages("D3")  # no greeting there


async def test_an_agent_dm_message_is_answered_in_its_thread_with_the_session_and_loading_status(
    slack, start_bot, fake_llm
):
    answer = "\n\n".join(f"Part {n}: " + "lorem ipsum " * 20 for n in range(4))
    fake_llm.reply(answer, ttft=0.3)
    await agent_bot(slack, start_bot, slack_loading_messages=["Reading…", "Thinking…"], bot_message_limit=600)
    question = slack.say("what is a B-tree?", channel="D1")
    await slack.deliver(slack.callback(question))

    thread = question["ts"]
    await until(lambda: "".join(thread_texts(slack, "D1", thread)).replace("\n", "") == answer.replace("\n", ""),
                what="the whole answer in the question's thread")
    assert len(thread_texts(slack, "D1", thread)) >= 2  # continued in a second message
    assert thread_texts(slack, "D1", None) == []  # nothing at the top level
    await until(lambda: slack.sessions[("D1", thread)] == ["processing", "active"], what="the session to end")
    [opened, _ended] = slack.called("agents.sessions.setStatus")
    assert opened.params["title"] == "what is a B-tree?" and opened.params["initiator_user_id"] == "U1"
    assert slack.statuses[("D1", thread)] == [{"status": "is thinking…", "loading_messages": ["Reading…", "Thinking…"]}]
    assert not any(m["text"] == PLACEHOLDER for m in slack.bot_messages("D1"))  # a status, not a placeholder
    assert not slack.called("assistant.threads.setTitle")

    # another DM message is a new thread: asked alone
    fake_llm.reply("A new topic.")
    other = slack.say("and what is a trie?", channel="D1")
    await slack.deliver(slack.callback(other))
    await reply_text(slack, "D1", other["ts"], "A new topic.")
    assert [m["role"] for m in fake_llm.requests[1]["messages"]] == ["system", "user"]

    # a reply in the first thread continues that conversation
    fake_llm.reply("Yes, balanced.")
    follow = slack.say("is it balanced?", channel="D1", thread_ts=thread)
    await slack.deliver(slack.callback(follow))
    await until(lambda: thread_texts(slack, "D1", thread)[-1] == "Yes, balanced.", what="the follow-up answer")
    sent = fake_llm.requests[2]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == "what is a B-tree?" and sent[-1]["content"] == "is it balanced?"
    await until(lambda: slack.sessions[("D1", thread)][-2:] == ["processing", "active"], what="the session again")


async def test_a_rate_limited_session_call_is_waited_out(slack, start_bot, fake_llm):
    """A session left ``processing`` would keep Slack's stop button on a finished answer."""
    await agent_bot(slack, start_bot)
    fake_llm.reply("Done anyway.")
    slack.fail("agents.sessions.setStatus", "ratelimited", status=429, retry_after=1, calls=2)
    question = slack.say("hello", channel="D1")
    await slack.deliver(slack.callback(question))
    await reply_text(slack, "D1", question["ts"], "Done anyway.")
    await until(lambda: slack.sessions[("D1", question["ts"])][-1:] == ["active"], what="the session to end")
    assert len(slack.failed("agents.sessions.setStatus")) == 2


async def test_slacks_stop_button_stops_the_answer_like_stop(slack, start_bot, fake_llm):
    bot = await agent_bot(slack, start_bot)
    fake_llm.reply(LONG, delay=0.02)
    question = slack.say("tell me a long story", channel="D1")
    await slack.deliver(slack.callback(question))
    thread = question["ts"]

    def streaming():
        messages = [m for m in slack.bot_messages("D1") if m.get("thread_ts") == thread]
        return messages and "word5" in messages[0]["text"] and messages[0]["ts"]

    ts = await until(streaming, what="the answer to stream")
    await slack.deliver(slack.callback(slack.stop_session("D1", thread, user="U1")))

    await until(lambda: slack.buttons("D1", ts) == FINAL_BUTTONS, what="the final buttons")
    text = slack.messages["D1"][ts]["text"]
    assert text.endswith("\n\n_stopped by Ada_")
    assert 5 < len(text.split("\n")[0].split()) < 400  # the partial text stays, cut short
    await until(lambda: fake_llm.hung_up == 1, what="the provider's stream to be closed")
    await bot.service.tasks.wait_idle()
    record = await bot.service.store.request(1)
    assert record is not None and record.state == "stopped"
    assert slack.sessions[("D1", thread)] == ["processing", "active"]
    assert not slack.called("chat.postEphemeral")  # the asker's stop needs no words

    # a stop with nothing streaming any more: out of "processing" all the same, nothing else
    await slack.deliver(slack.callback(slack.stop_session("D1", thread, user="U1")))
    await until(lambda: slack.sessions[("D1", thread)] == ["processing", "active", "active"], what="the session")
    assert slack.messages["D1"][ts]["text"] == text


async def test_slacks_stop_button_stops_a_native_stream_it_closed(slack, start_bot, fake_llm):
    """Slack stops the open stream itself (``streaming_message_ts``): the answer ends with its note
    written by ``chat.update``, the stream being closed."""
    bot = await agent_bot(slack, start_bot, slack_native_streaming=True)
    fake_llm.reply(LONG, delay=0.02)
    question = slack.say("stream a long story", channel="D1")
    await slack.deliver(slack.callback(question))
    thread = question["ts"]

    def streaming():
        messages = slack.bot_messages("D1")
        live = messages and "word5" in messages[0]["text"] and slack.streaming("D1", messages[0]["ts"])
        return live and messages[0]["ts"]

    ts = await until(streaming, what="the answer to stream")
    stop = slack.stop_session("D1", thread, user="U1")
    assert stop["streaming_message_ts"] == [ts]
    await slack.deliver(slack.callback(stop))

    await until(lambda: slack.messages["D1"][ts]["text"].endswith("\n\n*stopped by Ada*"), what="the stopped note")
    assert 5 < len(slack.messages["D1"][ts]["text"].split()) < 400
    await until(lambda: fake_llm.hung_up == 1, what="the provider's stream to be closed")
    await bot.service.tasks.wait_idle()
    record = await bot.service.store.request(1)
    assert record is not None and record.state == "stopped"
    assert slack.sessions[("D1", thread)] == ["processing", "active"]


async def test_slacks_stop_while_thinking_ends_the_answer_before_it_starts(slack, start_bot, fake_llm):
    bot = await agent_bot(slack, start_bot)
    fake_llm.reply("Too late.", ttft=10)
    question = slack.say("think hard", channel="D1")
    await slack.deliver(slack.callback(question))
    thread = question["ts"]
    await until(lambda: slack.statuses.get(("D1", thread)), what="the thinking status")

    await slack.deliver(slack.callback(slack.stop_session("D1", thread, user="U1")))
    await reply_text(slack, "D1", thread, "_stopped by Ada_")
    await bot.service.tasks.wait_idle()
    record = await bot.service.store.request(1)
    assert record is not None and record.state == "stopped"
    assert slack.sessions[("D1", thread)] == ["processing", "active"]


# -- the assistant view, with the settings --------------------------------------------------------


async def test_the_assistant_view_greets_with_the_settings_and_plain_dms_stay_flat(slack, start_bot, fake_llm):
    await start_bot(slack_greeting="Hello from settings.", slack_suggested_prompts=PROMPTS,
                    slack_loading_messages=["Pondering…"])
    started = slack.thread_started("U1", "D9")
    thread_ts = started["assistant_thread"]["thread_ts"]
    await slack.deliver(slack.callback(started))
    await until(lambda: slack.prompts.get(("D9", thread_ts)) == PROMPTS, what="the thread's prompts")
    assert thread_texts(slack, "D9", thread_ts) == ["Hello from settings."]

    fake_llm.reply("In the thread.", ttft=0.3)
    question = slack.say("a question", channel="D9", thread_ts=thread_ts)
    await slack.deliver(slack.callback(question))
    await reply_text(slack, "D9", thread_ts, "In the thread.")
    assert slack.statuses[("D9", thread_ts)] == [{"status": "is thinking…", "loading_messages": ["Pondering…"]}]
    assert not slack.called("agents.sessions.setStatus")

    # without agent view, opening the DM greets nobody and a top-level DM is answered at the top level
    await slack.deliver(slack.callback(slack.app_opened("U1", "D9", "messages")))
    fake_llm.reply("Flat answer.")
    flat = slack.say("top level", channel="D9")
    await slack.deliver(slack.callback(flat))
    await reply_text(slack, "D9", None, "Flat answer.")
    assert thread_texts(slack, "D9", None) == ["Flat answer."]  # no greeting there
    assert len(slack.called("assistant.threads.setSuggestedPrompts")) == 1


# -- the Home tab -------------------------------------------------------------------------------------


async def test_the_home_tab_shows_how_to_ask_and_the_users_usage_today(slack, start_bot, fake_llm):
    bot = await start_bot(bot_user_daily_tokens=1000, bot_admins="U3")
    fake_llm.reply("Counted.", usage={"prompt_tokens": 120, "completion_tokens": 30})
    event = mention(slack, f"<@{BOT_USER}> count me")
    await slack.deliver(slack.callback(event))
    await reply_text(slack, "C1", event["ts"], "Counted.")
    await bot.service.tasks.wait_idle()  # the usage is recorded just after the final text shows

    await slack.deliver(slack.callback(slack.app_opened("U1", "D1", "home")))
    await until(lambda: "U1" in slack.home, what="Ada's Home tab")
    text = home_text(slack, "U1")
    assert "*150* tokens of your 1,000 a day (15%)" in text
    assert "`/ask your question`" in text and "Mention me" in text and "*Stop*" in text
    assert slack.home["U1"]["blocks"][0]["text"]["text"] == "relaybot"

    await slack.deliver(slack.callback(slack.app_opened("U2", "D2", "home")))  # has asked nothing
    await until(lambda: "U2" in slack.home, what="Grace's Home tab")
    assert "*0* tokens of your 1,000 a day (0%)" in home_text(slack, "U2")

    await slack.deliver(slack.callback(slack.app_opened("U3", "D3", "home")))  # an admin: no quota
    await until(lambda: "U3" in slack.home, what="the admin's Home tab")
    assert "no daily limit for you" in home_text(slack, "U3")
    assert not slack.bot_messages("D1")  # the Home tab posts nothing


@pytest.mark.parametrize("tab", ["home", "messages"])
async def test_a_malformed_app_home_opened_is_ignored(slack, start_bot, tab):
    await agent_bot(slack, start_bot)
    event = {**slack.app_opened("U1", "D1", tab), "user": {"not": "an id"}}
    await slack.deliver(slack.callback(event))
    await slack.deliver(slack.callback(slack.app_opened("U2", "D2", "home")))  # a barrier: handled after it
    await until(lambda: "U2" in slack.home, what="the next event")
    assert "U1" not in slack.home and not slack.bot_messages("D1")
