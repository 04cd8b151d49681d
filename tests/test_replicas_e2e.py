"""Three ``python -m bot serve`` replicas on one PostgreSQL, seen from Slack.

The fake Slack hands each of the replicas' Socket Mode connections (two per
replica) events at random and redelivers every one of them on another
connection, as Slack does when an ack is late.  ``chat.update`` is limited as
on Slack (50 a minute per workspace, a 429 past that).  Mid-stream, the replica
answering a question is SIGKILLed; a fourth replica starts late.

What users must see: every question ends with exactly one reply (one message in
its thread), and that reply is final: the whole answer, or the text shown when
the replica died with the "interrupted" note (finished by a survivor after the
dead replica's lease ran out), or, for a question it had not shown anything
of, an answer from another replica.  No ``chat.update`` is ever refused with a
429: the replicas share the workspace's edit budget.  Waits are bounded polls;
no duration is asserted.
"""

from __future__ import annotations

import asyncio
import os
import random
from contextlib import AsyncExitStack
from pathlib import Path

import asyncpg

from bot.store import open_store
from tests.fakes.slack import BOT_USER, FakeSlack
from tests.slack_helpers import mention, until
from tests.test_process_lifecycle import bot_process

QUESTIONS = 12
CONNECTIONS = 2  # per replica
INTERRUPTED = "interrupted — ask again"


def answer_text(n: int) -> str:
    return " ".join(f"answer{n}-word{i}" for i in range(30))


def env_for(replica: str, slack: FakeSlack, llm_url: str, database: str, tmp: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp),
        "SLACK_BOT_TOKEN": "xoxb-fake",
        "SLACK_APP_TOKEN": "xapp-fake",
        "SLACK_API_URL": slack.api_url,
        "SLACK_SOCKET_CONNECTIONS": str(CONNECTIONS),
        "OPENAI_BASE_URL": llm_url,
        "OPENAI_API_KEY": "sk-replica-secret",
        "BOT_DATABASE": database,
        "BOT_REPLICA": replica,
        "BOT_OPS_PORT": "0",
        "BOT_EDIT_INTERVAL": "0.1",
        "BOT_LOG_LEVEL": "INFO",
        "BOT_PROVIDERS": "openai",
    }


async def answering_owner(database: str) -> str | None:
    """The replica name of one request that is answering with text already shown."""
    con = await asyncpg.connect(database)
    try:
        owner = await con.fetchval(
            "SELECT owner FROM requests WHERE state = 'answering' AND messages <> '[]' AND shown <> '' LIMIT 1"
        )
    finally:
        await con.close()
    return owner.split("/", 1)[0] if owner else None


async def open_requests(database: str) -> int:
    con = await asyncpg.connect(database)
    try:
        return int(await con.fetchval("SELECT count(*) FROM requests WHERE state IN ('accepted', 'answering')"))
    finally:
        await con.close()


async def test_three_replicas_answer_once_survive_a_kill_and_share_the_edit_budget(
    tmp_path, fake_llm, postgres_url
):
    slack = FakeSlack(names={"U1": "Ada"}, seed=7)
    slack.limit("chat.update", 50, 60.0)  # Slack's Tier 3, per workspace
    await slack.start()
    answers = {answer_text(n) for n in range(QUESTIONS)}
    for n in range(QUESTIONS):
        fake_llm.reply(answer_text(n), delay=0.05)  # ~1.5 s each: a kill lands mid-stream
    fake_llm.default_text = answer_text(0)  # a question answered again after the kill
    answers.add(fake_llm.default_text)
    rng = random.Random(7)
    try:
        async with AsyncExitStack() as stack:
            procs = {}
            for name in ("r1", "r2", "r3"):
                env = env_for(name, slack, fake_llm.base_url, postgres_url, tmp_path)
                procs[name] = await stack.enter_async_context(bot_process(env, tmp_path, tmp_path / f"{name}.log"))
            await slack.wait_connections(3 * CONNECTIONS, timeout=60)

            roots = [mention(slack, f"<@{BOT_USER}> question {n}") for n in range(QUESTIONS)]
            bodies = [slack.callback(root) for root in roots]
            for body in bodies:  # each to a random connection, then Slack's retry on another one
                await slack.deliver(body, via="random")
            for body in rng.sample(bodies, len(bodies)):
                await slack.redeliver(body)

            victim = await until_value(lambda: answering_owner(postgres_url), "a replica answering mid-stream")
            procs[victim].kill()
            await procs[victim].wait()
            late = env_for("r4", slack, fake_llm.base_url, postgres_url, tmp_path)
            await stack.enter_async_context(bot_process(late, tmp_path, tmp_path / "r4.log"))
            await slack.wait_connections(3 * CONNECTIONS, timeout=60)  # the dead one's gone, r4's up

            def thread(root: dict) -> list[str]:
                return [m["text"] for m in slack.bot_messages("C1") if m.get("thread_ts") == root["ts"]]

            def final(text: str) -> bool:
                return text.strip() in answers or INTERRUPTED in text

            def settled() -> bool:
                return all(len(thread(r)) == 1 and final(thread(r)[0]) for r in roots)

            await until(settled, what="every question answered or noted", timeout=120)
            await until_value(lambda: _none_open(postgres_url), "no request left open", timeout=60)
            await asyncio.sleep(1.0)  # anything still to come would show now
            assert settled(), {r["ts"]: thread(r) for r in roots}
            notes = [r for r in roots if INTERRUPTED in thread(r)[0]]
            assert notes, "the killed replica had an answer mid-stream; a survivor finished it"

            limited = [c for c in slack.calls if c.method == "chat.update" and c.status == 429]
            assert limited == []  # the workspace's edit budget was shared by every replica
            assert len(slack.called("chat.update")) <= 50 * 3  # three minutes at most: the window held
    finally:
        await slack.stop()
    start_up = (tmp_path / "r4.log").read_text().split("connected in Socket Mode", 1)[0]
    assert "left open" not in start_up  # starting while the others lived, it took nothing of theirs
    for log in tmp_path.glob("r*.log"):
        text = log.read_text()
        assert "Traceback" not in text, log.name
        assert "sk-replica-secret" not in text


async def until_value(probe, what: str, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _none_open(database: str) -> bool:
    return await open_requests(database) == 0


async def test_two_discord_shard_replicas_on_postgresql_finish_each_others_answers(
    make_settings, fake_llm, tmp_path, postgres_url
):
    """Discord: two ``serve`` replicas on one PostgreSQL, one shard each.  The replica running
    the first guild's shard dies mid-answer; the other one, which never received that guild's
    events, finishes the half answer with the note once the lease runs out, and keeps answering
    its own guild."""
    from tests.discord_harness import wait_for
    from tests.fakes.discord import CHANNEL_ID, GUILD_ID, FakeDiscord, shard_of
    from tests.test_process_lifecycle import bot_env

    fake = FakeDiscord(max_concurrency=2)
    await fake.start()
    victim_shard = shard_of(GUILD_ID, 2)
    other_channel = fake.add_guild(1 - victim_shard, 2)
    fake_llm.reply(" ".join(f"word{i}" for i in range(300)), delay=0.1)  # ~30 s: killed long before
    try:
        async with AsyncExitStack() as stack:
            procs = {}
            for shard in (0, 1):
                env = bot_env(
                    tmp_path, fake, fake_llm, DISCORD_SHARD_COUNT="2", DISCORD_SHARDS=str(shard),
                    BOT_DATABASE=postgres_url, BOT_REPLICA=f"shard{shard}",
                )
                procs[shard] = await stack.enter_async_context(bot_process(env, tmp_path, tmp_path / f"d{shard}.log"))
            await wait_for(lambda: fake.session_of(0) and fake.session_of(1), timeout=30, what="both shards")
            await fake.say("tell me a long story", mention_bot=True, channel=CHANNEL_ID)
            await wait_for(
                lambda: any("word3" in m["content"] for m in fake.bot_messages(CHANNEL_ID)),
                timeout=30, what="the half answer",
            )
            procs[victim_shard].kill()
            await procs[victim_shard].wait()

            fake_llm.queue.clear()
            await fake.say("a question on the living shard", mention_bot=True, channel=other_channel)
            await wait_for(
                lambda: [m["content"] for m in fake.bot_messages(other_channel)] == [fake_llm.default_text],
                timeout=30, what="the living shard's answer",
            )
            await wait_for(
                lambda: INTERRUPTED in fake.bot_messages(CHANNEL_ID)[0]["content"],
                timeout=60, what="the survivor to finish the dead replica's half answer",
            )
            (finished,) = fake.bot_messages(CHANNEL_ID)  # finished in place, not posted again
            assert finished["content"].startswith("word0 word1 word2 word3")
            assert await open_requests(postgres_url) == 0
    finally:
        await fake.stop()
    for shard in (0, 1):
        assert "Traceback" not in (tmp_path / f"d{shard}.log").read_text()


async def test_slack_http_mode_behind_a_load_balancer_answers_each_event_once(make_settings, fake_llm, postgres_url):
    """Two HTTP-mode replicas on one PostgreSQL: Slack's first delivery reaches one, its retry
    (same event id) the other, as a load balancer would spread them.  One answer per question."""
    import json

    from adapters.slack import SlackBot
    from bot.runtime import build_router
    from bot.service import RelayService
    from tests.test_fuzz_slack_http import SECRET, post_signed

    slack = FakeSlack(names={"U1": "Ada"})
    await slack.start()
    bots: list[SlackBot] = []
    try:
        for name in ("h1", "h2"):
            settings = make_settings(
                slack_bot_token="xoxb-fake", slack_app_token=None, slack_signing_secret=SECRET,
                slack_api_url=slack.api_url, slack_port=0, bot_database=postgres_url, bot_replica=name,
            )
            service = RelayService(settings, await open_store(postgres_url), build_router(settings))
            bot = SlackBot(service, settings, host="127.0.0.1")
            await bot.start()
            bots.append(bot)
        fake_llm.reply("first answer")
        fake_llm.reply("second answer")
        questions = [mention(slack, f"<@{BOT_USER}> question {n}") for n in range(2)]
        for n, event in enumerate(questions):
            body = json.dumps(slack.callback(event, event_id=f"EvLb{n}"))
            assert await post_signed(bots[n % 2].port, body) == 200  # first delivery
            assert await post_signed(bots[(n + 1) % 2].port, body) == 200  # the retry, elsewhere

        def thread(event: dict) -> list[str]:
            return [m["text"] for m in slack.bot_messages("C1") if m.get("thread_ts") == event["ts"]]

        await until(
            lambda: sorted(t for e in questions for t in thread(e)) == ["first answer", "second answer"],
            what="one answer per question", timeout=30,
        )
        await asyncio.sleep(0.5)
        assert [len(thread(e)) for e in questions] == [1, 1] and len(fake_llm.requests) == 2
    finally:
        for bot in bots:
            await bot.stop(grace=5)
            await bot.service.router.aclose()
            await bot.service.store.close()
        await slack.stop()

