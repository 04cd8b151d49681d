"""End to end: the message context menus and the user-installed app, through the real discord.py
client against the fake Discord and the fake model.

"Ask about this message" and "Summarize this conversation" are answered in the interaction's
response like ``/ask``; used through a user's own install of the app where the bot is not a
member, every answer goes through the interaction's webhook (the channel answers 403).
"""

from __future__ import annotations

from adapters.discord.menus import ASK_ABOUT, SUMMARIZE
from adapters.discord.responses import NOT_ALLOWED
from bot import about, tokens
from bot.conversation import LEFT_OUT_NOTE
from bot.reply import cut_note
from bot.splitting import join_parts
from adapters.discord.format import strip_notes
from tests.discord_harness import running_bot, wait_for
from tests.fakes.discord import ALICE, BOB, CHANNEL_ID, FOREIGN_CHANNEL_ID, PRIVATE_CHANNEL_ID, FakeDiscord

ANSWER = "E42 means the disk is full."


def user_contents(request: dict) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in request["messages"] if m["role"] != "system"]


def interaction_calls(fake: FakeDiscord, payload: dict) -> list:
    return [c for c in fake.calls if payload["token"] in c.path]


async def test_commands_declare_where_they_can_be_installed_and_used(make_settings, fake_llm):
    async with running_bot(make_settings) as bot:
        synced = {c["name"]: c for c in bot.fake.commands}
    assert synced["ask"]["integration_types"] == [0, 1] and synced["ask"]["contexts"] == [0, 1, 2]
    assert synced[ASK_ABOUT]["type"] == 3
    assert synced[ASK_ABOUT]["integration_types"] == [0, 1] and synced[ASK_ABOUT]["contexts"] == [0, 1, 2]
    assert synced[SUMMARIZE]["type"] == 3
    assert synced[SUMMARIZE]["integration_types"] == [0] and synced[SUMMARIZE]["contexts"] == [0, 1]
    assert synced["relay"]["integration_types"] == [0]


async def test_ask_about_a_message_answers_in_the_interaction_response(make_settings, fake_llm):
    fake_llm.reply(ANSWER, delay=0.01)
    async with running_bot(make_settings) as bot:
        log = bot.fake.attach("build.log", b"step 3: E42 no space left on device\n")
        target = await bot.fake.say(
            "the build fails with E42 @everyone", author=BOB, dispatch=False, attachments=[log]
        )
        payload = await bot.fake.use_menu(ASK_ABOUT, target)
        await wait_for(lambda: bot.fake.interaction_messages(payload["token"]) == [ANSWER], what="the answer")
        calls = interaction_calls(bot.fake, payload)
        assert calls[0].path.endswith("/callback") and calls[0].body["type"] == 5  # deferred, public
        writes = calls[1:]
        assert writes and all(c.body["allowed_mentions"] == {"parse": []} for c in writes)
        assert bot.fake.bot_messages(CHANNEL_ID) == []  # not a channel message: the response
    (asked,) = user_contents(fake_llm.requests[0])
    assert asked[1] == (
        "Alice A.: Explain this message.\n\n[message from Bob]\nthe build fails with E42 @everyone\n"
        "[end of message]\n\n[file: build.log]\nstep 3: E42 no space left on device\n\n[end of file: build.log]"
    )


async def test_summarize_reads_the_channel_up_to_the_message_within_the_window(make_settings, fake_llm):
    fake_llm.reply("They agreed to ship on Friday.")
    window, out = 1024, 128
    async with running_bot(make_settings, openai_context_window=window, bot_max_tokens=out) as bot:
        said = []
        for n in range(30):
            text = f"point {n}: " + " ".join(f"word{n}x{i}" for i in range(20))
            said.append(await bot.fake.say(text, author=ALICE if n % 2 else BOB, dispatch=False))
        await bot.fake.say("this came after", author=BOB, dispatch=False)
        payload = await bot.fake.use_menu(SUMMARIZE, said[-1], author=BOB)
        token = payload["token"]
        await wait_for(
            lambda: bot.fake.interaction_messages(token)
            and bot.fake.interaction_messages(token)[0].startswith("They agreed"),
            what="the summary",
        )
        shown = bot.fake.interaction_messages(token)[0]
    assert LEFT_OUT_NOTE in shown  # the oldest messages did not fit, and the answer says so
    request = fake_llm.requests[0]
    turns = user_contents(request)
    assert turns[-1] == ("user", about.SUMMARIZE)
    assert turns[-2] == ("user", f"Alice A.: {said[-1]['content']}")
    assert turns[-3] == ("user", f"Bob: {said[-2]['content']}")
    assert "point 0:" not in str(turns) and "this came after" not in str(turns)
    used = tokens.prompt_tokens([m["content"] for m in request["messages"]], has_system=True)
    oldest = next(n for n, m in enumerate(said) if f": {m['content']}" in turns[0][1])
    left_out = said[oldest - 1]
    name = "Alice A." if (oldest - 1) % 2 else "Bob"
    next_cost = tokens.PER_MESSAGE + tokens.count(f"{name}: {left_out['content']}")
    assert used + out <= window < used + out + next_cost  # exactly as full as the window allows


async def test_a_blocked_user_is_told_privately_and_costs_no_model_call(make_settings, fake_llm):
    async with running_bot(make_settings, bot_blocked_users=str(ALICE)) as bot:
        target = await bot.fake.say("what is this?", author=BOB, dispatch=False)
        payload = await bot.fake.use_menu(ASK_ABOUT, target)
        token = payload["token"]
        await wait_for(lambda: bot.fake.find("POST", rf"/webhooks/\d+/{token}"), what="the private refusal")
        (refusal,) = bot.fake.find("POST", rf"/webhooks/\d+/{token}")
        assert refusal.body["content"] == NOT_ALLOWED and refusal.body["flags"] == 64  # only the asker sees it
        assert bot.fake.find("DELETE", rf"/webhooks/\d+/{token}/messages/@original")  # no "thinking…" left
    assert fake_llm.requests == []


async def test_user_installed_app_answers_through_the_webhook_where_the_bot_is_not(make_settings, fake_llm):
    fake_llm.reply(ANSWER)
    fake_llm.reply("Hello from a DM.")
    async with running_bot(make_settings) as bot:
        target = await bot.fake.say("error E42 again", author=BOB, channel=FOREIGN_CHANNEL_ID, dispatch=False)
        menu = await bot.fake.use_menu(ASK_ABOUT, target, user_install=True)
        await wait_for(lambda: bot.fake.interaction_messages(menu["token"]) == [ANSWER], what="the answer")
        ask = await bot.fake.interact("ask", {"question": "hi there"}, channel=PRIVATE_CHANNEL_ID, user_install=True)
        await wait_for(
            lambda: bot.fake.interaction_messages(ask["token"]) == ["Hello from a DM."], what="the /ask answer"
        )
        channel_calls = [c for c in bot.fake.calls if c.path.startswith("/channels/")]
        assert channel_calls == []  # no typing, no send, no history read: only the interaction's webhook
    assert "[message from Bob]\nerror E42 again" in user_contents(fake_llm.requests[0])[0][1]
    assert user_contents(fake_llm.requests[1]) == [("user", "hi there")]  # a DM: no name label


async def test_a_user_installed_answer_past_its_followups_ends_with_a_note(make_settings, fake_llm):
    """Discord takes 5 followups to an interaction used through a user's install alone: a long
    answer ends visibly in the last one instead of losing its end to a refused 6th."""
    text = "\n\n".join(f"Paragraph {i}: " + " ".join(f"word{i}-{j}" for j in range(60)) for i in range(12))
    fake_llm.reply(text)
    fake_llm.reply(text)
    note = cut_note(6)
    async with running_bot(make_settings, bot_message_limit=600) as bot:
        ask = await bot.fake.interact(
            "ask", {"question": "write a lot"}, channel=PRIVATE_CHANNEL_ID, user_install=True
        )
        token = ask["token"]
        await wait_for(lambda: note in "".join(bot.fake.interaction_messages(token)), what="the cut note")
        shown = bot.fake.interaction_messages(token)
        followups = bot.fake.find("POST", rf"/webhooks/\d+/{token}")
        server = await bot.fake.interact("ask", {"question": "write a lot"})
        await wait_for(
            lambda: join_parts(bot.fake.interaction_messages(server["token"])) == text, what="the whole answer"
        )
        in_server = bot.fake.interaction_messages(server["token"])
    assert len(shown) == 6 and shown[-1].endswith(note)
    assert len(followups) == 5  # never a 6th, which Discord would refuse
    said = join_parts([strip_notes(m) for m in shown])
    assert text.startswith(said) and len(said) > 5 * 500  # the first six messages' worth, cut on a boundary
    assert len(in_server) > 6 and note not in "".join(in_server)  # installed in the server: no such limit


async def test_over_the_quota_the_refusal_shows_in_the_response(make_settings, fake_llm):
    fake_llm.reply(ANSWER)
    async with running_bot(make_settings, bot_user_requests_per_minute=1) as bot:
        first = await bot.fake.interact("ask", {"question": "what is E42?"})
        await wait_for(lambda: bot.fake.interaction_messages(first["token"]) == [ANSWER], what="the first answer")
        target = await bot.fake.say("E42 again", author=BOB, dispatch=False)
        payload = await bot.fake.use_menu(SUMMARIZE, target)
        await wait_for(lambda: bot.fake.interaction_messages(payload["token"]), what="the refusal")
        (refusal,) = bot.fake.interaction_messages(payload["token"])
    assert "You are asking faster than 1 questions a minute" in refusal
    assert len(fake_llm.requests) == 1
