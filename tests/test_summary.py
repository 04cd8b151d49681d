"""Summarised history (``BOT_HISTORY=summary``) through the real path: the service, the HTTP
provider client and router against the fake model server on 127.0.0.1, a real SQLite store; end
to end through ``llama-relay chat`` and through the real Bolt app against the fake Slack.

The fake server refuses (as llama.cpp does) any prompt that does not fit its window, and every
test counts the answer request exactly with the Llama 3 tokenizer."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from bot import summary, tokens
from bot.conversation import LEFT_OUT_NOTE, PART_SUMMARISED_NOTE, SUMMARISED_NOTE, Turn
from bot.runtime import open_service
from bot.service import Request
from tests.fakes.llm import Behaviour, FakeLLM
from tests.fakes.sinks import RecordingSurface
from tests.fakes.slack import BOT_USER
from tests.slack_helpers import mention, reply_text
from tests.test_cli import run
from tests.test_context_window import env_for, questions

pytest_plugins = ("tests.slack_env",)

WINDOW = 2048
MAX_TOKENS = 128
SUMMARY = "Ana and the assistant went through topics 0 to 20 and agreed on the plan."


def history(pairs: int, start: int = 0) -> list[Turn]:
    """``pairs`` questions and answers of about 40 tokens each, every one with its platform id."""
    turns = []
    for i in range(start, start + pairs):
        asked = f"Question {i}: " + f"tell me about topic {i} " * 5
        turns.append(Turn("user", asked, author="Ana", message_id=f"u{i}"))
        turns.append(Turn("assistant", f"Answer {i}: " + f"topic {i} is fine " * 6, message_id=f"a{i}"))
    return turns


def ask(turns: list[Turn], question: str) -> Request:
    return Request("slack", "C1", [*turns, Turn("user", question, author="Ana", message_id=question)],
                   thread="C1:1.0", user_id="U1")


def summary_calls(server: FakeLLM) -> list[dict]:
    return [r for r in server.requests if r["messages"][0]["content"] == summary.PROMPT]


def answers(server: FakeLLM) -> list[dict]:
    return [r for r in server.requests if r["messages"][0]["content"] != summary.PROMPT]


def exact_size(request: dict) -> int:
    """Prompt + max_tokens of a request as sent, counted with the Llama 3 template."""
    contents = [m["content"] for m in request["messages"]]
    return tokens.prompt_tokens(contents) + request["max_tokens"]


@pytest.fixture
def small(make_settings, fake_llm):
    fake_llm.window = WINDOW  # refuses what does not fit, like a llama.cpp server

    def settings(**extra: object):
        return make_settings(openai_context_window=WINDOW, bot_max_tokens=MAX_TOKENS, **extra)

    return settings


async def test_left_out_turns_are_summarised_cached_and_extended(small, fake_llm):
    fake_llm.when_system(summary.PROMPT, Behaviour(text=SUMMARY))
    turns = history(30)
    async with open_service(small(bot_history="summary", bot_replica="r1")) as service:
        first = RecordingSurface()
        out = await service.answer(ask(turns, "What now?"), first)
        assert out.state == "complete" and first.notes == [SUMMARISED_NOTE]

        (call,) = summary_calls(fake_llm)  # one summarising request, then the answer
        assert fake_llm.requests[0] is call and call["max_tokens"] == summary.room(WINDOW) and call["stream"]
        assert exact_size(call) <= WINDOW
        (answer,) = answers(fake_llm)
        system, *kept = answer["messages"]
        assert system["role"] == "system" and system["content"].endswith(summary.HEADER + SUMMARY)
        assert exact_size(answer) <= WINDOW and fake_llm.refused == 0
        # The summary covers exactly the turns the answer leaves out: no gap, no overlap.
        left_out = len(turns) - (len(kept) - 1)
        transcript = call["messages"][1]["content"]
        assert transcript.startswith("Ana: Question 0:")
        assert transcript.endswith(turns[left_out - 1].content()) and left_out > 4
        assert kept[0]["content"] == turns[left_out].content() and kept[-1]["content"] == "Ana: What now?"

        again = RecordingSurface()  # the same turns left out: the stored summary, no second call
        await service.answer(ask(turns, "And then?"), again)
        assert len(summary_calls(fake_llm)) == 1 and again.notes == [SUMMARISED_NOTE]
        assert answers(fake_llm)[-1]["messages"][:-1] == answer["messages"][:-1]

        grown = RecordingSurface()  # two more pairs: within what the call left out ahead, no call
        await service.answer(ask(turns + history(2, start=30), "And now?"), grown)
        assert len(summary_calls(fake_llm)) == 1 and grown.notes == [SUMMARISED_NOTE]
        assert answers(fake_llm)[-1]["messages"][0] == system and exact_size(answers(fake_llm)[-1]) <= WINDOW

        longer = turns + history(12, start=30)  # more left out than it covers: the summary is extended
        fake_llm.when_system(summary.PROMPT, Behaviour(text=SUMMARY + " Then topics 21 to 23."))
        later = RecordingSurface()
        await service.answer(ask(longer, "Last one?"), later)
        assert later.notes == [SUMMARISED_NOTE]
        extension = summary_calls(fake_llm)[-1]["messages"][1]["content"]
        assert len(summary_calls(fake_llm)) == 2
        assert extension.startswith(f"Summary so far:\n{SUMMARY}\n\nMessages that follow it:\n\nAna: Question {left_out // 2}:")
        assert "Question 0:" not in extension  # only the turns left out since
        last = answers(fake_llm)[-1]
        assert last["messages"][0]["content"].endswith(" Then topics 21 to 23.") and exact_size(last) <= WINDOW

        # Summary calls are provider calls in the ledger: they count in usage and daily budgets.
        (total,) = await service.store.usage_totals("user")
        assert (total.key, total.requests) == ("U1", 6)
        shown = service.metrics.render().decode()
        for result, times in (("new", 1), ("reused", 2), ("extended", 1)):
            assert f'relay_history_summaries_total{{replica="r1",result="{result}"}} {times}.0' in shown


async def test_trim_is_the_default_and_makes_no_summary_call(small, fake_llm):
    fake_llm.when_system(summary.PROMPT, Behaviour(text=SUMMARY))
    async with open_service(small()) as service:
        assert service.settings.bot_history == "trim"
        sink = RecordingSurface()
        await service.answer(ask(history(30), "What now?"), sink)
    assert summary_calls(fake_llm) == [] and len(fake_llm.requests) == 1
    assert sink.notes == [LEFT_OUT_NOTE] and exact_size(fake_llm.requests[0]) <= WINDOW


@pytest.mark.parametrize(
    "failure", [Behaviour(status=503, body={"error": {"message": "overloaded"}}), Behaviour(ttft=5.0)],
    ids=["server-error", "no-first-token"],
)
async def test_a_failing_summary_call_still_answers_with_the_trim_note(small, fake_llm, caplog, failure):
    fake_llm.when_system(summary.PROMPT, failure)
    fake_llm.reply("Answered all the same.")
    caplog.set_level(logging.WARNING, logger="bot.summary")
    settings = small(bot_history="summary", bot_first_token_timeout=0.3, bot_replica="r1")
    async with open_service(settings) as service:
        sink = RecordingSurface()
        out = await service.answer(ask(history(30), "What now?"), sink)
        assert await service.store.summary("slack:C1:1.0") is None  # nothing cached
        assert 'relay_history_summaries_total{replica="r1",result="failed"} 1.0' in service.metrics.render().decode()
    assert out.state == "complete" and sink.messages == ["Answered all the same."]
    assert sink.notes == [LEFT_OUT_NOTE]
    assert summary_calls(fake_llm) and exact_size(answers(fake_llm)[-1]) <= WINDOW
    said = [r.getMessage() for r in caplog.records if r.name == "bot.summary"]
    assert len(said) == 1 and said[0].startswith("could not summarise the earlier messages, leaving them out: ")


async def test_a_long_history_needing_too_many_calls_summarises_its_newest_part(small, fake_llm):
    fake_llm.when_system(summary.PROMPT, Behaviour(text=SUMMARY))
    turns = history(180)  # about 14,000 tokens left out: more than MAX_CALLS pieces of a 2,048 window
    async with open_service(small(bot_history="summary")) as service:
        sink = RecordingSurface()
        await service.answer(ask(turns, "What now?"), sink)
    calls = summary_calls(fake_llm)
    assert len(calls) == summary.MAX_CALLS and all(exact_size(c) <= WINDOW for c in calls)
    assert all(c["messages"][1]["content"].startswith("Summary so far:") for c in calls[1:])
    assert "Question 0:" not in calls[0]["messages"][1]["content"]  # the oldest are left out
    assert sink.notes == [PART_SUMMARISED_NOTE] and exact_size(answers(fake_llm)[-1]) <= WINDOW


async def test_chat_in_the_terminal_says_the_earlier_messages_were_summarised(tmp_path):
    """End to end: ``llama-relay chat`` in a subprocess, its history in the SQLite file, notes on stderr."""
    server = FakeLLM("A short answer.", window=1024)
    server.when_system(summary.PROMPT, Behaviour(text=SUMMARY))
    await server.start()
    try:
        env = env_for(server, tmp_path, OPENAI_CONTEXT_WINDOW="1024", BOT_MAX_TOKENS="128", BOT_HISTORY="summary")
        code, out, err = await run(["chat", "--session", "s"], env, tmp_path, stdin=questions(16))
    finally:
        await server.stop()
    assert code == 0, err
    assert out == "A short answer.\n" * 16
    notes = err.splitlines()
    assert notes[-1] == SUMMARISED_NOTE and LEFT_OUT_NOTE not in notes and "Traceback" not in err
    assert server.refused == 0 and all(exact_size(r) <= 1024 for r in server.requests)
    last = answers(server)[-1]["messages"]
    assert last[0]["content"].endswith(summary.HEADER + SUMMARY) and last[-1]["content"].startswith("Question 15:")
    # Fewer summary calls than answers that needed one: the stored summary is reused or extended.
    assert 0 < len(summary_calls(server)) < notes.count(SUMMARISED_NOTE)
    with sqlite3.connect(tmp_path / "bot.db") as db:
        (row,) = db.execute("SELECT text, provider FROM summaries WHERE conversation = 'terminal:s'").fetchall()
    assert row == (SUMMARY, "openai")


async def test_a_long_slack_thread_shows_the_summary_note_in_its_answer(slack, start_bot, fake_llm):
    """End to end through the real Bolt app and the fake Slack: the final message carries the note."""
    fake_llm.window = WINDOW
    fake_llm.when_system(summary.PROMPT, Behaviour(text=SUMMARY))
    fake_llm.reply("Here is the plan.")
    await start_bot(openai_context_window=WINDOW, bot_max_tokens=MAX_TOKENS, bot_history="summary")
    root = slack.say("Let's plan the launch.", user="U2")
    for i in range(40):
        text = f"Point {i}: " + f"we should check item {i} " * 6
        slack.say(text, user=("U1", "U2")[i % 2], thread_ts=root["ts"])
    event = mention(slack, f"<@{BOT_USER}> what now?", thread_ts=root["ts"])
    await slack.deliver(slack.callback(event))

    texts = await reply_text(slack, "C1", root["ts"], "Here is the plan.\n\n_(earlier messages were summarised to fit)_")
    assert len(texts) == 1
    (call,) = summary_calls(fake_llm)
    assert call["messages"][1]["content"].startswith("Grace: Let's plan the launch.\n\nAda: Point 0:")
    (answer,) = answers(fake_llm)
    assert answer["messages"][0]["content"].endswith(summary.HEADER + SUMMARY)
    assert answer["messages"][-1]["content"] == "Ada: what now?" and exact_size(answer) <= WINDOW


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("abc", (3, 3)),  # the same turns: reused
        ("abcde", (3, 3)),  # more turns since: extended with d and e
        ("cde", (1, 1)),  # a and b no longer read (a long thread's start): still covered
        ("xabcd", (4, 3)),  # an older turn read now that it does not cover
        ("aXcd", None),  # b was edited: written anew
        ("ab", None),  # fewer turns: its last is not there
        ("", None),
    ],
)
def test_a_stored_summary_is_used_while_the_turns_it_covers_are_the_same(now, expected):
    assert summary.covered(tuple("abc"), list(now)) == expected


async def test_an_edited_early_message_gets_a_new_summary(small, fake_llm):
    fake_llm.when_system(summary.PROMPT, Behaviour(text=SUMMARY))
    turns = history(30)
    async with open_service(small(bot_history="summary")) as service:
        await service.answer(ask(turns, "What now?"), RecordingSurface())
        edited = [Turn("user", "Question 0: never mind", author="Ana", message_id="u0"), *turns[1:]]
        sink = RecordingSurface()
        await service.answer(ask(edited, "What now?"), sink)
    first, second = (c["messages"][1]["content"] for c in summary_calls(fake_llm))
    assert second.startswith("Ana: Question 0: never mind\n\n") and not first.startswith("Ana: Question 0: never")
    assert sink.notes == [SUMMARISED_NOTE]


async def test_an_early_message_too_long_for_a_summary_call_goes_in_cut_in_the_middle(small, fake_llm):
    fake_llm.when_system(summary.PROMPT, Behaviour(text=SUMMARY))
    log = Turn("user", "Here is the log:\n" + "line of the log\n" * 1500 + "the end", author="Ana", message_id="log")
    async with open_service(small(bot_history="summary")) as service:
        sink = RecordingSurface()
        await service.answer(ask([log, *history(10)], "What now?"), sink)
    (call,) = summary_calls(fake_llm)
    assert exact_size(call) <= WINDOW
    sent = call["messages"][1]["content"]
    assert sent.startswith("Ana: Here is the log:\nline of the log") and " […] " in sent and "the end" in sent
    assert sink.notes == [SUMMARISED_NOTE] and exact_size(answers(fake_llm)[-1]) <= WINDOW
