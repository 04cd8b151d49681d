"""Controls on a Discord answer, end to end: the real discord.py client against the fake Discord
(button components, component interactions, 🛑 reactions) and the fake model."""

from __future__ import annotations

from tests.discord_harness import running_bot, wait_for
from tests.fakes.discord import ALICE, BOB, BOT_ID, CHANNEL_ID, DM_CHANNEL_ID, FakeDiscord

#: the gateway intents GUILD_MESSAGE_REACTIONS (1 << 10) and DIRECT_MESSAGE_REACTIONS (1 << 13)
REACTIONS = (1 << 10) | (1 << 13)
LONG = " ".join(f"word{n}" for n in range(400))


def answer(fake: FakeDiscord, channel: int = CHANNEL_ID) -> dict | None:
    messages = fake.bot_messages(channel) if channel in fake.channels else []
    return messages[0] if messages else None


def actions(fake: FakeDiscord, channel: int = CHANNEL_ID) -> list[str]:
    msg = answer(fake, channel)
    return [c.split(":")[1] for c in fake.buttons(channel, int(msg["id"]))] if msg else []


def followups(fake: FakeDiscord, payload: dict) -> list[dict]:
    """The ephemeral followups a press got."""
    key = -abs(hash(payload["token"]))
    return [m for m in fake.messages.get(key, {}).values() if m.get("flags") == 64]


async def streaming(bot, fake_llm) -> int:
    """Ask, and wait until the answer streams with its Stop button: the answer's id."""
    fake_llm.reply(LONG, delay=0.02)
    await bot.fake.say("tell me a long story", mention_bot=True)
    await wait_for(lambda: actions(bot.fake) == ["stop"] and "word5" in answer(bot.fake)["content"],
                   what="the answer to stream with a Stop button")
    return int(answer(bot.fake)["id"])


async def test_stop_button_keeps_the_partial_text_and_closes_the_provider_stream(make_settings, fake_llm):
    async with running_bot(make_settings) as bot:
        mid = await streaming(bot, fake_llm)

        refused = await bot.fake.press(CHANNEL_ID, mid, "stop", author=BOB)
        await wait_for(lambda: followups(bot.fake, refused), what="the private refusal")
        [note] = followups(bot.fake, refused)
        assert note["content"] == "Only the person who asked (or an admin) can stop this answer."
        callback = bot.fake.find("POST", rf"/interactions/{refused['id']}/.*/callback")
        assert callback[0].body["type"] == 6  # acknowledged as a deferred update, before the core decided
        assert actions(bot.fake) == ["stop"]

        await bot.fake.press(CHANNEL_ID, mid, "stop", author=ALICE)
        await wait_for(lambda: actions(bot.fake) == ["regenerate", "up", "down"], what="the final buttons")
        text = answer(bot.fake)["content"]
        assert text.endswith("\n-# stopped by Alice A.")
        assert 5 < len(text.split("\n")[0].split()) < 400
        await wait_for(lambda: fake_llm.hung_up == 1, what="the provider's stream to be closed")
        await wait_for(lambda: not bot.service.tasks, what="the request to be settled")
        record = await bot.service.store.request(1)
        assert record.state == "stopped"
        [usage] = await bot.service.store.usage_totals("provider")
        assert 0 < usage.completion_tokens < 400


async def test_a_stop_reaction_by_the_asker_stops_the_answer(make_settings, fake_llm):
    async with running_bot(make_settings) as bot:
        intents = bot.fake.identifies[-1]["intents"]
        assert intents & REACTIONS == REACTIONS  # guild and DM message reactions (not privileged)
        mid = await streaming(bot, fake_llm)
        await bot.fake.react(CHANNEL_ID, mid, "👍", author=ALICE)  # not a stop
        await bot.fake.react(CHANNEL_ID, mid, author=BOB)  # not the asker
        await bot.fake.react(CHANNEL_ID, mid, author=ALICE)
        await wait_for(lambda: actions(bot.fake) == ["regenerate", "up", "down"], what="the stop")
        assert answer(bot.fake)["content"].endswith("\n-# stopped by Alice A.")
        await wait_for(lambda: fake_llm.hung_up == 1, what="the provider's stream to be closed")


async def test_regenerate_asks_again_without_the_old_answer_and_replaces_its_text(make_settings, fake_llm):
    fake_llm.reply("First answer.")
    fake_llm.reply("Second answer.", delay=0.01)
    async with running_bot(make_settings) as bot:
        await bot.fake.say("What is the capital of France?", mention_bot=True)
        await wait_for(lambda: actions(bot.fake) == ["regenerate", "up", "down"], what="the final buttons")
        mid = int(answer(bot.fake)["id"])
        assert answer(bot.fake)["content"] == "First answer."

        refused = await bot.fake.press(CHANNEL_ID, mid, "regenerate", author=BOB)
        await wait_for(lambda: followups(bot.fake, refused), what="the refusal")
        assert followups(bot.fake, refused)[0]["content"].startswith("Only the person who asked")

        await bot.fake.press(CHANNEL_ID, mid, "regenerate", author=ALICE)
        await bot.fake.press(CHANNEL_ID, mid, "regenerate", author=ALICE)  # pressed twice: once
        await wait_for(lambda: answer(bot.fake)["content"] == "Second answer.", what="the replaced text")
        await wait_for(lambda: not bot.service.tasks, what="the requests to be settled")
        assert len(bot.fake.bot_messages(CHANNEL_ID)) == 1
        assert actions(bot.fake) == ["regenerate", "up", "down"]
        assert len(fake_llm.requests) == 2
        assert fake_llm.requests[1]["messages"] == fake_llm.requests[0]["messages"]  # same question, no old answer
        new = await bot.service.store.request(2)
        assert new is not None and new.state == "done" and new.origin["regenerates"] == 1


async def test_feedback_one_vote_per_person_changeable(make_settings, fake_llm):
    fake_llm.reply("An answer worth a vote.")
    async with running_bot(make_settings) as bot:
        await bot.fake.say("hello", mention_bot=True)
        await wait_for(lambda: actions(bot.fake) == ["regenerate", "up", "down"], what="the final buttons")
        mid = int(answer(bot.fake)["id"])
        presses = []
        for author, action in ((ALICE, "up"), (ALICE, "up"), (BOB, "up"), (ALICE, "down")):
            presses.append(await bot.fake.press(CHANNEL_ID, mid, action, author=author))
            await wait_for(lambda: followups(bot.fake, presses[-1]), what="the vote's thanks")
        assert [followups(bot.fake, p)[0]["content"] for p in presses] == [
            "Thanks for the feedback: 👍 noted.",
            "Thanks for the feedback: 👍 noted.",
            "Thanks for the feedback: 👍 noted.",
            "Thanks for the feedback: 👎 noted.",
        ]
        assert await bot.service.store.vote_totals("provider") == {"openai": (1, 1)}
        assert answer(bot.fake)["content"] == "An answer worth a vote."


async def test_an_edited_question_is_answered_again_in_place(make_settings, fake_llm):
    fake_llm.reply("Paris.")
    fake_llm.reply("Rome.", delay=0.01)
    async with running_bot(make_settings) as bot:
        question = await bot.fake.say("capital of France?", mention_bot=True)
        await wait_for(lambda: actions(bot.fake) == ["regenerate", "up", "down"], what="the final buttons")
        await bot.fake.edit(CHANNEL_ID, int(question["id"]), f"<@{BOT_ID}> capital of Italy?")
        await wait_for(lambda: answer(bot.fake)["content"] == "Rome.", what="the answer in place")
        await wait_for(lambda: not bot.service.tasks, what="the requests to be settled")
        assert len(bot.fake.bot_messages(CHANNEL_ID)) == 1
        assert len(fake_llm.requests) == 2
        assert fake_llm.requests[1]["messages"][-1] == {"role": "user", "content": "Alice A.: capital of Italy?"}
        assert (await bot.service.store.request(2)).origin["regenerates"] == 1


async def test_an_edit_is_left_alone_when_the_answer_is_not_the_latest(make_settings, fake_llm):
    fake_llm.reply("Paris.")
    async with running_bot(make_settings) as bot:
        question = await bot.fake.say("capital of France?", mention_bot=True)
        await wait_for(lambda: actions(bot.fake) == ["regenerate", "up", "down"], what="the final buttons")
        await bot.fake.say("thanks!", author=BOB)  # the conversation moved on
        await bot.fake.edit(CHANNEL_ID, int(question["id"]), f"<@{BOT_ID}> capital of Italy?")
        await wait_for(
            lambda: bot.fake.find("GET", rf"/channels/{CHANNEL_ID}/messages"), what="the edit to be looked at"
        )
        fake_llm.reply("Pong.")  # a barrier: a later question is answered after the edit was handled
        await bot.fake.say("ping", mention_bot=True)
        await wait_for(lambda: bot.fake.bot_messages(CHANNEL_ID)[-1]["content"] == "Pong.", what="the barrier")
        await wait_for(lambda: not bot.service.tasks, what="the requests to be settled")
        assert len(fake_llm.requests) == 2
        assert answer(bot.fake)["content"] == "Paris."


async def test_an_edited_question_is_answered_again_in_its_thread(make_settings, fake_llm):
    """Thread reply mode: the answer is in the thread opened from the question, not after it."""
    fake_llm.reply("Paris.")
    fake_llm.reply("Rome.", delay=0.01)
    async with running_bot(make_settings, discord_reply_mode="thread") as bot:
        question = await bot.fake.say("capital of France?", mention_bot=True)
        thread = int(question["id"])  # a thread started from a message has its id
        await wait_for(lambda: actions(bot.fake, thread) == ["regenerate", "up", "down"], what="the final buttons")
        await bot.fake.say("chatter in the channel", author=BOB)  # the channel moves on; the thread does not
        await bot.fake.edit(CHANNEL_ID, thread, f"<@{BOT_ID}> capital of Italy?")
        await wait_for(lambda: answer(bot.fake, thread)["content"] == "Rome.", what="the answer in place")
        await wait_for(lambda: not bot.service.tasks, what="the requests to be settled")
        assert len(bot.fake.bot_messages(thread)) == 1 and bot.fake.bot_messages(CHANNEL_ID) == []
        assert len(bot.fake.threads()) == 1
        assert fake_llm.requests[1]["messages"][-1] == {"role": "user", "content": "Alice A.: capital of Italy?"}
        assert (await bot.service.store.request(2)).origin["regenerates"] == 1


async def test_an_edit_is_left_alone_when_its_thread_moved_on(make_settings, fake_llm):
    fake_llm.reply("Paris.")
    fake_llm.reply("About 2 million.")
    async with running_bot(make_settings, discord_reply_mode="thread") as bot:
        question = await bot.fake.say("capital of France?", mention_bot=True)
        thread = int(question["id"])
        await wait_for(lambda: actions(bot.fake, thread) == ["regenerate", "up", "down"], what="the final buttons")
        await bot.fake.say("how many live there?", channel=thread)  # a follow-up in the thread
        await wait_for(lambda: len(bot.fake.bot_messages(thread)) == 2, what="the follow-up's answer")
        await wait_for(lambda: not bot.service.tasks, what="the requests to be settled")
        await bot.fake.edit(CHANNEL_ID, thread, f"<@{BOT_ID}> capital of Italy?")
        await wait_for(lambda: bot.fake.find("GET", rf"/channels/{thread}/messages"), what="the edit to be looked at")
        fake_llm.reply("Pong.")  # a barrier: a later question is answered after the edit was handled
        await bot.fake.say("ping", dm=True)
        await wait_for(lambda: bot.fake.bot_messages(DM_CHANNEL_ID), what="the barrier")
        await wait_for(lambda: not bot.service.tasks, what="the requests to be settled")
        assert len(fake_llm.requests) == 3
        assert [m["content"] for m in bot.fake.bot_messages(thread)] == ["Paris.", "About 2 million."]


async def test_controls_pressed_after_a_restart_work(make_settings, fake_llm):
    from tests.discord_harness import settle, start_bot, stop_bot

    fake = FakeDiscord()
    await fake.start()
    try:
        fake_llm.reply("Before the restart.")
        first = await start_bot(make_settings, fake)
        await fake.say("hello", mention_bot=True)
        await wait_for(lambda: actions(fake) == ["regenerate", "up", "down"], what="the final buttons")
        await stop_bot(first)

        fake_llm.reply("After the restart.")
        second = await start_bot(make_settings, fake)
        try:
            mid = int(answer(fake)["id"])
            vote = await fake.press(CHANNEL_ID, mid, "down", author=BOB)
            await wait_for(lambda: followups(fake, vote), what="the vote's thanks")
            await fake.press(CHANNEL_ID, mid, "regenerate", author=ALICE)
            await wait_for(lambda: answer(fake)["content"] == "After the restart.", what="the regenerated answer")
            await wait_for(lambda: not second.service.tasks, what="the request to be settled")
            assert await second.service.store.vote_totals("provider") == {"openai": (0, 1)}
            assert len(fake.bot_messages(CHANNEL_ID)) == 1
        finally:
            await stop_bot(second)
    finally:
        await fake.stop()
        await settle()


async def test_ask_responses_carry_the_controls_too(make_settings, fake_llm):
    fake_llm.reply(LONG, delay=0.02)
    fake_llm.reply("A second take.")
    async with running_bot(make_settings) as bot:
        payload = await bot.fake.interact("ask", {"question": "tell me a long story"})
        where = -abs(hash(payload["token"]))  # the fake keeps an interaction's messages apart

        def original() -> dict:
            return bot.fake.messages.get(where, {}).get(0) or {"content": "", "components": []}

        def shown() -> list[str]:
            return [c.split(":")[1] for c in bot.fake.buttons(where, 0)] if bot.fake.messages.get(where, {}).get(0) else []

        await wait_for(lambda: shown() == ["stop"] and "word5" in original()["content"], what="a Stop button")
        await bot.fake.press(where, 0, "stop", author=ALICE)
        await wait_for(lambda: shown() == ["regenerate", "up", "down"], what="the final buttons")
        assert original()["content"].endswith("\n-# stopped by Alice A.")
        await wait_for(lambda: fake_llm.hung_up == 1, what="the provider's stream to be closed")
        await wait_for(lambda: not bot.service.tasks, what="the request to be settled")

        await bot.fake.press(where, 0, "regenerate", author=ALICE)
        await wait_for(lambda: original()["content"] == "A second take.", what="the regenerated answer")
        await wait_for(lambda: not bot.service.tasks, what="the request to be settled")
        assert shown() == ["regenerate", "up", "down"]
        assert fake_llm.requests[1]["messages"] == fake_llm.requests[0]["messages"]
        assert not bot.fake.find("DELETE", r"/webhooks/.*")  # the response stays


async def test_a_shorter_regenerated_answer_replaces_a_long_one_and_its_extra_messages_go(make_settings, fake_llm):
    fake_llm.reply(LONG)  # ~2,800 characters: two messages
    fake_llm.reply("Short now.")
    async with running_bot(make_settings) as bot:
        await bot.fake.say("tell me a long story", mention_bot=True)

        def last_buttons() -> list[str]:
            messages = bot.fake.bot_messages(CHANNEL_ID)
            return [c.split(":")[1] for c in bot.fake.buttons(CHANNEL_ID, int(messages[-1]["id"]))] if messages else []

        await wait_for(lambda: last_buttons() == ["regenerate", "up", "down"], what="the final buttons")
        await wait_for(lambda: not bot.service.tasks, what="the request to be settled")
        first, second = bot.fake.bot_messages(CHANNEL_ID)
        assert bot.fake.buttons(CHANNEL_ID, int(first["id"])) == []  # a finished part shows no buttons
        await bot.fake.press(CHANNEL_ID, int(second["id"]), "regenerate", author=ALICE)
        await wait_for(lambda: [m["content"] for m in bot.fake.bot_messages(CHANNEL_ID)] == ["Short now."],
                       what="one message with the new answer")
        await wait_for(lambda: not bot.service.tasks, what="the request to be settled")
        assert bot.fake.bot_messages(CHANNEL_ID)[0]["id"] == first["id"]  # written into the first message
        assert last_buttons() == ["regenerate", "up", "down"]
        assert len(bot.fake.find("DELETE", rf"/channels/{CHANNEL_ID}/messages/{second['id']}")) == 1
        assert (await bot.service.store.request(2)).messages == [{"message": first["id"]}]
