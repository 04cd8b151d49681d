"""Kill ``python -m bot serve`` at random moments, restart it, and count what users see.

Each run asks several questions at once (two conversations, two questions
queued in each), SIGKILLs the bot at a moment drawn from the run's seed (before
the first answer started, mid-stream, between the queued answers, or after
all of them), restarts it on the same database and waits.  Every accepted
question must then show exactly one reply, and that reply is final: the whole
answer, or the text shown so far with a note saying it was interrupted or not
answered.  No placeholder or half answer without a note is left, and the store
has no request left open.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import pytest

from adapters.slack.events import PLACEHOLDER
from tests.discord_harness import wait_for
from tests.fakes.discord import CHANNEL_ID
from tests.fakes.slack import BOT_USER
from tests.slack_helpers import until
from tests.test_process_lifecycle import bot_env, bot_process, connected, discord_fake  # noqa: F401

pytest_plugins = ("tests.slack_env",)

RUNS = 6
NOTES = ("interrupted — ask again", "restarted before I could answer")


def answer_text(n: int) -> str:
    return " ".join(f"answer{n}-word{i}" for i in range(12))


def open_requests(db: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT id, state FROM requests WHERE state IN ('accepted', 'answering')"))


def is_final(content: str, answers: set[str]) -> bool:
    """The whole answer, or whatever was shown with a note saying why it stopped."""
    return content.strip() in answers or any(note in content for note in NOTES)


def queue_answers(llm, count: int) -> set[str]:  # type: ignore[no-untyped-def]
    texts = {answer_text(n) for n in range(count)}
    for n in range(count):
        llm.reply(answer_text(n), delay=0.08)  # ~1 s each: a kill often lands mid-stream
    llm.default_text = answer_text(99)  # what questions answered after the restart get
    return texts | {answer_text(99)}


@pytest.mark.parametrize("seed", range(RUNS))
async def test_discord_every_accepted_question_ends_answered_or_noted_once(
    seed, tmp_path, discord_fake, fake_llm  # noqa: F811
):
    fake, log, rng = discord_fake, tmp_path / "bot.log", random.Random(seed)
    env = bot_env(tmp_path, fake, fake_llm, BOT_EDIT_INTERVAL="0.1")
    answers = queue_answers(fake_llm, 4)
    async with bot_process(env, tmp_path, log) as proc:
        await connected(fake, 1)
        first = await fake.say("question one", mention_bot=True)
        second = await fake.say("question two", mention_bot=True)
        # replies to the first two: queued behind them in the same reply chains
        queued = [
            await fake.say("and then?", mention_bot=True, reply_to=int(first["id"])),
            await fake.say("and after that?", mention_bot=True, reply_to=int(second["id"])),
        ]
        await asyncio.sleep(rng.uniform(0.05, 3.0))
        proc.kill()  # SIGKILL: no chance to clean up
        await proc.wait()
    questions = [first, second, *queued]

    async with bot_process(env, tmp_path, log) as proc:
        await connected(fake, 2)

        def replies_to(question: dict) -> list[dict]:
            return [
                m
                for m in fake.bot_messages(CHANNEL_ID)
                if (m.get("message_reference") or {}).get("message_id") == question["id"]
            ]

        def settled() -> bool:
            return all(
                len(replies_to(q)) == 1 and is_final(replies_to(q)[0]["content"], answers) for q in questions
            )

        await wait_for(settled, timeout=60, what="every question answered or noted")
        await wait_for(lambda: not open_requests(tmp_path / "bot.db"), timeout=30, what="no request left open")
        await asyncio.sleep(0.5)  # nothing more arrives afterwards
        assert settled(), [m["content"] for m in fake.bot_messages(CHANNEL_ID)]
        assert len(fake.bot_messages(CHANNEL_ID)) == len(questions)
        # no Stop button left on any of them: finished or noted, a reply is not streaming any more
        assert not [m["id"] for m in fake.bot_messages(CHANNEL_ID) if any(
            c["custom_id"].startswith("relay:stop:") for row in m.get("components") or [] for c in row["components"]
        )]
        proc.kill()
        await proc.wait()
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("seed", range(RUNS))
async def test_slack_every_accepted_question_ends_answered_or_noted_once(
    seed, tmp_path, slack, fake_llm
):
    from tests.slack_helpers import mention

    rng, log = random.Random(seed), tmp_path / "bot.log"
    env = {
        "PATH": str(Path(__import__("sys").executable).parent),
        "HOME": str(tmp_path),
        "SLACK_BOT_TOKEN": "xoxb-fake",
        "SLACK_APP_TOKEN": "xapp-fake",
        "SLACK_API_URL": slack.api_url,
        "OPENAI_BASE_URL": fake_llm.base_url,
        "OPENAI_API_KEY": "sk-process-secret",
        "BOT_DATABASE": str(tmp_path / "bot.db"),
        "BOT_OPS_PORT": "0",
        "BOT_EDIT_INTERVAL": "0.1",
        "BOT_LOG_LEVEL": "INFO",
        "BOT_PROVIDERS": "openai",
    }
    answers = queue_answers(fake_llm, 4)
    async with bot_process(env, tmp_path, log) as proc:
        await until(lambda: slack._sockets, what="the Socket Mode connection", timeout=30)
        roots = [mention(slack, f"<@{BOT_USER}> question {n}") for n in range(2)]
        for root in roots:
            await slack.deliver(slack.callback(root))
        for n, root in enumerate(roots):  # queued behind the first answer in each thread
            follow = mention(slack, f"<@{BOT_USER}> and then {n}?", thread_ts=root["ts"])
            await slack.deliver(slack.callback(follow))
        await asyncio.sleep(rng.uniform(0.05, 3.0))
        proc.kill()
        await proc.wait()

    async with bot_process(env, tmp_path, log) as proc:
        await until(
            lambda: len(slack.called("apps.connections.open")) >= 2 and slack._sockets,
            what="the second connection",
            timeout=30,
        )

        def thread(root: dict) -> list[str]:
            return [m["text"] for m in slack.bot_messages("C1") if m.get("thread_ts") == root["ts"]]

        def settled() -> bool:
            return all(
                len(thread(r)) == 2 and all(t != PLACEHOLDER and is_final(t, answers) for t in thread(r))
                for r in roots
            )

        await until(settled, what="every question answered or noted", timeout=60)
        await until(lambda: not open_requests(tmp_path / "bot.db"), what="no request left open", timeout=30)
        await asyncio.sleep(0.5)
        assert settled(), {r["ts"]: thread(r) for r in roots}
        proc.kill()
        await proc.wait()
    assert "Traceback" not in log.read_text()
