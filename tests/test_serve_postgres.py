"""The real ``python -m bot serve`` on a PostgreSQL ``BOT_DATABASE``: answers, a SIGKILL
mid-stream settled by the next start, a redelivered event not answered twice, and a log
that names the database without its password."""

from __future__ import annotations

import asyncpg

from tests.discord_harness import wait_for
from tests.fakes.discord import CHANNEL_ID
from tests.pg import PostgresServer
from tests.test_process_lifecycle import (  # noqa: F401  (discord_fake: a fixture)
    bot_env,
    bot_process,
    connected,
    discord_fake,
    stop_with_sigterm,
)


async def request_states(url: str) -> list[str]:
    con = await asyncpg.connect(url)
    try:
        return [r["state"] for r in await con.fetch("SELECT state FROM requests ORDER BY id")]
    finally:
        await con.close()


async def test_serve_on_postgresql_survives_a_sigkill_mid_stream(
    tmp_path, discord_fake, fake_llm, postgres_server: PostgresServer, postgres_url  # noqa: F811
):
    fake, log = discord_fake, tmp_path / "bot.log"
    env = bot_env(tmp_path, fake, fake_llm, BOT_DATABASE=postgres_url)
    fake_llm.reply(" ".join(f"word{i}" for i in range(200)), delay=0.1)  # ~20 s: killed long before
    async with bot_process(env, tmp_path, log) as proc:
        await connected(fake, 1)
        question = await fake.say("tell me a long story", mention_bot=True)
        await wait_for(
            lambda: any("word3" in m["content"] for m in fake.bot_messages(CHANNEL_ID)), timeout=30, what="partial text"
        )
        proc.kill()
        await proc.wait()
    assert await request_states(postgres_url) == ["answering"]

    fake_llm.queue.clear()
    fake_llm.reply("the second answer")
    async with bot_process(env, tmp_path, log) as proc:
        await connected(fake, 2)
        await wait_for(
            lambda: "interrupted — ask again" in fake.bot_messages(CHANNEL_ID)[0]["content"],
            timeout=30,
            what="the interrupted note after restart",
        )
        await fake.dispatch("MESSAGE_CREATE", question)  # claimed in PostgreSQL before the crash: not again
        await fake.say("a new question", mention_bot=True)
        await wait_for(  # (its first text may show before the rest is edited in)
            lambda: [m["content"] for m in fake.bot_messages(CHANNEL_ID)][1:] == ["the second answer"],
            timeout=30,
            what="the second answer",
        )
        assert len(fake_llm.requests) == 2  # the redelivered question never reached the model
        await stop_with_sigterm(proc)
    assert await request_states(postgres_url) == ["partial", "done"]
    assert not list(tmp_path.glob("*.db"))  # nothing went to a SQLite file

    text = log.read_text()
    assert f"(database postgresql://relay:***@127.0.0.1:{postgres_server.port}/" in text
    assert postgres_server.password not in text
    assert "Traceback" not in text
