"""Delivery on Discord, end to end: the real discord.py client against the fake Discord.

What users see when the core decides not to answer (a blocked caller costs
nothing, not even a thread), and when the bot process dies mid-answer and
starts again on the same SQLite file: a question accepted but not shown yet
is answered (or, when too old, noted) exactly once; a half-shown answer is
finalised from the text the core saved, in the bot's own message, with the
"interrupted" note as a ``-# `` subtext line.

A crash is ``crash_bot``: every REST call fails from that moment (the process
is gone), then the answers in flight and the adapter are cancelled without a
drain, so nothing they would still do reaches Discord.  Waits are bounded
polls (``wait_for``, ``until``), never sleeps; no wall-clock durations are
asserted.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from adapters.discord import format as fmt
from adapters.discord.menus import SUMMARIZE
from adapters.discord.surface import LIMIT, MAX_CHARS
from bot import about
from bot.recovery import INTERRUPTED_NOTE, NOT_ANSWERED_NOTE, REANSWER_WITHIN
from tests.discord_harness import crash_bot, running_bot, settle, start_bot, stop_bot, wait_for
from tests.fakes.discord import ALICE, BOB, BOT_ID, CHANNEL_ID, OTHER_CHANNEL_ID, FakeDiscord
from tests.fakes.llm import _chunk

ANSWER = "Paris is the capital of France."
#: the note a finalised interrupted reply ends with (a failed reply's last note is marked ⚠️)
INTERRUPTED_LINE = f"{fmt.NOTE_PREFIX}{fmt.WARNING} {INTERRUPTED_NOTE}"


async def until(probe: Callable[[], Awaitable[Any]], what: str, timeout: float = 15.0) -> Any:
    """``wait_for`` for an async probe (the store): poll until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def replies_to(
    fake: FakeDiscord, question: dict[str, Any], channel: int = CHANNEL_ID
) -> list[dict[str, Any]]:
    """The bot's messages in ``channel`` that reply to ``question``."""
    return [
        m
        for m in fake.bot_messages(channel)
        if (m.get("message_reference") or {}).get("message_id") == question["id"]
    ]


def touching(fake: FakeDiscord, since: int, *ids: object) -> list[str]:
    """REST calls made after ``since`` whose path names any of ``ids``."""
    return [f"{c.method} {c.path}" for c in fake.calls[since:] if any(str(i) in c.path for i in ids)]


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    yield server
    await server.stop()
    await settle()


class HeldModel:
    """An OpenAI-compatible model on 127.0.0.1 that streams ``words`` (none: not even a first
    token), then holds the stream open, with no end, until it is stopped: the process talking
    to it dies mid-answer.  (Unlike a stalled ``FakeLLM`` stream, it lets go at once when stopped.)"""

    def __init__(self, words: list[str]) -> None:
        self.words = words
        self.requests: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> HeldModel:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        try:
            for delta in [{"role": "assistant", "content": ""}, *({"content": w} for w in self.words)]:
                await response.write(f"data: {json.dumps(_chunk(delta))}\n\n".encode())
        except ConnectionResetError:
            return response
        await self.release.wait()
        return response


# -- row 9: a blocked caller costs nothing ---------------------------------------------------------


async def test_blocked_user_in_thread_mode_gets_no_thread_and_no_rest_call(make_settings, fake_llm):
    fake_llm.reply("Barrier answer.")
    async with running_bot(make_settings, discord_reply_mode="thread", bot_blocked_users=str(ALICE)) as bot:
        mark = len(bot.fake.calls)
        question = await bot.fake.say("Tell me about threads", mention_bot=True)
        # a later question, answered in a thread of its own: the gateway delivers in order and
        # the blocked caller is turned away before the core awaits anything
        barrier = await bot.fake.say("barrier", author=BOB, mention_bot=True, channel=OTHER_CHANNEL_ID)
        barrier_thread = int(barrier["id"])
        await wait_for(
            lambda: [m["content"] for m in bot.fake.bot_messages(barrier_thread)] == ["Barrier answer."],
            what="the barrier's answer in its thread",
        )
        await wait_for(lambda: not bot.service.tasks, what="every answer to be settled")

        # not one REST call for the blocked question: no typing, no fetch, no thread, no message
        assert touching(bot.fake, mark, CHANNEL_ID, question["id"]) == []
        assert all(
            str(OTHER_CHANNEL_ID) in c.path or str(barrier_thread) in c.path for c in bot.fake.calls[mark:]
        ), [f"{c.method} {c.path}" for c in bot.fake.calls[mark:]]
        assert [t["id"] for t in bot.fake.threads()] == [barrier["id"]]
        assert bot.fake.bot_messages(CHANNEL_ID) == []
        assert int(question["id"]) not in bot.fake.channels  # no thread named after the question
        # no provider request: only the barrier reached the model
        assert len(fake_llm.requests) == 1
        assert fake_llm.requests[0]["messages"][-1]["content"] == "Bob: barrier"
        # and nothing written: no claim, no request record for the blocked question
        async with bot.service.store._db.execute("SELECT event_id FROM events") as cur:
            assert [r[0] for r in await cur.fetchall()] == [f"discord:message:{barrier['id']}"]


# -- row 4: accepted, then the process died before the first post -----------------------------------


async def in_flight_unshown(bot: Any) -> Any:
    """The one open request once it is answering with nothing shown yet."""
    records = await bot.service.store.open_requests("discord")
    if len(records) == 1 and records[0].state == "answering":
        return records[0]
    return None


@pytest.mark.parametrize("age", ["recent", "old"])
async def test_a_question_accepted_before_a_crash_is_answered_once_after_the_restart(
    make_settings, fake_llm, fake, age
):
    # the model never sends a first token to the first process: it dies waiting
    async with HeldModel([]) as model:
        first = await start_bot(
            make_settings, fake, openai_base_url=model.base_url, bot_first_token_timeout=600
        )
        try:
            question = await fake.say("What is the capital of France?", mention_bot=True)
            record = await until(lambda: in_flight_unshown(first), what="the question to be accepted")
            assert record.messages == [] and record.shown == ""
            assert len(model.requests) == 1 and replies_to(fake, question) == []  # in flight, not shown
        finally:
            await crash_bot(first)
    assert fake.bot_messages(CHANNEL_ID) == []  # the dying process showed nothing

    database = make_settings().bot_database
    if age == "old":  # accepted longer ago than the re-answer window
        with sqlite3.connect(database) as db:
            db.execute("UPDATE requests SET created_at = created_at - ?", (REANSWER_WITHIN + 60,))

    fake_llm.reply(ANSWER)
    second = await start_bot(make_settings, fake)  # the real model this time (fake_llm)
    try:
        await wait_for(lambda: replies_to(fake, question), what="the question's reply after the restart")
        await wait_for(lambda: not second.service.tasks, what="the recovered answer to be settled")
        shown = [m["content"] for m in replies_to(fake, question)]
        if age == "recent":
            assert shown == [ANSWER]
            assert len(fake_llm.requests) == 1  # asked again, once
            asked = fake_llm.requests[-1]["messages"][-1]["content"]
            assert asked == "Alice A.: What is the capital of France?"
        else:
            assert shown == [f"{fmt.NOTE_PREFIX}{fmt.WARNING} {NOT_ANSWERED_NOTE}"]
            assert fake_llm.requests == []  # too old to answer: not asked again
        assert fake.bot_messages(CHANNEL_ID) == replies_to(fake, question)
        post = fake.find("POST", rf"/channels/{CHANNEL_ID}/messages")[-1]
        assert post.body["allowed_mentions"]["parse"] == []
        state = await second.service.store.request(record.id)
        assert state is not None and state.state == ("done" if age == "recent" else "failed")
        assert await second.service.store.open_requests("discord") == []
    finally:
        await stop_bot(second)

    # settled once: a further start finds nothing to do
    asked, calls = len(fake_llm.requests), len(fake.calls)
    third = await start_bot(make_settings, fake)
    try:
        assert [m["content"] for m in replies_to(fake, question)] == shown
        assert len(fake_llm.requests) == asked
        assert touching(fake, calls, CHANNEL_ID, question["id"]) == []
    finally:
        await stop_bot(third)


# -- a half-shown answer, then the crash -----------------------------------------------------------


async def half_shown(bot: Any, content: str) -> Any:
    """The open request once the core has saved ``content`` as shown in its one message."""
    records = await bot.service.store.open_requests("discord")
    if len(records) == 1 and records[0].messages and records[0].shown == content:
        return records[0]
    return None


async def test_a_half_shown_answer_is_finalised_in_its_own_message_after_a_crash(
    make_settings, fake_llm, fake
):
    words = [f"w{i} " for i in range(12)]
    partial = "".join(words)
    async with HeldModel(words) as model:  # 12 words, then the model goes quiet
        first = await start_bot(make_settings, fake, openai_base_url=model.base_url, bot_read_timeout=600)
        try:
            question = await fake.say("count for me", mention_bot=True)
            await wait_for(
                lambda: [m["content"] for m in replies_to(fake, question)] == [partial],
                what="the half answer",
            )
            record = await until(lambda: half_shown(first, partial), what="the shown text to be saved")
        finally:
            await crash_bot(first)
    message = replies_to(fake, question)[0]
    assert record.messages == [{"message": message["id"]}]
    assert message["content"] == partial  # what the user saw when the bot died: no note yet
    # another message of the bot in the same channel, which must stay as it is
    other = fake._message(CHANNEL_ID, BOT_ID, "Another answer of the bot.")
    before = {m["id"]: m["content"] for m in fake.bot_messages(CHANNEL_ID)}
    calls = len(fake.calls)

    second = await start_bot(make_settings, fake)
    try:
        await wait_for(
            lambda: fake.messages[CHANNEL_ID][int(message["id"])]["content"] != partial,
            what="the half answer to be finalised",
        )
        # the same message, finished from the saved text with the note as a subtext line
        assert fake.messages[CHANNEL_ID][int(message["id"])]["content"] == f"{partial}\n{INTERRUPTED_LINE}"
        edits = fake.find("PATCH", rf"/channels/{CHANNEL_ID}/messages/\d+")
        assert [e.path for e in edits if fake.calls.index(e) >= calls] == [
            f"/channels/{CHANNEL_ID}/messages/{message['id']}"
        ]
        assert edits[-1].body["allowed_mentions"]["parse"] == []
        # no read-back, no new message, no question to the model
        assert not fake.find("GET", rf"/channels/{CHANNEL_ID}/messages/{message['id']}")
        assert [c for c in fake.calls[calls:] if c.method == "POST" and "/messages" in c.path] == []
        assert fake_llm.requests == []
        after = {m["id"]: m["content"] for m in fake.bot_messages(CHANNEL_ID)}
        assert after == {**before, message["id"]: f"{partial}\n{INTERRUPTED_LINE}"}
        assert after[other["id"]] == "Another answer of the bot."
        state = await second.service.store.request(record.id)
        assert state is not None and state.state == "partial"
        assert await second.service.store.open_requests("discord") == []
    finally:
        await stop_bot(second)


async def test_an_interrupted_answer_at_the_length_limit_keeps_its_note(make_settings, fake_llm, fake):
    """A message already full when the bot died: the note still shows, the text gives way."""
    shown = ("word " * 1000)[: MAX_CHARS - 1] + "x"
    message = fake._message(CHANNEL_ID, BOT_ID, shown)

    async def crashed_with_a_full_message(service: Any, fake: FakeDiscord) -> None:
        request_id = await service.store.accept(
            ["discord:message:1"], "discord", "chain:1", {}, "the process that died"
        )
        place = {"kind": "channel", "channel": str(CHANNEL_ID), "reply_to": None}
        await service.store.update_request(
            request_id, state="answering", place=place, messages=[{"message": message["id"]}], shown=shown
        )

    bot = await start_bot(make_settings, fake, prepare=crashed_with_a_full_message)
    try:
        await wait_for(
            lambda: fake.messages[CHANNEL_ID][int(message["id"])]["content"] != shown, what="the fix-up"
        )
        content = fake.messages[CHANNEL_ID][int(message["id"])]["content"]
        assert len(content) <= LIMIT
        body, note = content.rsplit("\n", 1)
        assert note == INTERRUPTED_LINE
        assert body.endswith("…") and shown.startswith(body[:-1])
        assert len(fake.bot_messages(CHANNEL_ID)) == 1
    finally:
        await stop_bot(bot)


async def test_in_thread_mode_the_answer_after_a_crash_goes_to_the_thread_already_opened(
    make_settings, fake_llm, fake
):
    async with HeldModel([]) as model:
        first = await start_bot(
            make_settings, fake, discord_reply_mode="thread", openai_base_url=model.base_url,
            bot_first_token_timeout=600,
        )
        try:
            question = await fake.say("Tell me about threads", mention_bot=True)
            await until(lambda: in_flight_unshown(first), what="the question to be accepted")
            thread = int(question["id"])  # opened before the model was asked
            assert [t["id"] for t in fake.threads()] == [question["id"]]
        finally:
            await crash_bot(first)
    assert fake.bot_messages(thread) == []

    fake_llm.reply("Threads keep things tidy.")
    second = await start_bot(make_settings, fake, discord_reply_mode="thread")
    try:
        await wait_for(
            lambda: [m["content"] for m in fake.bot_messages(thread)] == ["Threads keep things tidy."],
            what="the answer in the question's thread",
        )
        await wait_for(lambda: not second.service.tasks, what="the recovered answer to be settled")
        assert [t["id"] for t in fake.threads()] == [question["id"]]  # no second thread
        assert fake.bot_messages(CHANNEL_ID) == []  # not a reply in the channel instead
        assert len(fake_llm.requests) == 1
        assert await second.service.store.open_requests("discord") == []
    finally:
        await stop_bot(second)


# -- /ask across a restart: the interaction's token still writes its response for 15 minutes ---------


async def test_an_ask_accepted_before_a_crash_is_answered_in_its_response_after_the_restart(
    make_settings, fake_llm, fake
):
    async with HeldModel([]) as model:  # no first token: the first process dies waiting
        first = await start_bot(make_settings, fake, openai_base_url=model.base_url, bot_first_token_timeout=600)
        try:
            payload = await fake.interact("ask", {"question": "What is the capital of France?"})
            record = await until(lambda: in_flight_unshown(first), what="the /ask to be accepted")
        finally:
            await crash_bot(first)
    token = payload["token"]
    assert fake.interaction_messages(token) == []  # "thinking…" is all the user has

    fake_llm.reply(ANSWER)
    second = await start_bot(make_settings, fake)
    try:
        await wait_for(lambda: fake.interaction_messages(token) == [ANSWER], what="the /ask answer after the restart")
        await wait_for(lambda: not second.service.tasks, what="the recovered answer to be settled")
        assert len(fake_llm.requests) == 1  # asked again, once
        assert fake_llm.requests[0]["messages"][-1]["content"] == "Alice A.: What is the capital of France?"
        edit = fake.find("PATCH", rf"/webhooks/\d+/{token}/messages/@original")[-1]
        assert edit.body["allowed_mentions"]["parse"] == []
        state = await second.service.store.request(record.id)
        assert state is not None and state.state == "done"
    finally:
        await stop_bot(second)


async def test_a_summary_accepted_before_a_crash_is_answered_in_its_response_after_the_restart(
    make_settings, fake_llm, fake
):
    first_message = await fake.say("shall we ship on Friday?", author=BOB, dispatch=False)
    target = await fake.say("yes, Friday it is", dispatch=False)
    async with HeldModel([]) as model:  # no first token: the first process dies waiting
        first = await start_bot(make_settings, fake, openai_base_url=model.base_url, bot_first_token_timeout=600)
        try:
            payload = await fake.use_menu(SUMMARIZE, target, author=BOB)
            await until(lambda: in_flight_unshown(first), what="the summary to be accepted")
        finally:
            await crash_bot(first)

    fake_llm.reply("They will ship on Friday.")
    second = await start_bot(make_settings, fake)
    try:
        token = payload["token"]
        await wait_for(lambda: fake.interaction_messages(token) == ["They will ship on Friday."], what="the summary")
        await wait_for(lambda: not second.service.tasks, what="the recovered answer to be settled")
        assert [m["content"] for m in fake_llm.requests[0]["messages"][1:]] == [
            f"Bob: {first_message['content']}", f"Alice A.: {target['content']}", about.SUMMARIZE,
        ]
    finally:
        await stop_bot(second)


async def test_a_half_shown_ask_is_finalised_in_its_response_after_a_crash(make_settings, fake_llm, fake):
    words = [f"w{i} " for i in range(12)]
    partial = "".join(words)
    async with HeldModel(words) as model:
        first = await start_bot(make_settings, fake, openai_base_url=model.base_url, bot_read_timeout=600)
        try:
            payload = await fake.interact("ask", {"question": "count for me"})
            token = payload["token"]
            await wait_for(lambda: fake.interaction_messages(token) == [partial], what="the half answer")
            record = await until(lambda: half_shown(first, partial), what="the shown text to be saved")
        finally:
            await crash_bot(first)

    second = await start_bot(make_settings, fake)
    try:
        await wait_for(
            lambda: fake.interaction_messages(token) == [f"{partial}\n{INTERRUPTED_LINE}"],
            what="the half answer to be finalised in the same response",
        )
        assert fake_llm.requests == []  # finished from the saved text, not asked again
        state = await second.service.store.request(record.id)
        assert state is not None and state.state == "partial"
    finally:
        await stop_bot(second)


async def test_an_ask_whose_token_expired_is_closed_without_a_call(make_settings, fake_llm, fake):
    async with HeldModel([]) as model:
        first = await start_bot(make_settings, fake, openai_base_url=model.base_url, bot_first_token_timeout=600)
        try:
            await fake.interact("ask", {"question": "What is the capital of France?"})
            record = await until(lambda: in_flight_unshown(first), what="the /ask to be accepted")
        finally:
            await crash_bot(first)
    # the interaction arrived 16 minutes ago: its id's timestamp says so, and its token is dead
    assert record.place == {}  # nothing shown: the place is in the origin only
    origin = record.origin
    old = int(origin["ask"]["interaction"]["id"]) - ((16 * 60 * 1000) << 22)
    for saved in (origin["ask"]["interaction"], origin["place"]["interaction"]):
        saved["id"] = str(old)
    with sqlite3.connect(make_settings().bot_database) as db:
        db.execute("UPDATE requests SET origin = ?", (json.dumps(origin),))
    calls = len(fake.calls)

    second = await start_bot(make_settings, fake)
    try:
        await until(lambda: _closed(second, record.id), what="the request to be closed")
        assert [c for c in fake.calls[calls:] if "/webhooks/" in c.path or "/interactions/" in c.path] == []
        assert fake_llm.requests == []
    finally:
        await stop_bot(second)


async def _closed(bot: Any, request_id: int) -> bool:
    record = await bot.service.store.request(request_id)
    return record is not None and record.state == "failed"
