"""Files attached to Slack questions, end to end: the real Bolt stack, the fake Slack serving the
files (to the bot token only) and the fake model recording what it was asked."""

from __future__ import annotations

from bot import tokens
from tests.fakes.files import pdf
from tests.fakes.slack import BOT_TOKEN, BOT_USER
from tests.slack_helpers import mention, reply_text, thread_texts, until

pytest_plugins = ("tests.slack_env",)


def question_sent(fake_llm, n: int = 0) -> str:
    return str(fake_llm.requests[n]["messages"][-1]["content"])


async def ask_with_files(slack, fake_llm, question: str, files: list, *, answer: str, note: str) -> tuple[str, str]:
    """Mention the bot with ``files``; once the answer ``answer`` with ``note`` shows: (the question
    the model got, the reply's text)."""
    fake_llm.reply(answer)
    event = mention(slack, f"<@{BOT_USER}> {question}", files=files)
    await slack.deliver(slack.callback(event))
    await until(lambda: any(answer in t and note in t for t in thread_texts(slack, "C1", event["ts"])),
                what=f"the answer with the note {note!r}")
    return question_sent(fake_llm), thread_texts(slack, "C1", event["ts"])[-1]


async def test_text_code_csv_and_pdf_files_reach_the_model_labelled(slack, start_bot, fake_llm):
    fake_llm.reply("Looked at all four.")
    await start_bot()
    files = [
        slack.file("notes.txt", b"The deploy is on Friday."),
        slack.file("job.py", b"def run():\n    return 42\n", "text/x-python"),
        slack.file("sales.csv", b"month,total\njan,10\nfeb,12\n", "text/csv"),
        slack.file("report.pdf", pdf("Quarterly revenue was 42 million."), "application/pdf"),
    ]
    event = mention(slack, f"<@{BOT_USER}> summarise these", files=files, subtype="file_share")
    await slack.deliver(slack.callback(event))
    await reply_text(slack, "C1", event["ts"], "Looked at all four.")

    sent = question_sent(fake_llm)
    assert sent.startswith("Ada: summarise these\n\n[file: notes.txt]\nThe deploy is on Friday.\n[end of file: notes.txt]")
    assert "[file: job.py]\ndef run():\n    return 42\n\n[end of file: job.py]" in sent
    assert "[file: sales.csv]\nmonth,total\njan,10\nfeb,12\n" in sent
    assert "[file: report.pdf]\nQuarterly revenue was 42 million.\n[end of file: report.pdf]" in sent
    # downloaded with the bot token (Slack's url_private_download needs it)
    assert {auth for _, auth in slack.files.downloads} == {f"Bearer {BOT_TOKEN}"}


async def test_a_file_earlier_in_the_thread_stays_in_the_conversation(slack, start_bot, fake_llm):
    fake_llm.reply("Noted.")
    fake_llm.reply("Friday.")
    bot = await start_bot()
    first = mention(slack, f"<@{BOT_USER}> keep this", files=[slack.file("plan.md", b"# Plan\nShip on Friday.")])
    await slack.deliver(slack.callback(first))
    await reply_text(slack, "C1", first["ts"], "Noted.")
    follow = slack.say(f"<@{BOT_USER}> when do we ship?", thread_ts=first["ts"])
    await slack.deliver(slack.callback({**follow, "type": "app_mention"}))
    await reply_text(slack, "C1", first["ts"], "Friday.")

    earlier = fake_llm.requests[1]["messages"][1]
    assert earlier == {"role": "user", "content": "Ada: keep this\n\n[file: plan.md]\n# Plan\nShip on Friday.\n[end of file: plan.md]"}
    assert len(slack.files.downloads) == 1  # read once, remembered
    # its token count is cached under the message's id (+files), for the text with the file in it
    await bot.service.tasks.wait_idle()
    key = f"slack:C1:{first['ts']}+files"
    cached = await bot.service.store.cached_counts([key])
    assert cached[key] == (tokens.digest(earlier["content"]), tokens.count(earlier["content"]))


async def test_an_image_gets_a_note_and_the_question_is_answered(slack, start_bot, fake_llm):
    await start_bot()
    image = slack.file("cat.png", b"\x89PNG\r\n\x1a\n" + bytes(64), "image/png")
    sent, text = await ask_with_files(slack, fake_llm, "what is this?", [image], answer="A cat, probably.", note="text-only")
    assert "I can't read images: the model is text-only (cat.png)" in text
    assert sent == "Ada: what is this?\n\n[attached, not readable here: cat.png]"
    assert slack.files.downloads == []  # an image is never downloaded


async def test_a_message_that_is_only_an_image_gets_the_note_not_empty(slack, start_bot, fake_llm):
    await start_bot()
    image = slack.file("photo.jpg", b"\xff\xd8\xff" + bytes(64), "image/jpeg")
    event = slack.say("", channel="D1", files=[image], subtype="file_share")
    await slack.deliver(slack.callback(event))

    await until(lambda: thread_texts(slack, "D1", None), what="the note")
    await until(lambda: "text-only" in thread_texts(slack, "D1", None)[-1], what="the final note")
    text = thread_texts(slack, "D1", None)[-1]
    assert "I can't read images: the model is text-only (photo.jpg)" in text
    assert "empty" not in text
    assert fake_llm.requests == []


async def test_an_oversize_file_is_cut_with_a_note(slack, start_bot, fake_llm):
    await start_bot(bot_attachment_max_bytes=2000)
    log = "".join(f"line {n}: all good\n" for n in range(1000)).encode()
    sent, text = await ask_with_files(
        slack, fake_llm, "anything wrong?", [slack.file("app.log", log)], answer="It is a long log.", note="app.log"
    )
    assert sent.startswith("Ada: anything wrong?\n\n[file: app.log]\nline 0: all good\n")
    assert "line 999" not in sent and "[… the rest of app.log was not read …]" in sent
    assert "app.log is larger than 2 KB: only its beginning was read" in text


async def test_files_past_the_count_are_not_read_and_a_long_text_loses_its_middle(slack, start_bot, fake_llm):
    await start_bot(bot_attachment_max_files=2, bot_attachment_max_chars=1000)
    lines = "".join(f"entry {n:04d}\n" for n in range(300)).encode()  # 3,300 characters
    files = [slack.file("a.log", lines), slack.file("b.txt", b"second"), slack.file("c.txt", b"third")]
    sent, text = await ask_with_files(slack, fake_llm, "read all", files, answer="Two of three.", note="3 files")
    assert "only the first 2 of the 3 files attached were read" in text
    assert "a.log is longer than 1,000 characters: its middle was cut" in text
    assert sent.startswith("Ada: read all\n\n[file: a.log]\nentry 0000\n")
    assert "[… 2,300 characters cut from the middle of this file …]" in sent and "entry 0299\n" in sent
    assert "entry 0150" not in sent
    assert sent.endswith("[file: b.txt]\nsecond\n[end of file: b.txt]") and "third" not in sent
    assert sorted(name for name, _ in slack.files.downloads) == ["a.log", "b.txt"]  # the third is not fetched


async def test_a_file_too_long_for_the_window_is_cut_in_the_middle(slack, start_bot, fake_llm):
    await start_bot(openai_context_window=4096, bot_max_tokens=512)
    words = " ".join(f"word{n}" for n in range(6000)).encode()
    sent, text = await ask_with_files(
        slack, fake_llm, "what is in it?", [slack.file("big.txt", words)], answer="Read what fitted.", note="cut"
    )
    assert "(your message was too long: its middle was cut)" in text
    assert sent.startswith("Ada: what is in it?\n\n[file: big.txt]\nword0 word1")
    assert "tokens cut from the middle of this message" in sent
    assert sent.endswith("word5999\n[end of file: big.txt]")


async def test_a_failed_download_is_a_note_and_the_question_is_answered(slack, start_bot, fake_llm):
    await start_bot(bot_attachment_timeout=2.0)  # room for a busy CI machine's 404, far below the slow one
    gone = slack.file("gone.txt", b"x", status=404)
    slow = slack.file("slow.txt", b"y", delay=6.0)
    sent, text = await ask_with_files(
        slack, fake_llm, "read these", [gone, slow], answer="Answered anyway.", note="slow.txt"
    )
    assert "could not download gone.txt: the file is gone (HTTP 404)" in text
    assert "could not download slow.txt: no answer within 2 s" in text
    assert sent == "Ada: read these\n\n[attached, not readable here: gone.txt, slow.txt]"


async def test_a_token_slack_does_not_take_for_files_gets_a_note_naming_the_scope(slack, start_bot, fake_llm):
    """Without ``files:read`` Slack answers a download with its sign-in page (a redirect)."""
    await start_bot()
    slack.files.token = "xoxb-another-install"  # the file host takes another token than the bot's
    sent, text = await ask_with_files(
        slack, fake_llm, "read it", [slack.file("plan.txt", b"ship it")], answer="Could not see it.", note="plan.txt"
    )
    assert "could not download plan.txt: Slack sent its sign-in page instead (does the app have the files:read scope?" in text
    assert sent == "Ada: read it\n\n[attached, not readable here: plan.txt]"


async def test_the_bot_token_goes_to_slack_only(slack, start_bot, fake_llm):
    await start_bot()
    elsewhere = slack.file("leak.txt", b"secret")
    elsewhere["url_private_download"] = elsewhere["url_private_download"].replace("127.0.0.1", "localhost")
    _, text = await ask_with_files(
        slack, fake_llm, "read it", [elsewhere], answer="Nothing to read.", note="leak.txt"
    )
    assert "could not download leak.txt: it is not hosted by Slack" in text
    assert slack.files.downloads == []  # never asked, so no token went out
