"""Discord sharding: DISCORD_SHARD_COUNT / DISCORD_SHARDS, real discord.py clients against the fake Discord.

Two ``run``s in one test process stand for two bot processes (each on its own
SQLite file, as two processes would be): Discord sends each guild's events to
one shard, so each question is answered once, by the process that runs it.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest

import adapters.discord as adapter
from adapters.discord.shards import IDENTIFY_WINDOW, ShardPlan, identify_at, parse_shard_ids, shard_plan
from bot.errors import ConfigError
from bot.runtime import open_service
from bot.settings import load_settings
from tests.discord_harness import settle, start_bot, stop_bot, wait_for
from tests.fakes.discord import CHANNEL_ID, DM_CHANNEL_ID, GUILD_ID, FakeDiscord, shard_of
from tests.test_process_lifecycle import bot_env, bot_process, stop_with_sigterm

ANSWER = "Hello from the fake model."
COMMANDS = r"/applications/\d+/commands"


def answered_by(fake_llm, question: str) -> list[str]:
    """The system prompts of the model requests that carried ``question`` (one per answer)."""
    return [
        r["messages"][0]["content"]
        for r in fake_llm.requests
        if question in str(r["messages"][-1]["content"])
    ]


def fake_settings(make_settings, fake: FakeDiscord, **overrides):
    urls = {"discord_api_url": fake.api_url, "discord_gateway_url": fake.gateway_url}
    return make_settings(discord_token="fake.token.value", **urls, **overrides)


def bot_texts(fake: FakeDiscord, channel: int) -> list[str]:
    return [m["content"] for m in fake.bot_messages(channel)]


async def test_two_processes_answer_their_own_shards_once(make_settings, fake_llm, tmp_path):
    fake = FakeDiscord(max_concurrency=2)
    await fake.start()
    # the main guild is on one shard of 2; a second guild on the other
    home = shard_of(GUILD_ID, 2)
    other_channel = fake.add_guild(1 - home, 2)
    channel_on = {home: CHANNEL_ID, 1 - home: other_channel}
    bots = []
    try:
        # the process without shard 0 first: it leaves the slash commands alone
        one = dict(discord_shards="1", bot_database=tmp_path / "one.db", bot_system_prompt="process one")
        bots.append(await start_bot(make_settings, fake, discord_shard_count=2, **one))
        assert fake.find("PUT", COMMANDS) == []
        zero = dict(discord_shards="0", bot_database=tmp_path / "zero.db", bot_system_prompt="process zero")
        bots.append(await start_bot(make_settings, fake, discord_shard_count=2, **zero))
        assert len(fake.find("PUT", COMMANDS)) == 1  # synced once, by the process with shard 0
        assert [(s.shard, s.count) for s in fake.sessions] == [(1, 2), (0, 2)]
        assert len(fake.find("GET", "/gateway/bot")) == 2

        for shard in (0, 1):
            await fake.say(f"question for shard {shard}", mention_bot=True, channel=channel_on[shard])
        await fake.say("a question in a DM", dm=True)
        for channel in (CHANNEL_ID, other_channel, DM_CHANNEL_ID):
            await wait_for(lambda c=channel: bot_texts(fake, c) == [ANSWER], what=f"the answer in {channel}")
        for bot in bots:
            await wait_for(lambda b=bot: not b.service.tasks, what="the answers to be settled")

        assert answered_by(fake_llm, "question for shard 0") == ["process zero"]
        assert answered_by(fake_llm, "question for shard 1") == ["process one"]
        assert answered_by(fake_llm, "a question in a DM") == ["process zero"]  # DMs go to shard 0
        for channel in (CHANNEL_ID, other_channel, DM_CHANNEL_ID):
            assert bot_texts(fake, channel) == [ANSWER]
            assert len(fake.find("POST", rf"/channels/{channel}/messages")) == 1
        # each guild's events went on its own shard's session only, DMs (no guild) on shard 0
        expected = {home: {str(GUILD_ID)}, 1 - home: {str(fake.guilds[1])}}
        expected[0].add(None)
        for shard in (0, 1):
            events = fake.session_of(shard).events
            assert {e["d"].get("guild_id") for e in events if e["t"] == "MESSAGE_CREATE"} == expected[shard]
        assert all(bot.service.health["discord"] for bot in bots)
    finally:
        for bot in reversed(bots):
            await stop_bot(bot)
        await fake.stop()
        await settle()


async def test_two_serve_processes_split_the_shards(make_settings, fake_llm, tmp_path):
    """The same through two real ``python -m bot serve`` processes configured by environment only."""
    fake = FakeDiscord(max_concurrency=2)
    await fake.start()
    other_channel = fake.add_guild(1 - shard_of(GUILD_ID, 2), 2)
    channel_on = {shard_of(GUILD_ID, 2): CHANNEL_ID, 1 - shard_of(GUILD_ID, 2): other_channel}
    try:
        async with AsyncExitStack() as stack:
            processes = []
            for shard in (0, 1):
                env = bot_env(
                    tmp_path, fake, fake_llm, DISCORD_SHARD_COUNT="2", DISCORD_SHARDS=str(shard),
                    BOT_DATABASE=str(tmp_path / f"shard{shard}.db"), BOT_SYSTEM_PROMPT=f"process {shard}",
                )
                log = tmp_path / f"shard{shard}.log"
                processes.append(await stack.enter_async_context(bot_process(env, tmp_path, log)))
            await wait_for(lambda: fake.session_of(0) and fake.session_of(1), timeout=30, what="both shards")
            for shard in (0, 1):
                await fake.say(f"question for shard {shard}", mention_bot=True, channel=channel_on[shard])
            for channel in channel_on.values():
                await wait_for(lambda c=channel: bot_texts(fake, c) == [ANSWER], timeout=30, what="answers")
            assert answered_by(fake_llm, "question for shard 0") == ["process 0"]
            assert answered_by(fake_llm, "question for shard 1") == ["process 1"]
            assert len(fake.find("PUT", COMMANDS)) == 1
            for proc in processes:
                await stop_with_sigterm(proc)
        for shard in (0, 1):
            assert "Traceback" not in (tmp_path / f"shard{shard}.log").read_text()
    finally:
        await fake.stop()


async def test_shards_of_one_bucket_identify_a_window_apart(make_settings, fake_llm):
    fake = FakeDiscord(max_concurrency=1)
    await fake.start()
    services = []

    async def keep(service, _fake) -> None:
        services.append(service)

    starting = asyncio.create_task(start_bot(make_settings, fake, keep, discord_shard_count=2))
    try:
        await wait_for(lambda: fake.session_of(0) is not None, what="shard 0")
        await asyncio.sleep(1.0)  # shard 0 is ready by now; shard 1 waits for its turn
        assert fake.session_of(1) is None and services[0].health["discord"] is False
        bot = await starting  # healthy once both shards are ready
        gap = fake.session_of(1).identified_at - fake.session_of(0).identified_at
        assert gap >= IDENTIFY_WINDOW - 0.1
        assert [i["shard"] for i in fake.identifies] == [[0, 2], [1, 2]]
        await stop_bot(bot)
    finally:
        if not starting.done():
            starting.cancel()
        await fake.stop()
        await settle()


async def test_a_process_waits_for_its_first_shards_turn(make_settings, fake_llm):
    """Shard 1 of 2 with max_concurrency 1 is in the second 5-second window, whichever process runs it."""
    fake = FakeDiscord(max_concurrency=1)
    await fake.start()
    try:
        bot = await start_bot(make_settings, fake, discord_shard_count=2, discord_shards="1")
        asked = fake.find("GET", "/gateway/bot")[0].at
        assert fake.session_of(1).identified_at - asked >= IDENTIFY_WINDOW - 0.1
        assert fake.session_of(0) is None
        await stop_bot(bot)
    finally:
        await fake.stop()
        await settle()


async def test_stopping_while_waiting_for_the_first_turn_ends_at_once(make_settings, fake_llm):
    fake = FakeDiscord(max_concurrency=1)
    await fake.start()
    settings = fake_settings(make_settings, fake, discord_shard_count=2, discord_shards="1")
    try:
        async with open_service(settings) as service:
            stop = asyncio.Event()
            serving = asyncio.create_task(adapter.run(service, settings, stop))
            await wait_for(lambda: fake.find("GET", "/gateway/bot"), what="the pacing to begin")
            stop.set()
            await asyncio.wait_for(serving, timeout=2)  # not the 5 s its turn was
        assert fake.identifies == [] and service.health["discord"] is False
    finally:
        await fake.stop()
        await settle()


async def test_unsharded_is_one_plain_connection(make_settings, fake_llm):
    fake = FakeDiscord()
    await fake.start()
    try:
        bot = await start_bot(make_settings, fake)
        assert fake.find("GET", "/gateway/bot") == []
        assert "shard" not in fake.identifies[0]
        assert len(fake.find("PUT", COMMANDS)) == 1
        await stop_bot(bot)
    finally:
        await fake.stop()
        await settle()


async def test_a_bad_shard_setting_stops_before_any_call(make_settings, fake_llm):
    fake = FakeDiscord()
    await fake.start()
    settings = fake_settings(make_settings, fake, discord_shard_count=2, discord_shards="2")
    try:
        async with open_service(settings) as service:
            with pytest.raises(ConfigError, match="^DISCORD_SHARDS: shard 2 does not exist"):
                await adapter.run(service, settings, asyncio.Event())
        assert fake.calls == []
    finally:
        await fake.stop()


# -- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "count", "ids"),
    [("0-3", 8, (0, 1, 2, 3)), ("4,5", 8, (4, 5)), ("0-1,4", 8, (0, 1, 4)), (" 6 - 7 , 0 ", 8, (0, 6, 7)),
     ("1,1,0-1", 2, (0, 1))],
)
def test_shard_ids_parse(text, count, ids):
    assert parse_shard_ids(text, count) == ids


@pytest.mark.parametrize(
    ("text", "count", "says"),
    [
        ("4", 4, "shard 4 does not exist: DISCORD_SHARD_COUNT=4 means shards 0-3"),
        ("0-4", 4, "shard 4 does not exist"),
        ("3-1", 4, "'3-1' runs backwards"),
        ("a", 4, "'a' is not a shard id or range"),
        ("1-", 4, "'1-' is not a shard id or range"),
        ("-1", 4, "'-1' is not a shard id or range"),
        (",", 4, "no shard given"),
    ],
)
def test_bad_shard_ids_are_one_line_naming_the_variable(text, count, says):
    with pytest.raises(ConfigError) as info:
        parse_shard_ids(text, count)
    message = str(info.value)
    assert message.startswith("DISCORD_SHARDS: ") and says in message and "\n" not in message


def test_shard_plan_from_settings(monkeypatch):
    assert shard_plan(load_settings(_env_file=None)) is None  # the default: no sharding
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "3")
    plan = shard_plan(load_settings(_env_file=None))
    assert plan == ShardPlan(3, (0, 1, 2)) and plan.syncs_commands  # count alone: every shard
    monkeypatch.setenv("DISCORD_SHARDS", "1-2")
    plan = shard_plan(load_settings(_env_file=None))
    assert plan == ShardPlan(3, (1, 2)) and not plan.syncs_commands


def test_shards_without_a_count_is_an_error(monkeypatch):
    monkeypatch.setenv("DISCORD_SHARDS", "0-1")
    with pytest.raises(ConfigError, match="^DISCORD_SHARDS: needs DISCORD_SHARD_COUNT"):
        shard_plan(load_settings(_env_file=None))


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_a_bad_shard_count_is_one_line_naming_it(monkeypatch, value):
    monkeypatch.setenv("DISCORD_SHARD_COUNT", value)
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    assert str(info.value).startswith("DISCORD_SHARD_COUNT: ") and "\n" not in str(info.value)


def test_identify_turns_follow_the_buckets():
    assert [identify_at(s, 1) for s in range(3)] == [0.0, 5.0, 10.0]
    assert [identify_at(s, 4) for s in (0, 3, 4, 7, 8)] == [0.0, 0.0, 5.0, 5.0, 10.0]
