"""The store seen from real ``python -m bot`` processes: locks held elsewhere, a second
``serve`` on the same file, a corrupt file.

As in ``test_process_lifecycle``, the fakes (Discord, the model) live in the test
process and the bot is configured only through its environment.  Timeouts are hang
guards, never measurements.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.discord_harness import wait_for
from tests.fakes.discord import CHANNEL_ID, FakeDiscord
from tests.fakes.llm import FakeLLM
from tests.test_process_lifecycle import bot_env, bot_process, connected, reply_states, stop_with_sigterm

GUARD = 60  # seconds


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    fake = FakeDiscord()
    await fake.start()
    yield fake
    await fake.stop()


async def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=env, cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), GUARD)  # a hang fails here
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_second_serve_on_the_same_file_refuses_and_leaves_the_first_alone(
    tmp_path, discord_fake: FakeDiscord, fake_llm: FakeLLM
):
    fake, db = discord_fake, tmp_path / "bot.db"
    env = bot_env(tmp_path, fake, fake_llm)
    answer = " ".join(f"word{i}" for i in range(60))
    fake_llm.reply(answer, delay=0.15)  # ~9 s: still streaming while the second process starts
    async with bot_process(env, tmp_path, tmp_path / "first.log") as first:
        await connected(fake, 1)
        await fake.say("a long question", mention_bot=True)
        await wait_for(
            lambda: any("word2" in m["content"] for m in fake.bot_messages(CHANNEL_ID)), timeout=30, what="streaming"
        )

        code, out, err = await run_cli(["serve"], env, tmp_path)
        assert code == 2 and out == ""
        (line,) = err.splitlines()
        assert str(db) in line and f"PID {first.pid}" in line
        assert len(fake.identifies) == 1  # the second process never connected to the gateway
        assert reply_states(db) == ["answering"]  # and did not "recover" the live answer

        # One-shot commands still work beside a running serve.
        code, out, _ = await run_cli(["usage"], env, tmp_path)
        assert code == 0 and out.startswith("provider")

        await wait_for(lambda: reply_states(db) == ["done"], timeout=GUARD, what="the first answer to finish")
        assert first.returncode is None
        await stop_with_sigterm(first)
    (message,) = fake.bot_messages(CHANNEL_ID)
    assert message["content"] == answer
    assert (tmp_path / "first.log").read_text().count("Traceback") == 0


async def test_a_question_during_a_long_lock_is_answered_when_it_ends(
    tmp_path, discord_fake: FakeDiscord, fake_llm: FakeLLM
):
    fake, db, log = discord_fake, tmp_path / "bot.db", tmp_path / "bot.log"
    fake_llm.reply("answered after the lock")
    async with bot_process(bot_env(tmp_path, fake, fake_llm), tmp_path, log) as proc:
        await connected(fake, 1)
        holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False, timeout=GUARD)
        try:
            await asyncio.to_thread(holder.execute, "BEGIN IMMEDIATE")  # as `sqlite3 bot.db 'BEGIN IMMEDIATE'`
            await fake.say("a question during a backup", mention_bot=True)
            await asyncio.sleep(7)  # longer than SQLite's own busy timeout (5 s): the store's wait takes over
            assert fake.bot_messages(CHANNEL_ID) == []  # waiting, not answered, not dropped
            assert proc.returncode is None
        finally:
            await asyncio.to_thread(holder.execute, "ROLLBACK")
            holder.close()
        await wait_for(lambda: fake.bot_messages(CHANNEL_ID), timeout=GUARD, what="the answer after the lock")
        assert [m["content"] for m in fake.bot_messages(CHANNEL_ID)] == ["answered after the lock"]
        await stop_with_sigterm(proc)
    text = log.read_text()
    assert text.count("is locked by another connection") == 1
    assert "Traceback" not in text


@pytest.mark.parametrize("command", [["ask", "hello"], ["chat"], ["usage"]])
async def test_a_corrupt_database_stops_a_command_at_once_with_one_line(tmp_path, fake_llm: FakeLLM, command):
    db = tmp_path / "corrupt.db"
    db.write_bytes(b"garbage, not SQLite " * 500)
    env = {
        "PATH": "",
        "HOME": str(tmp_path),
        "OPENAI_BASE_URL": fake_llm.base_url,
        "BOT_DATABASE": str(db),
    }
    code, out, err = await run_cli(command, env, tmp_path)  # exits: no connection thread left running
    assert code == 2 and out == ""
    (line,) = err.splitlines()
    assert str(db) in line and "not a database" in line
    assert fake_llm.requests == []


def _locked(db: Path) -> sqlite3.Connection:
    """Another program (a backup, ``sqlite3``) holding the file's write lock."""
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE IF NOT EXISTS other (x)")
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def _no_room_for_sqlites_files(db: Path) -> None:
    """A folder that refuses SQLite's extra files (its ``-wal`` cannot be created)."""
    Path(f"{db}-wal").mkdir()


@pytest.mark.parametrize("command", [["ask", "hello"], ["chat"], ["serve"]])
@pytest.mark.parametrize("trouble", ["locked", "no room for its files"])
async def test_an_unusable_database_stops_every_command_with_one_line(tmp_path, fake_llm: FakeLLM, command, trouble):
    db = tmp_path / "bot.db"
    holder = _locked(db) if trouble == "locked" else _no_room_for_sqlites_files(db)
    env = {
        "PATH": "",
        "HOME": str(tmp_path),
        "OPENAI_BASE_URL": fake_llm.base_url,
        "BOT_DATABASE": str(db),
        "BOT_DATABASE_WAIT": "1",
        "DISCORD_TOKEN": "fake.token.value",  # serve: a platform to start (it never gets that far)
        "DISCORD_API_URL": "http://127.0.0.1:9/api/v10",
    }
    try:
        code, out, err = await run_cli(command, env, tmp_path)  # exits by itself: no thread left behind
    finally:
        if holder is not None:
            holder.close()
    assert code != 0 and out == ""
    (line,) = err.splitlines()
    assert str(db) in line
    assert ("BOT_DATABASE_WAIT" if trouble == "locked" else "BOT_DATABASE") in line
    assert fake_llm.requests == []
