"""Delivery on Slack, end to end: what the user sees when Slack or the bot's process misbehaves.

The real Bolt app and Socket Mode stack against the fake Slack (``tests.fakes.slack``)
and the fake model, all on 127.0.0.1.  The crash tests run the first bot as a real
``python -m bot serve`` process and SIGKILL it (no chance to clean up), then start a
bot in this process on the same SQLite file and look at what the user sees.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from adapters.slack.events import PLACEHOLDER
from bot.recovery import INTERRUPTED_NOTE
from tests.fakes.llm import FakeLLM
from tests.fakes.slack import BOT_USER, FakeSlack
from tests.slack_fuzz_support import settled
from tests.slack_helpers import mention, reply_text, thread_texts, until
from tests.test_process_lifecycle import bot_process

pytest_plugins = ("tests.slack_env",)

PLATFORM_TROUBLE = "chat platform had a problem"


def no_placeholder(slack: FakeSlack) -> bool:
    return not any(PLACEHOLDER in m["text"] for ms in slack.messages.values() for m in ms.values())


# -- Slack failing ------------------------------------------------------------------------------


async def test_a_failed_placeholder_post_still_gets_the_whole_answer(slack, start_bot, fake_llm):
    """Row 2: one HTTP 500 ``internal_error`` on the placeholder: the answer still arrives, whole."""
    answer = " ".join(f"Answer word {n}." for n in range(20))
    fake_llm.reply(answer, delay=0.01)
    slack.fail("chat.postMessage", "internal_error", status=500, calls=1)
    bot = await start_bot()
    event = mention(slack, f"<@{BOT_USER}> are you there?")
    await slack.deliver(slack.callback(event))
    texts = await reply_text(slack, "C1", event["ts"], answer)
    await until(lambda: bot.service.in_flight == 0, what="the reply to end")
    assert texts == [answer]  # one message: the whole answer, no note about the platform
    assert not any(PLATFORM_TROUBLE in t for t in thread_texts(slack, "C1", event["ts"]))
    assert len(slack.failed("chat.postMessage")) == 1 and slack.failed("chat.postMessage")[0].status == 500
    assert len(fake_llm.requests) == 1  # the provider was asked despite the failed placeholder
    assert no_placeholder(slack)


async def test_chat_update_rate_limited_for_seconds_still_ends_with_the_whole_answer(
    slack, start_bot, fake_llm
):
    """Row 3: every ``chat.update`` is a 429 (``Retry-After: 1``) for 4 s: the final text lands after."""
    answer = " ".join(f"Patient word {n}." for n in range(15))
    fake_llm.reply(answer, delay=0.02)
    slack.fail("chat.update", "ratelimited", status=429, seconds=4.0, retry_after=1)
    bot = await start_bot()
    event = mention(slack, f"<@{BOT_USER}> slow down")
    await slack.deliver(slack.callback(event))
    await until(lambda: slack.rate_limited >= 1, what="the first 429")
    texts = await reply_text(slack, "C1", event["ts"], answer, timeout=60)
    await until(lambda: bot.service.in_flight == 0, timeout=60, what="the reply to end")
    assert texts == [answer]  # the placeholder became the answer: no second message
    landed = slack.called("chat.update")[-1]
    assert landed.params["text"] == answer and landed.at > slack.failed("chat.update")[-1].at
    assert slack.rate_limited >= 2  # the final edit waited through several 429s ...
    assert slack.early_retries == 0  # ... each time honouring Retry-After
    assert not any(PLATFORM_TROUBLE in t for t in thread_texts(slack, "C1", event["ts"]))
    assert len(fake_llm.requests) == 1
    assert no_placeholder(slack)


# -- the block list --------------------------------------------------------------------------------


async def test_six_questions_at_once_stay_within_one_answer_of_the_daily_budget(slack, start_bot, fake_llm):
    """Row 7: ``BOT_USER_DAILY_TOKENS=150`` and six mentions at once from one user."""
    one_answer = 30 + 18
    for _ in range(6):
        fake_llm.reply("An answer.", delay=0.05, usage={"prompt_tokens": 30, "completion_tokens": 18})
    bot = await start_bot(bot_user_daily_tokens=150)
    events = [mention(slack, f"<@{BOT_USER}> question {n}") for n in range(6)]
    await asyncio.gather(*(slack.deliver(slack.callback(e)) for e in events))
    await until(lambda: all(thread_texts(slack, "C1", e["ts"]) for e in events), what="six replies")
    await until(lambda: bot.service.in_flight == 0, what="the replies to end")
    await bot.service.tasks.wait_idle()
    (total,) = await bot.service.store.usage_totals("user")
    assert total.prompt_tokens + total.completion_tokens <= 150 + one_answer
    texts = [thread_texts(slack, "C1", e["ts"]) for e in events]
    answered = [t for t in texts if t == ["An answer."]]
    refused = [t for t in texts if t != ["An answer."]]
    assert answered and refused and len(answered) == len(fake_llm.requests)
    assert all(len(t) == 1 and "budget" in t[0] and "Try again" in t[0] for t in refused), refused
    assert no_placeholder(slack)


async def test_a_blocked_user_costs_no_slack_call_and_no_provider_request(
    slack, start_bot, fake_llm, make_settings
):
    """Row 9: a user in ``BOT_BLOCKED_USERS``: no Web API call at all, no model request, no record."""
    bot = await start_bot(bot_blocked_users="U2")
    answered = mention(slack, f"<@{BOT_USER}> first, from someone allowed")
    fake_llm.reply("Allowed.")
    await slack.deliver(slack.callback(answered))
    await reply_text(slack, "C1", answered["ts"], "Allowed.")
    await settled(bot, slack)  # Bolt's own start-up calls are behind us
    mark, asked = len(slack.calls), len(fake_llm.requests)

    blocked = [
        mention(slack, f"<@{BOT_USER}> hello from a blocked user", user="U2"),
        # a thread message in a thread the bot does not know: would otherwise read the thread
        slack.say("anyone?", user="U2", thread_ts=slack.next_ts()),
        # and one in the thread the bot answered in
        slack.say("and me?", user="U2", thread_ts=answered["ts"]),
        slack.say("a direct message", channel="D7", user="U2"),
    ]
    for event in blocked:
        await slack.deliver(slack.callback(event))
    await settled(bot, slack)
    assert [c.method for c in slack.calls[mark:]] == []  # no replies/history read, no users.info, no post
    assert len(fake_llm.requests) == asked
    with sqlite3.connect(make_settings().bot_database) as db:
        (count,) = db.execute("SELECT COUNT(*) FROM requests").fetchone()
    assert count == 1  # only the allowed question was ever recorded


# -- a crash, then a restart --------------------------------------------------------------------------


def serve_env(tmp_path: Path, slack: FakeSlack, llm: FakeLLM, database: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "SLACK_BOT_TOKEN": "xoxb-fake",
        "SLACK_APP_TOKEN": "xapp-fake",
        "SLACK_API_URL": slack.api_url,
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "sk-test-secret",
        "BOT_DATABASE": str(database),
        "BOT_OPS_PORT": "0",
        "BOT_EDIT_INTERVAL": "0.05",
        "BOT_LOG_LEVEL": "INFO",
    }


def serving(env: dict[str, str], cwd: Path) -> AbstractAsyncContextManager[asyncio.subprocess.Process]:
    """``python -m bot serve`` in a subprocess, output to ``serve.log`` (the lifecycle tests' helper)."""
    return bot_process(env, cwd, cwd / "serve.log")


def requests_of(database: Path) -> list[tuple[str, str]]:
    """(state, shown) of every request record, oldest first."""
    with sqlite3.connect(database) as db:
        return [(row[0], row[1]) for row in db.execute("SELECT state, shown FROM requests ORDER BY id")]


def saved_words(database: Path, n: int) -> bool:
    """Whether the first request is answering and has at least ``n`` words shown and saved."""
    records = requests_of(database)
    return bool(records) and records[0][0] == "answering" and len(records[0][1].split()) >= n


async def crash(proc: asyncio.subprocess.Process) -> None:
    proc.kill()  # SIGKILL: nothing is finalised, nothing is drained
    await proc.wait()


#: a slow answer: the process is killed long before it ends (the fake model notices at its next chunk)
SLOW = " ".join(f"word{n}" for n in range(100))


async def slow_answer_streaming(slack: FakeSlack, database: Path, question: str) -> dict:
    """A mention asking ``question`` in C1, once its (slow) answer streams: its event."""
    first = mention(slack, f"<@{BOT_USER}> {question}")
    await slack.deliver(slack.callback(first), timeout=60)
    await until(lambda: saved_words(database, 1), timeout=60, what="the first answer to be streaming")
    return first


@pytest.fixture
def serve_bot(tmp_path, slack, fake_llm, make_settings):
    """``serve_bot()``: a ``serve`` process against the fakes, on the SQLite file ``start_bot`` uses."""
    database = Path(make_settings().bot_database)
    return lambda: serving(serve_env(tmp_path, slack, fake_llm, database), tmp_path)


async def test_a_reply_cut_by_a_crash_is_finalised_from_the_saved_text(
    slack, start_bot, fake_llm, serve_bot, make_settings, tmp_path
):
    """Row 5: SIGKILL while a reply shows part of its answer; the next start finishes that message
    from the text the core saved, without reading the thread back from Slack."""
    database = Path(make_settings().bot_database)
    fake_llm.reply(SLOW, delay=0.3)
    async with serve_bot() as proc:
        event = mention(slack, f"<@{BOT_USER}> tell me everything")
        await slack.deliver(slack.callback(event), timeout=60)
        await until(lambda: saved_words(database, 3), timeout=60, what="partial text shown and saved")
        await crash(proc)
    ((state, saved),) = requests_of(database)
    (message,) = slack.bot_messages("C1")
    assert state == "answering" and SLOW.startswith(saved) and saved.endswith(" ")
    # the save is under way before each edit goes out: what the message shows is never more than that
    assert message["text"] == PLACEHOLDER or saved.startswith(message["text"])
    assert "Traceback" not in (tmp_path / "serve.log").read_text()

    mark = len(slack.calls)
    await start_bot()  # recovery runs before the bot takes events
    texts = thread_texts(slack, "C1", event["ts"])
    assert texts == [f"{saved}\n\n_{INTERRUPTED_NOTE}_"]  # the saved text, then the note
    assert INTERRUPTED_NOTE == "(interrupted — ask again)"
    assert [m["ts"] for m in slack.bot_messages("C1")] == [message["ts"]]  # the same message, edited
    after = [c.method for c in slack.calls[mark:]]
    assert "conversations.replies" not in after and "conversations.history" not in after
    assert after.count("chat.update") == 1 and "chat.postMessage" not in after
    assert requests_of(database) == [("partial", saved)]
    assert len(fake_llm.requests) == 1  # a half-shown answer is finished, not asked again


async def test_a_question_queued_when_the_process_dies_is_answered_after_restart(
    slack, start_bot, fake_llm, serve_bot, make_settings, caplog
):
    """Row 4: a second question in the same thread waits behind a slow answer; SIGKILL; the next
    start answers it, once (a redelivery of its event afterwards is dropped)."""
    caplog.set_level(logging.INFO, logger="bot.service")
    database = Path(make_settings().bot_database)
    fake_llm.reply(SLOW, delay=0.3)
    fake_llm.reply("The second answer.")
    async with serve_bot() as proc:
        first = await slow_answer_streaming(slack, database, "first question")
        second = mention(slack, f"<@{BOT_USER}> second question", thread_ts=first["ts"])
        second_body = slack.callback(second)
        await slack.deliver(second_body)
        await until(lambda: len(requests_of(database)) == 2, timeout=30, what="the second question accepted")
        assert requests_of(database)[1] == ("accepted", "")  # queued behind the first answer
        await crash(proc)
    assert len(fake_llm.requests) == 1  # the second question never reached the model
    saved = requests_of(database)[0][1]

    bot = await start_bot()
    texts = await reply_text(slack, "C1", first["ts"], "The second answer.", timeout=30)
    assert texts == [f"{saved}\n\n_{INTERRUPTED_NOTE}_", "The second answer."]
    await slack.deliver(second_body, retry_attempt=1)  # Slack delivers it again after the restart
    await until(lambda: "already handled" in caplog.text, what="the redelivery to be dropped")
    await settled(bot, slack)
    assert thread_texts(slack, "C1", first["ts"]).count("The second answer.") == 1
    assert len(fake_llm.requests) == 2
    assert fake_llm.requests[1]["messages"][-1] == {"role": "user", "content": "Ada: second question"}
    assert [state for state, _ in requests_of(database)] == ["partial", "done"]


async def test_a_shortcut_question_queued_in_a_thread_is_answered_after_a_crash(
    slack, start_bot, fake_llm, serve_bot, make_settings
):
    """A question asked with the message shortcut waits behind an answer streaming in the same
    thread (one answer at a time per thread); SIGKILL; the next start answers it there, once."""
    database = Path(make_settings().bot_database)
    fake_llm.reply(SLOW, delay=0.3)
    fake_llm.reply("It is the deploy log.")
    async with serve_bot() as proc:
        first = await slow_answer_streaming(slack, database, "summarise the incident")
        await slack.deliver(slack.shortcut("C1", first["ts"]), kind="interactive")
        await until(lambda: slack.views, timeout=30, what="the question form")
        (view_id,) = slack.views
        await slack.deliver(slack.submit(view_id, "what is this?"), kind="interactive")
        await until(lambda: len(requests_of(database)) == 2, timeout=30, what="the question accepted")
        assert requests_of(database)[1] == ("accepted", "")  # queued behind the answer in its thread
        await crash(proc)
    assert len(fake_llm.requests) == 1

    bot = await start_bot()
    expected = "<@U1> asked: what is this?\n\nIt is the deploy log."
    texts = await reply_text(slack, "C1", first["ts"], expected, timeout=30)
    await settled(bot, slack)
    assert texts.count(expected) == 1
    assert fake_llm.requests[1]["messages"][-1]["content"].startswith(
        "Ada: what is this?\n\n[message from Ada]\nsummarise the incident\n[end of message]"
    )
    assert [state for state, _ in requests_of(database)] == ["partial", "done"]
