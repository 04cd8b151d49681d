"""End to end: the real discord.py client against the fake Discord and the fake model."""

from __future__ import annotations

from tests.discord_harness import running_bot, wait_for
from tests.fakes.discord import ALICE, BOT_ID, CHANNEL_ID, FakeDiscord

ANSWER = "Paris is the capital of France. It sits on the Seine."


def final_text(fake: FakeDiscord, channel: int = CHANNEL_ID) -> str:
    msgs = fake.bot_messages(channel)
    return msgs[-1]["content"] if msgs else ""


async def test_mention_gets_streamed_reply(make_settings, fake_llm):
    fake_llm.reply(ANSWER, delay=0.02)
    async with running_bot(make_settings) as bot:
        question = await bot.fake.say("What is the capital of France?", mention_bot=True)
        await wait_for(lambda: final_text(bot.fake) == ANSWER, what="the final answer")
        posts = bot.fake.find("POST", rf"/channels/{CHANNEL_ID}/messages")
        edits = bot.fake.find("PATCH", rf"/channels/{CHANNEL_ID}/messages/\d+")
        assert len(posts) == 1
        assert str(posts[0].body["message_reference"]["message_id"]) == question["id"]
        assert edits, "the answer was streamed through edits"
        assert bot.fake.find("POST", rf"/channels/{CHANNEL_ID}/typing")
        sent = fake_llm.requests[-1]["messages"]
        assert sent[-1] == {"role": "user", "content": "Alice A.: What is the capital of France?"}
        assert int(bot.fake.bot_messages(CHANNEL_ID)[0]["author"]["id"]) == BOT_ID
        assert ALICE
