"""Regressions found in review, driven through the real Bolt stack and the fake Slack."""

from __future__ import annotations

from adapters.slack.events import PLACEHOLDER
from tests.fakes.slack import BOT_USER
from tests.slack_helpers import mention, thread_texts, until

pytest_plugins = ("tests.slack_env",)


async def test_a_failed_final_edit_is_retried_until_the_whole_answer_shows(slack, start_bot, fake_llm):
    answer = " ".join(f"word{i}" for i in range(40)) + " THE END."
    fake_llm.reply(answer, delay=0.02)
    await start_bot()
    original, failed = slack._chat_update, []

    def flaky(params):
        if params.get("text") == answer and not failed:
            failed.append(params)
            return {"ok": False, "error": "internal_error"}
        return original(params)

    slack._chat_update = flaky
    event = mention(slack, f"<@{BOT_USER}> count")
    await slack.deliver(slack.callback(event))
    await until(lambda: (thread_texts(slack, "C1", event["ts"]) or [""])[-1] == answer, what="the whole answer")
    assert failed  # the first try of the final edit did fail


async def test_ask_with_a_question_filling_the_message_still_answers(slack, start_bot, fake_llm):
    fake_llm.reply("Short answer.", delay=0.01)
    await start_bot()
    command = {
        "command": "/ask", "text": "日本語の質問" * 200, "user_id": "U1", "channel_id": "C7",
        "team_id": "T1", "trigger_id": "trig-long", "response_url": f"{slack.api_url}respond",
    }
    await slack.deliver(command, kind="slash_commands")
    await until(lambda: any("Short answer." in t for t in thread_texts(slack, "C7", None)), what="the answer")
    texts = thread_texts(slack, "C7", None)
    assert not any(PLACEHOLDER in t for t in texts)
    assert all(len(t.encode()) <= 4000 for t in texts)
