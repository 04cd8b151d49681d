"""Finals first: under a busy edit budget the end of an answer does not wait behind interim edits.

The real Bolt app and Socket Mode stack against the fake Slack (``tests.fakes.slack``),
the real discord.py client against the fake Discord, and the fake model.  What the user sees is checked: the whole answer (split messages
joined), no placeholder left behind, every Retry-After honoured.
"""

from __future__ import annotations

from adapters.slack.events import PLACEHOLDER
from bot.pacing import EditBudget
from bot.splitting import join_parts
from tests.discord_harness import running_bot, wait_for
from tests.fakes.discord import CHANNEL_ID, FakeDiscord
from tests.fakes.slack import BOT_USER, FakeSlack
from tests.slack_helpers import mention, thread_texts, until

pytest_plugins = ("tests.slack_env",)


def no_placeholder(slack: FakeSlack) -> bool:
    return not any(PLACEHOLDER in m["text"] for ms in slack.messages.values() for m in ms.values())


async def test_an_answer_ends_in_a_new_message_rather_than_wait_out_a_minute_long_retry_after(
    slack, start_bot, fake_llm
):
    answer = " ".join(f"Busy word {n}." for n in range(40))
    fake_llm.reply(answer, delay=0.05)
    slack.limit("chat.update", 1, 60.0)  # the workspace's chat.update is spent for a minute
    await start_bot()
    event = mention(slack, f"<@{BOT_USER}> a long one please")
    await slack.deliver(slack.callback(event))

    def whole() -> list[str] | None:
        texts = thread_texts(slack, "C1", event["ts"])
        return texts if join_parts(texts) == answer else None

    texts = await until(whole, timeout=30, what="the whole answer, well before the Retry-After is over")
    assert len(texts) == 2  # the message shows what it showed; the rest continued below it
    assert slack.rate_limited >= 1  # an edit was refused for a minute ...
    assert slack.early_retries == 0  # ... and no edit came back before that minute was over
    assert no_placeholder(slack)

    follow = slack.say("and?", thread_ts=event["ts"])
    await slack.deliver(slack.callback(follow))
    await until(lambda: len(fake_llm.requests) == 2, what="the follow-up question")
    history = fake_llm.requests[1]["messages"]
    assert history[-2] == {"role": "assistant", "content": answer}  # the two messages are one turn


async def test_a_busy_workspace_gets_its_first_text_posted_instead_of_a_placeholder(slack, start_bot, fake_llm):
    answers = [" ".join(f"Reply{n} word {w}." for w in range(30)) for n in range(2)]
    for answer in answers:
        fake_llm.reply(answer, delay=0.05)
    await start_bot(slack_edits_per_minute=4)  # room for one reply's placeholder, not two
    events = [mention(slack, f"<@{BOT_USER}> question {n}", channel=f"C{n + 10}") for n in range(2)]
    for event in events:
        await slack.deliver(slack.callback(event))
    for event, answer in zip(events, answers, strict=True):
        await until(lambda e=event, a=answer: join_parts(thread_texts(slack, e["channel"], e["ts"])) == a,
                    timeout=30, what="both answers")
    first_posts = {c.params["channel"]: c.params["text"] for c in reversed(slack.called("chat.postMessage"))}
    assert first_posts["C10"] == PLACEHOLDER  # a quiet budget: the placeholder, edited into the answer
    assert first_posts["C11"] != PLACEHOLDER and first_posts["C11"].startswith("Reply1")  # busy: text at once
    assert no_placeholder(slack)

    # Meanwhile the busy one's question showed :eyes: (no chat.update spent), gone once its text showed.
    marks = [(c.method, c.params["channel"], c.params["timestamp"], c.params["name"])
             for c in slack.calls if c.method.startswith("reactions.")]
    assert marks == [("reactions.add", "C11", events[1]["ts"], "eyes"), ("reactions.remove", "C11", events[1]["ts"], "eyes")]
    calls = [c.method for c in slack.calls if c.params.get("channel") == "C11" and c.method != "conversations.replies"]
    assert calls.index("reactions.add") < calls.index("chat.postMessage") < calls.index("reactions.remove")
    await until(lambda: not slack.reactions("C11", events[1]["ts"]), what="the mark taken off")


def test_an_adapting_budget_learns_the_platforms_limit_from_a_429():
    budget = EditBudget(50, burst=50, window=60.0, adapt=True)
    for _ in range(12):
        budget._take(0.0)  # twelve edits granted in this window ...
    budget.pause(30.0)  # ... and then Slack said 429
    assert budget.burst == 12
    assert budget.next_grant() >= 29  # nothing before the Retry-After is over


async def test_the_web_api_calls_of_a_reply_share_their_connections(slack, start_bot, fake_llm):
    answer = " ".join(f"Kept word {n}." for n in range(30))
    fake_llm.reply(answer, delay=0.03)
    bot = await start_bot()
    event = mention(slack, f"<@{BOT_USER}> one more")
    await slack.deliver(slack.callback(event))
    await until(lambda: join_parts(thread_texts(slack, "C1", event["ts"])) == answer, what="the answer")
    assert len(slack.calls) >= 5
    assert len(slack.peers) <= 2  # one kept connection (two if a call raced another), not one per call
    await bot.stop()
    assert bot.client.session is None  # closed on shutdown



async def test_long_discord_answers_in_one_busy_channel_all_land_their_last_messages(make_settings, fake_llm):
    answers = [" ".join(f"Long{n} answer word {w}." for w in range(220)) for n in range(3)]  # ~5,000 chars
    for answer in answers:
        fake_llm.reply(answer, delay=0.005)
    fake = FakeDiscord(write_limit=(5, 5.0))  # Discord's message bucket: 5 writes per 5 s per channel
    async with running_bot(make_settings, fake) as bot:
        questions = [await fake.say(f"question {n}", mention_bot=True) for n in range(3)]

        def replies() -> list[str]:
            """Each question's answer: its reply and the continuations chained to it, joined."""
            after: dict[str, dict] = {}
            for message in fake.bot_messages(CHANNEL_ID):
                ref = (message.get("message_reference") or {}).get("message_id")
                after[str(ref)] = message
            texts = []
            for question in questions:
                parts, at = [], after.get(str(question["id"]))
                while at is not None:
                    parts.append(at["content"])
                    at = after.get(str(at["id"]))
                texts.append(join_parts(parts))
            return texts

        await wait_for(lambda: replies() == answers, timeout=90, what="every answer whole, last messages included")
        assert len(fake.bot_messages(CHANNEL_ID)) == 9  # three messages each, none lost or doubled
        assert fake.limited <= 3  # the bucket was shared, not stormed


async def test_without_the_reactions_scope_a_busy_workspace_answers_and_stops_asking(slack, start_bot, fake_llm, caplog):
    slack.errors["reactions.add"] = [{"error": "missing_scope", "needed": "reactions:write"}]
    await start_bot(slack_edits_per_minute=1)  # never room for a placeholder
    for n in range(2):
        fake_llm.reply(f"Answer {n}.")
        event = mention(slack, f"<@{BOT_USER}> question {n}", channel=f"C{n + 20}")
        await slack.deliver(slack.callback(event))
        await until(lambda e=event, n=n: thread_texts(slack, e["channel"], e["ts"]) == [f"Answer {n}."],
                    timeout=30, what=f"answer {n}")
    assert [c.method for c in slack.calls if c.method.startswith("reactions.")] == ["reactions.add"]  # asked once
    assert "lacks the scope 'reactions:write'" in caplog.text


async def test_placeholders_get_their_first_text_while_later_replies_fill_the_workspace(slack, start_bot, fake_llm):
    # 10 edits a minute: the first questions get a placeholder, the ones after them do not; twelve
    # replies streaming then keep room for twelve finals, more than the whole budget.
    answers = {" ".join(f"Reply{n} word {w}." for w in range(40)) for n in range(12)}
    for answer in answers:  # (the fake model answers in the order the questions reach it)
        fake_llm.reply(answer, ttft=1.0, delay=0.05)
    await start_bot(slack_edits_per_minute=10)
    events = [mention(slack, f"<@{BOT_USER}> question {n}", channel=f"C{n + 30}") for n in range(12)]
    for event in events:
        await slack.deliver(slack.callback(event))

    def whole() -> dict[str, str] | None:
        shown = {e["channel"]: join_parts(thread_texts(slack, e["channel"], e["ts"])) for e in events}
        return shown if set(shown.values()) == answers else None

    final = await until(whole, timeout=60, what="every answer")
    placeholders = {c.params["channel"] for c in slack.called("chat.postMessage") if c.params["text"] == PLACEHOLDER}
    assert 2 <= len(placeholders) <= 4  # the first ones (timing decides exactly how many)
    for channel in placeholders:
        texts = [c.params["text"] for c in slack.called("chat.update") if c.params["channel"] == channel]
        assert texts and texts[0] != PLACEHOLDER
        assert final[channel].startswith(texts[0]) and texts[0] != final[channel]  # shown as it came, not at the end
    assert no_placeholder(slack)


async def test_eyes_marks_keep_to_the_reactions_limits(slack, start_bot, fake_llm):
    # 25 questions at once in a workspace with no edit room: each may get :eyes:, but
    # reactions.remove is Tier 2 (20 a minute): 20 marks come off at once, the rest wait their
    # turn instead of being refused.
    slack.slack_limits()
    await start_bot(slack_edits_per_minute=1)
    events = [mention(slack, f"<@{BOT_USER}> question {n}", channel=f"C{n + 50}") for n in range(25)]
    for n, _ in enumerate(events):
        fake_llm.reply(f"Answer {n}.", ttft=0.5)
    for event in events:
        await slack.deliver(slack.callback(event))
    await until(lambda: all(thread_texts(slack, e["channel"], e["ts"]) for e in events), timeout=30, what="answers")
    await until(lambda: len(slack.called("reactions.remove")) == 20, what="the first minute's removals")
    added = slack.called("reactions.add")
    assert len(added) == 25  # every question showed it was seen
    assert not [c for c in slack.calls if c.method.startswith("reactions.") and c.status == 429]
    still = [e for e in events if slack.reactions(e["channel"], e["ts"])]
    assert len(still) == 5  # up until the remove budget turns (a minute), then taken off


async def test_a_mark_left_by_a_dead_process_comes_off_with_the_new_answer(slack, start_bot, fake_llm):
    await start_bot(slack_edits_per_minute=1)  # never room for a placeholder
    fake_llm.reply("Answered again.", ttft=0.3)
    event = mention(slack, f"<@{BOT_USER}> a question asked before a crash")
    slack.messages["C1"][event["ts"]]["reactions"] = [{"name": "eyes", "users": [BOT_USER], "count": 1}]
    await slack.deliver(slack.callback(event))
    await until(lambda: thread_texts(slack, "C1", event["ts"]) == ["Answered again."], what="the answer")
    await until(lambda: not slack.reactions("C1", event["ts"]), what="the old mark taken off")
    assert [c.error for c in slack.calls if c.method == "reactions.add"] == ["already_reacted"]
