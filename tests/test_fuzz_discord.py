"""Bad input, Discord: hostile and malformed gateway events through the real discord.py client.

One bot (``adapters.discord.run`` against the fake Discord) serves every
example of a test.  Each example's event goes over the fake gateway, then a
direct message acts as a barrier: the gateway delivers in order and
``on_message`` spawns its answer before it returns, so once the barrier is
answered and the service has no task left, the example is fully handled.
Checks per example: nothing of ours logged an error or a traceback, at most
one model request (plus the barrier's), a bounded number of REST calls, no
empty or "thinking" message left.  Afterwards the bot still answers and the
reopened store has no half-done reply and still dedupes.  The pure
functions (``to_turns``, ``decide``, ``thread_name``, ``question_text``) get
the same values directly.
"""

from __future__ import annotations

import copy
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from adapters.discord import format as fmt
from adapters.discord.conversations import thread_name
from adapters.discord.events import MessageFacts, Policy, decide
from tests.discord_harness import Running, running_bot, wait_for
from tests.fakes.discord import (
    ALICE,
    BOB,
    BOT_ID,
    CHANNEL_ID,
    DM_CHANNEL_ID,
    GUILD_ID,
    OTHER_BOT,
)
from tests.fakes.discord_payloads import component_interaction, interaction, message, now_iso, reaction_add, snowflake
from tests.fuzz_support import NASTY_TEXT, SPECIAL_TOKENS, WRONG, LogWatch, check_store

MAX_CALLS_PER_EVENT = 20  # typing, post, edits, a history read, the barrier's own calls
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
MEGABYTE = ("lorem ipsum dolor sit amet " * 40_000)[:1_000_000]
#: fields discord.py reads from MESSAGE_CREATE; dropping or retyping them is "malformed"
FIELDS = [
    "id",
    "channel_id",
    "author",
    "content",
    "timestamp",
    "mentions",
    "attachments",
    "embeds",
    "type",
    "flags",
    "member",
    "message_reference",
    "referenced_message",
    "webhook_id",
    "sticker_items",
]
TYPES = [0, 0, 0, 19, 7, 6, 18, 20, 21, 46, 999]  # default, reply, join, pin, thread created, ...


@st.composite
def gateway_message(draw: st.DrawFn) -> dict[str, Any]:
    """A MESSAGE_CREATE payload: hostile content, odd but valid fields, sometimes malformed ones."""
    where = draw(st.sampled_from(["channel", "channel", "dm", "unknown"]))
    author = draw(st.sampled_from([ALICE, ALICE, BOB, OTHER_BOT, BOT_ID]))
    if where == "dm":
        channel: dict[str, Any] = {"id": str(DM_CHANNEL_ID), "type": 1}
    elif where == "unknown":
        channel = {"id": str(snowflake()), "type": 0, "guild_id": str(GUILD_ID)}  # not in the cache
    else:
        channel = {"id": str(CHANNEL_ID), "type": 0, "guild_id": str(GUILD_ID)}
    prefix = draw(st.sampled_from([f"<@{BOT_ID}> "] * 3 + [f"<@!{BOT_ID}>", "", f"<@{BOT_ID}"]))
    payload = message(channel, author, prefix + draw(NASTY_TEXT))
    payload["type"] = draw(st.sampled_from(TYPES))
    if draw(st.booleans()):
        ref = draw(st.sampled_from([str(snowflake()), "0", "18446744073709551615"]))
        payload["message_reference"] = {"message_id": ref, "channel_id": channel["id"]}
        payload["referenced_message"] = None
    if draw(st.booleans()):
        payload["attachments"] = [
            {
                "id": str(snowflake()),
                "filename": "x.png",
                "size": 1,
                "url": "http://127.0.0.1/x",
                "proxy_url": "",
            }
        ]
    if draw(st.booleans()):
        payload["mentions"] = payload["mentions"] + [
            {"id": str(snowflake()), "username": draw(NASTY_TEXT), "discriminator": "0", "avatar": None}
        ]
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=2, unique=True)):
        if draw(st.booleans()):
            payload.pop(field, None)
        else:
            payload[field] = draw(WRONG)
    return payload


@pytest.fixture(params=["reply", "thread"])
async def fuzz_bot(request, make_settings, fake_llm) -> AsyncIterator[tuple[Running, LogWatch]]:
    """One bot for all examples (answers as replies, or in new threads); afterwards it must
    still answer, and its store must be sound."""
    # the barrier answers in one DM channel every example: no edit pacing to wait for
    async with running_bot(
        make_settings, discord_edits_per_minute=60_000, discord_reply_mode=request.param
    ) as bot:
        with LogWatch() as watch:
            yield bot, watch
            fake_llm.reply("Still here.")
            await bot.fake.say("are you alive?", mention_bot=True)
            await wait_for(lambda: "Still here." in all_texts(bot), what="the answer after the fuzz")
            assert not bot.task.done()  # the gateway connection is still up
            assert watch.ours(0) == []
    await check_store(make_settings().bot_database, "discord", 1)


def all_texts(bot: Running) -> list[str]:
    return [m["content"] for cid in list(bot.fake.messages) for m in bot.fake.bot_messages(cid)]


def last_text(bot: Running, channel: int) -> str:
    messages = bot.fake.bot_messages(channel)
    return messages[-1]["content"] if messages else ""


async def barrier(bot: Running) -> None:
    """Wait until every event sent so far is handled (see the module docstring)."""
    before = len(bot.fake.bot_messages(DM_CHANNEL_ID))
    await bot.fake.say("barrier", dm=True)
    await wait_for(
        lambda: len(bot.fake.bot_messages(DM_CHANNEL_ID)) > before and not bot.service.tasks,
        what="the barrier to be answered",
    )
    await wait_for(lambda: not bot.service.tasks, what="no reply task left")


def leftovers(bot: Running) -> list[str]:
    """Bot messages left empty or as a placeholder, anywhere."""
    return [
        f"{cid}/{m['id']}: {m['content'][:40]!r}"
        for cid in bot.fake.messages
        for m in bot.fake.bot_messages(cid)
        if not m["content"].strip() or m["content"].strip().lower().startswith(("thinking", "…"))
    ]


# -- pure functions -----------------------------------------------------------------------------


@given(NASTY_TEXT)
@settings(max_examples=200, deadline=None)
def test_thread_name_and_question_text_take_any_text(text):
    name = thread_name(text)
    assert 1 <= len(name) <= 100 and "\n" not in name
    question = fmt.question_text(text, BOT_ID, {ALICE: "Alice"})
    assert isinstance(question, str)


ids = st.integers(min_value=0, max_value=2**64 - 1)
policies = st.builds(Policy, allow_bots=st.booleans())
facts = st.builds(
    MessageFacts,
    author_id=ids,
    author_is_bot=st.booleans(),
    is_own=st.booleans(),
    answerable_type=st.booleans(),
    guild_id=st.one_of(st.none(), ids),
    channel_id=ids,
    parent_id=st.one_of(st.none(), ids),
    in_own_thread=st.booleans(),
    mentions_bot=st.booleans(),
    replies_to_bot=st.booleans(),
    role_ids=st.frozensets(ids, max_size=3),
)


@given(facts, policies)
@settings(max_examples=300, deadline=None)
def test_decide_never_answers_itself_bots_or_strangers(fact, policy):
    trigger = decide(fact, policy)
    if fact.is_own or not fact.answerable_type or (fact.author_is_bot and not policy.allow_bots):
        assert trigger is None
    if trigger is not None and fact.guild_id is not None:
        assert fact.in_own_thread or fact.mentions_bot or fact.replies_to_bot


# -- the real discord.py client -----------------------------------------------------------------


@given(payload=gateway_message(), twice=st.booleans())
@FUZZ
async def test_malformed_messages_through_the_gateway(fuzz_bot, fake_llm, payload, twice):
    bot, watch = fuzz_bot
    mark, calls, asked = len(watch.bad), len(bot.fake.calls), len(fake_llm.requests)
    payload = copy.deepcopy(payload)
    await bot.fake.dispatch("MESSAGE_CREATE", payload)
    if twice:  # a replay (after a resume): answered once at most
        await bot.fake.dispatch("MESSAGE_CREATE", payload)
    await barrier(bot)
    assert watch.ours(mark) == []
    assert not bot.task.done()
    answered = len(fake_llm.requests) - asked - 1  # the barrier asked once
    assert 0 <= answered <= 1
    event("answered" if answered else "ignored or noted")
    assert len(bot.fake.calls) - calls <= MAX_CALLS_PER_EVENT
    assert leftovers(bot) == []


@given(question=NASTY_TEXT, name=st.sampled_from(["ask", "ask", "ask", "nope"]), twice=st.booleans())
@example(question=MEGABYTE, name="ask", twice=False)
@example(question=SPECIAL_TOKENS[2], name="ask", twice=True)
@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "15")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
async def test_hostile_ask_questions(fuzz_bot, fake_llm, question, name, twice):
    bot, watch = fuzz_bot
    mark, asked = len(watch.bad), len(fake_llm.requests)
    payload = interaction(name, {"question": question}, bot.fake.channels[CHANNEL_ID], ALICE, None)
    await bot.fake.dispatch("INTERACTION_CREATE", payload)
    if twice:
        await bot.fake.dispatch("INTERACTION_CREATE", payload)
    await barrier(bot)
    token = payload["token"]
    if name == "ask":  # /ask defers before it spawns the answer: wait for the answer itself
        await wait_for(
            lambda: bot.fake.interaction_messages(token) and not bot.service.tasks,
            what="the deferred 'thinking…' to end in an answer or a note",
        )
    assert watch.ours(mark) == []
    answered = len(fake_llm.requests) - asked - 1
    texts = bot.fake.interaction_messages(token)
    if name != "ask":
        assert answered == 0 and texts == []
        return
    assert answered <= 1
    assert texts[-1].strip()
    for request in fake_llm.requests[asked:]:
        assert all(not "\ud800" <= c <= "\udfff" for m in request["messages"] for c in m["content"])


def answer_to(bot: Running, question: dict[str, Any]) -> list[str]:
    """Texts of the bot's messages that reply to ``question``."""
    return [
        m["content"]
        for m in bot.fake.bot_messages(int(question["channel_id"]))
        if (m.get("message_reference") or {}).get("message_id") == question["id"]
    ]


async def test_the_bot_survives_hostile_messages_and_its_store_is_intact(make_settings, fake_llm):
    """Explicit worst cases in one burst; then the same bot answers and its store is sound."""
    async with running_bot(make_settings, discord_edits_per_minute=60_000) as bot:
        with LogWatch() as watch:
            say = bot.fake.say
            special = await say(SPECIAL_TOKENS[2], mention_bot=True, dispatch=False)
            huge = await say(MEGABYTE, mention_bot=True, dispatch=False)
            control = await say("\x00\x07\x1b bell", mention_bot=True, dispatch=False)
            empty = await say("", mention_bot=True, dispatch=False)
            no_author = {
                k: v for k, v in (await say("hi", mention_bot=True, dispatch=False)).items() if k != "author"
            }
            bad_id = {**(await say("hi", mention_bot=True, dispatch=False)), "id": "not-a-snowflake"}
            unknown_type = {**(await say("hi", mention_bot=True, dispatch=False)), "type": 999}
            dangling = await say("who?", mention_bot=True, dispatch=False)
            dangling["message_reference"] = {"message_id": str(snowflake()), "channel_id": str(CHANNEL_ID)}
            dangling["referenced_message"] = None
            events = [special, huge, control, empty, no_author, bad_id, unknown_type, dangling, special]
            for payload in events:
                await bot.fake.dispatch("MESSAGE_CREATE", payload)
            await barrier(bot)
            await wait_for(
                lambda: all(answer_to(bot, q) for q in (special, huge, control, empty, dangling)),
                what="every answerable message answered",
            )

            assert watch.ours(0) == []
            assert watch.since(0) == []  # nothing logged an error
            dropped = [line for line in watch.warnings if "could not read" in line]
            assert len(dropped) == 2  # no author, a bad id: dropped with a warning each
            contents = sorted((r["messages"][-1]["content"] for r in fake_llm.requests), key=len)
            assert len(contents) == 5  # special, huge, control, dangling + the barrier; once each
            assert "Alice A.: " + SPECIAL_TOKENS[2] in contents  # plain text, passed on verbatim
            assert "Alice A.: \x00\x07\x1b bell" in contents
            assert "tokens cut from the middle" in contents[-1] and len(contents[-1]) < len(MEGABYTE)
            assert answer_to(bot, special) == ["Hello from the fake model."]
            assert "too long" in answer_to(bot, huge)[-1]
            assert "The question is empty" in answer_to(bot, empty)[-1]
            assert answer_to(bot, unknown_type) == []
            assert leftovers(bot) == []

            fake_llm.reply("Still here.")
            await bot.fake.say("are you alive?", mention_bot=True)
            await wait_for(
                lambda: last_text(bot, CHANNEL_ID) == "Still here.", what="the answer after the burst"
            )
            assert not bot.task.done()
    await check_store(make_settings().bot_database, "discord", 6)


# -- controls: button presses, reactions, edits -----------------------------------------------------

CUSTOM_IDS = [
    "relay:stop:1:{alice}", "relay:regenerate:1:{alice}", "relay:up:1:{bob}", "relay:down:1:{alice}",
    "relay:regenerate:1:{bob}", "relay:stop:999:{alice}", "relay:nope:1:{alice}", "relay:up:", "relay:",
    "relay:up:x:{alice}", "other:custom", "",
]


@st.composite
def control_dispatch(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A component interaction on the answer, a reaction to it or an edit of its question: some
    hostile, some malformed.  ``<answer>``/``<question>`` stand for their ids."""
    kind = draw(st.sampled_from(["press", "press", "react", "edit"]))
    author = draw(st.sampled_from([ALICE, ALICE, BOB]))
    channel = {"id": str(CHANNEL_ID), "type": 0, "guild_id": str(GUILD_ID)}
    if kind == "press":
        custom = draw(st.one_of(st.sampled_from(CUSTOM_IDS), NASTY_TEXT)).format(alice=ALICE, bob=BOB)
        target = message(channel, BOT_ID, "An answer to press on.")
        target["id"] = "<answer>"
        payload = component_interaction(target, custom, channel, author, None)
        if draw(st.booleans()):
            payload["data"] = draw(st.one_of(WRONG, st.just({"custom_id": custom, "component_type": 3})))
        return "INTERACTION_CREATE", payload
    if kind == "react":
        target = message(channel, BOT_ID, "x")
        target["id"] = "<answer>"
        payload = reaction_add(target, draw(st.sampled_from(["🛑", "🛑", "👍", "stop"])), author, None)
        return "MESSAGE_REACTION_ADD", payload
    payload = message(channel, author, f"<@{BOT_ID}> " + draw(NASTY_TEXT))
    payload["id"], payload["edited_timestamp"] = "<question>", draw(st.sampled_from([None, "2026-01-01T00:00:00+00:00"]))
    for field in draw(st.lists(st.sampled_from(["content", "author", "edited_timestamp"]), max_size=1)):
        payload[field] = draw(WRONG)
    return "MESSAGE_UPDATE", payload


@given(dispatch=control_dispatch(), twice=st.booleans())
@FUZZ
async def test_hostile_presses_reactions_and_edits_through_the_gateway(fuzz_bot, fake_llm, dispatch, twice):
    bot, watch = fuzz_bot
    if not getattr(bot, "answered", None):  # one answer for every example to press on
        fake_llm.reply("An answer to press on.")
        question = await bot.fake.say("something to press on", mention_bot=True)
        await barrier(bot)
        answer = next(m for cid in bot.fake.messages for m in bot.fake.bot_messages(cid)
                      if m["content"] == "An answer to press on.")
        bot.answered = {"<answer>": answer["id"], "<question>": question["id"]}  # type: ignore[attr-defined]
    name, payload = copy.deepcopy(dispatch)
    for part in (payload, payload.get("message")):
        if isinstance(part, dict):
            for k in ("id", "message_id"):
                if part.get(k) in bot.answered:
                    part[k] = bot.answered[part[k]]
    if payload.get("edited_timestamp"):
        payload["edited_timestamp"] = now_iso()
    mark, calls, asked = len(watch.bad), len(bot.fake.calls), len(fake_llm.requests)
    await bot.fake.dispatch(name, payload)
    if twice:
        await bot.fake.dispatch(name, payload)
    await barrier(bot)
    assert watch.ours(mark) == []
    assert not bot.task.done()
    assert len(fake_llm.requests) - asked - 1 <= 1  # the barrier asked once; a regeneration at most
    event(name)
    assert len(bot.fake.calls) - calls <= MAX_CALLS_PER_EVENT
    assert leftovers(bot) == []
