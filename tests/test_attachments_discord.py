"""Files attached to Discord messages, end to end: the real discord.py client, the fake Discord
serving ``attachments[]`` from its CDN and the fake model recording what it was asked."""

from __future__ import annotations

from tests.discord_harness import running_bot, wait_for
from tests.fakes.discord import CHANNEL_ID, DM_CHANNEL_ID, FakeDiscord
from tests.fakes.files import pdf


def last_text(fake: FakeDiscord, channel: int = CHANNEL_ID) -> str:
    texts = [m["content"] for m in fake.bot_messages(channel)]
    return texts[-1] if texts else ""


def question_sent(fake_llm, n: int = 0) -> str:
    return str(fake_llm.requests[n]["messages"][-1]["content"])


async def test_text_and_pdf_attachments_reach_the_model_labelled(make_settings, fake_llm):
    fake_llm.reply("Both read.")
    async with running_bot(make_settings) as bot:
        files = [
            bot.fake.attach("data.json", b'{"ok": true, "count": 3}', "application/json"),
            bot.fake.attach("paper.pdf", pdf("Results improved by 12 percent."), "application/pdf"),
        ]
        await bot.fake.say("compare these", mention_bot=True, attachments=files)
        await wait_for(lambda: last_text(bot.fake) == "Both read.", what="the answer")
    assert question_sent(fake_llm) == (
        "Alice A.: compare these\n\n"
        '[file: data.json]\n{"ok": true, "count": 3}\n[end of file: data.json]\n\n'
        "[file: paper.pdf]\nResults improved by 12 percent.\n[end of file: paper.pdf]"
    )


async def test_an_image_only_dm_gets_the_note_and_an_image_with_text_is_answered(make_settings, fake_llm):
    fake_llm.reply("Hard to say without seeing it.")
    async with running_bot(make_settings) as bot:
        await bot.fake.say("", dm=True, attachments=[bot.fake.attach("shot.png", bytes(64), "image/png")])
        await wait_for(lambda: "text-only" in last_text(bot.fake, DM_CHANNEL_ID), what="the note")
        note = last_text(bot.fake, DM_CHANNEL_ID)
        assert "I can't read images: the model is text-only (shot.png)" in note and "empty" not in note
        assert fake_llm.requests == []

        image = bot.fake.attach("chart.webp", bytes(64), "image/webp")
        await bot.fake.say("is this trending up?", mention_bot=True, attachments=[image])
        await wait_for(lambda: "Hard to say" in last_text(bot.fake), what="the answer")
        await wait_for(lambda: "text-only (chart.webp)" in last_text(bot.fake), what="its note")
    assert question_sent(fake_llm) == "Alice A.: is this trending up?\n\n[attached, not readable here: chart.webp]"
    assert bot.fake.files.downloads == []


async def test_a_failed_download_is_a_note_and_an_oversize_file_is_cut(make_settings, fake_llm):
    fake_llm.reply("Done.")
    async with running_bot(make_settings, bot_attachment_max_bytes=1000) as bot:
        files = [
            bot.fake.attach("missing.txt", b"x", status=404),
            bot.fake.attach("huge.log", b"ok\n" * 5000),
        ]
        await bot.fake.say("check", mention_bot=True, attachments=files)
        await wait_for(lambda: "Done." in last_text(bot.fake) and "huge.log" in last_text(bot.fake), what="answer")
        text = last_text(bot.fake)
    assert "could not download missing.txt: the file is gone (HTTP 404)" in text
    assert "huge.log is larger than 1 KB: only its beginning was read" in text
    sent = question_sent(fake_llm)
    assert sent.startswith("Alice A.: check\n\n[file: huge.log]\nok\nok\n")
    assert "[… the rest of huge.log was not read …]" in sent and "missing.txt" in sent


async def test_a_file_earlier_in_a_reply_chain_is_read_once_and_its_counts_stay_cached(make_settings, fake_llm):
    fake_llm.reply("Stored.")
    fake_llm.reply("Tuesday.")
    async with running_bot(make_settings) as bot:
        first = await bot.fake.say("remember", mention_bot=True, attachments=[bot.fake.attach("dates.md", b"Ship: Tuesday")])
        await wait_for(lambda: last_text(bot.fake) == "Stored.", what="the first answer")
        answer = bot.fake.bot_messages(CHANNEL_ID)[-1]
        await bot.fake.say("when do we ship?", reply_to=int(answer["id"]))
        await wait_for(lambda: last_text(bot.fake) == "Tuesday.", what="the second answer")
        counter = bot.service.counter
    earlier = fake_llm.requests[1]["messages"][1]["content"]
    assert earlier == "Alice A.: remember\n\n[file: dates.md]\nShip: Tuesday\n[end of file: dates.md]"
    assert len(bot.fake.files.downloads) == 1
    # the history reader's count (the message's own text) and the fit's (with its file) both stay cached
    assert counter.known(f"discord:{first['id']}", "Alice A.: remember")
    assert counter.known(f"discord:{first['id']}+files", earlier)


async def test_the_first_platform_call_does_not_wait_for_a_download(make_settings, fake_llm):
    fake_llm.reply("Read it.")
    async with running_bot(make_settings) as bot:
        slow = bot.fake.attach("slow.txt", b"worth the wait", delay=1.5)
        await bot.fake.say("read this", mention_bot=True, attachments=[slow])
        await wait_for(lambda: bot.fake.find("POST", rf"/channels/{CHANNEL_ID}/typing"), what="typing")
        assert not fake_llm.requests  # typing shows while the file is still downloading
        await wait_for(lambda: last_text(bot.fake) == "Read it.", what="the answer")
    assert question_sent(fake_llm).endswith("[file: slow.txt]\nworth the wait\n[end of file: slow.txt]")
