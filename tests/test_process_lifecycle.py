"""The real ``python -m bot serve`` process: SIGKILL mid-stream, restart, SIGTERM.

The fakes (Discord, the model) live in the test process; the bot is a separate
process configured only through environment variables, as an operator runs it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.discord_harness import wait_for
from tests.fakes.discord import CHANNEL_ID, FakeDiscord
from tests.fakes.llm import FakeLLM


@pytest.fixture
async def discord_fake():
    fake = FakeDiscord()
    await fake.start()
    yield fake
    await fake.stop()


def bot_env(tmp_path: Path, fake: FakeDiscord, llm: FakeLLM, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DISCORD_TOKEN": "fake.token.value",
        "DISCORD_API_URL": fake.api_url,
        "DISCORD_GATEWAY_URL": fake.gateway_url,
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "sk-process-secret",
        "BOT_DATABASE": str(tmp_path / "bot.db"),
        "BOT_OPS_PORT": "0",
        "BOT_EDIT_INTERVAL": "0.2",
        "BOT_LOG_LEVEL": "INFO",
        **extra,
    }


@asynccontextmanager
async def bot_process(env: dict[str, str], cwd: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m bot serve`` in a subprocess; killed on the way out if it is still running."""
    with log.open("ab") as handle:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "serve", env=env, cwd=cwd, stdout=handle, stderr=handle
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def stop_with_sigterm(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 30) == 0  # a clean shutdown exits 0


def reply_states(db: Path) -> list[str]:
    """The state of every request record, oldest first."""
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT state FROM requests ORDER BY id")]


async def connected(fake: FakeDiscord, count: int) -> None:
    await wait_for(lambda: len(fake.identifies) >= count, timeout=30, what=f"gateway connection #{count}")
    fake.ready.set()


async def test_sigkill_mid_stream_then_restart_finalises_the_reply(tmp_path, discord_fake, fake_llm):
    fake, log = discord_fake, tmp_path / "bot.log"
    env = bot_env(tmp_path, fake, fake_llm)
    fake_llm.reply(" ".join(f"word{i}" for i in range(200)), delay=0.1)  # ~20 s: killed long before
    async with bot_process(env, tmp_path, log) as proc:
        await connected(fake, 1)
        question = await fake.say("tell me a long story", mention_bot=True)
        await wait_for(
            lambda: any("word3" in m["content"] for m in fake.bot_messages(CHANNEL_ID)), timeout=30, what="partial text"
        )
        proc.kill()  # SIGKILL: no chance to clean up
        await proc.wait()
    assert reply_states(tmp_path / "bot.db") == ["answering"]
    (partial,) = fake.bot_messages(CHANNEL_ID)
    assert "interrupted" not in partial["content"]

    fake_llm.queue.clear()
    async with bot_process(env, tmp_path, log) as proc:
        await connected(fake, 2)
        await wait_for(
            lambda: "interrupted — ask again" in fake.bot_messages(CHANNEL_ID)[0]["content"],
            timeout=30,
            what="the interrupted note after restart",
        )
        assert reply_states(tmp_path / "bot.db") == ["partial"]
        edited = fake.bot_messages(CHANNEL_ID)[0]["content"]
        assert edited.startswith(partial["content"].split("\n")[0][:20])  # the partial text is kept

        # The gateway delivers the original question again after the restart: no second answer
        # (events are handled in order, so it is settled before the follow-up below is answered).
        await fake.dispatch("MESSAGE_CREATE", question)

        # The conversation is intact: a reply to the interrupted answer carries it as history.
        fake_llm.reply("continuing")
        await fake.say("go on", reply_to=int(fake.bot_messages(CHANNEL_ID)[0]["id"]))
        await wait_for(
            lambda: [m["content"] for m in fake.bot_messages(CHANNEL_ID)][1:] == ["continuing"],
            timeout=30,
            what="the follow-up answer",
        )
        assert len(fake_llm.requests) == 2  # the redelivered question never reached the model
        sent = fake_llm.requests[-1]["messages"]
        assert "tell me a long story" in sent[1]["content"]
        assert sent[2]["role"] == "assistant" and "word3" in sent[2]["content"]
        assert "interrupted" not in sent[2]["content"]
        assert sent[-1]["content"].endswith("go on")
        await stop_with_sigterm(proc)
    text = log.read_text()
    assert "sk-process-secret" not in text and "fake.token.value" not in text
    assert "Traceback" not in text


async def test_sigterm_lets_a_reply_in_flight_finish(tmp_path, discord_fake, fake_llm):
    fake, log = discord_fake, tmp_path / "bot.log"
    answer = " ".join(f"part{i}" for i in range(30))
    fake_llm.reply(answer, delay=0.05)  # ~1.5 s: well inside the grace period
    async with bot_process(bot_env(tmp_path, fake, fake_llm, BOT_SHUTDOWN_GRACE="20"), tmp_path, log) as proc:
        await connected(fake, 1)
        await fake.say("a question", mention_bot=True)
        await wait_for(lambda: fake.bot_messages(CHANNEL_ID), timeout=30, what="the reply to start")
        await stop_with_sigterm(proc)
    (message,) = fake.bot_messages(CHANNEL_ID)
    assert message["content"] == answer
    assert reply_states(tmp_path / "bot.db") == ["done"]


async def test_sigterm_past_the_grace_period_marks_the_reply_interrupted(tmp_path, discord_fake, fake_llm):
    fake, log = discord_fake, tmp_path / "bot.log"
    fake_llm.reply(" ".join(f"slow{i}" for i in range(100)), delay=0.2)  # 20 s
    async with bot_process(bot_env(tmp_path, fake, fake_llm, BOT_SHUTDOWN_GRACE="0.5"), tmp_path, log) as proc:
        await connected(fake, 1)
        await fake.say("a slow question", mention_bot=True)
        await wait_for(
            lambda: any("slow2" in m["content"] for m in fake.bot_messages(CHANNEL_ID)), timeout=30, what="streaming"
        )
        await stop_with_sigterm(proc)
    (message,) = fake.bot_messages(CHANNEL_ID)
    assert "slow2" in message["content"] and "ask again" in message["content"]
    assert reply_states(tmp_path / "bot.db") == ["partial"]
