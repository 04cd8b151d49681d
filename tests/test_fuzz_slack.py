"""Bad input, Slack: malformed events through the real Bolt app over the fake's Socket Mode websocket.

One bot runs for all examples of a test (starting one per example is slow).
After each delivery the test waits until Bolt's listener task and the
service's reply tasks are done, then checks: nothing logged an error or a
traceback, at most one model request and a bounded number of Slack calls per
event, no "thinking…" placeholder left anywhere.  At the end the bot still
answers a normal mention, and the reopened store has no half-done reply and
still dedupes.  The pure functions (``events.trigger``, ``thread_turns``,
``plain_text``) get the same values directly.
"""

from __future__ import annotations

import copy
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from adapters.slack import events
from adapters.slack.events import REPLY_EVENT
from tests.fakes.slack import BOT_ID, BOT_USER, FakeSlack
from tests.fuzz_support import NASTY_TEXT, SPECIAL_TOKENS, WRONG, LogWatch, nested
from tests.slack_fuzz_support import check_store, placeholders_left, settled
from tests.slack_helpers import mention, reply_text, thread_texts

pytest_plugins = ("tests.slack_env",)

MAX_CALLS_PER_EVENT = 16  # users.info, conversations.replies, postMessage, updates ... far below a loop
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
FIELDS = ["type", "user", "channel", "ts", "text", "thread_ts", "channel_type", "subtype", "blocks", "team"]
MEGABYTE = ("lorem ipsum dolor sit amet " * 40_000)[:1_000_000]
SUBTYPES = [
    None,
    "file_share",
    "thread_broadcast",
    "message_changed",
    "message_deleted",
    "bot_message",
    "channel_join",
    "huddle_thread",
    "totally_new_subtype",
]


@st.composite
def slack_event(draw: st.DrawFn) -> dict[str, Any]:
    """A message/app_mention event, some fields dropped or given wrong or hostile values.

    The ``ts`` is a placeholder (``"<ts>"``): the test fills in a fresh one.
    """
    channel = draw(st.sampled_from(["C1", "D1", "CFUZZ"]))
    prefix = draw(st.sampled_from([f"<@{BOT_USER}> "] * 3 + [f"<@{BOT_USER}|relay>", "", f"<@{BOT_USER}"]))
    event: dict[str, Any] = {
        "type": draw(
            st.sampled_from(["app_mention"] * 4 + ["message"] * 3 + ["reaction_added", "", "x" * 300])
        ),
        "user": draw(st.sampled_from(["U1", "U1", "U2", BOT_USER])),
        "channel": channel,
        "channel_type": "im" if channel.startswith("D") else "channel",
        "ts": "<ts>",
        "text": prefix + draw(NASTY_TEXT),
        "team": "T1",
    }
    if draw(st.booleans()):
        event["thread_ts"] = draw(
            st.sampled_from(["<ts>", "1700000000.000001", "0", "nan", "-1.5", "x" * 50])
        )
    subtype = draw(st.sampled_from([None] * 6 + SUBTYPES))
    if subtype is not None:
        event["subtype"] = subtype
    if draw(st.booleans()):
        event["blocks"] = [nested(draw(st.integers(min_value=0, max_value=60)))] * draw(
            st.integers(min_value=1, max_value=20)
        )
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
        if draw(st.booleans()):
            event.pop(field, None)
        else:
            event[field] = draw(WRONG)
    return event


@st.composite
def callback_body(draw: st.DrawFn) -> dict[str, Any]:
    """The envelope's payload around an event, itself sometimes malformed."""
    body: dict[str, Any] = {
        "type": "event_callback",
        "team_id": "T1",
        "api_app_id": "A1",
        "event_id": "<id>",
        "event_time": 1_700_000_000,
        "event": draw(slack_event()),
        "authorizations": [{"team_id": "T1", "user_id": BOT_USER, "is_bot": True}],
    }
    for field in draw(
        st.lists(st.sampled_from(["event_id", "team_id", "authorizations", "event_time"]), max_size=2)
    ):
        if draw(st.booleans()):
            body.pop(field, None)
        else:
            body[field] = draw(WRONG)
    return body


def bolt_rejects(body: dict[str, Any]) -> bool:
    """Whether Bolt's own request parsing fails on ``body`` before any listener of ours runs.

    Bolt calls ``len(body["authorizations"])``, ``body["event"].get(...)`` and
    ``"id" in event["user"]`` / ``event["channel"]``: a number there, or an event that is no
    object, raises inside Bolt, which logs it and does not ack (Slack would retry, then give up).
    """
    event, grants = body.get("event"), body.get("authorizations", [])
    if (
        not isinstance(event, dict)
        or grants is not None
        and not (isinstance(grants, list) and all(isinstance(g, dict) for g in grants))
    ):
        return True
    return any(isinstance(event.get(key), (int, float)) for key in ("user", "channel"))


def fill(slack: FakeSlack, body: dict[str, Any], n: int) -> dict[str, Any]:
    """Give the example a fresh ts and event id where it kept the placeholders."""
    body = copy.deepcopy(body)
    ts = slack.next_ts()
    event = body.get("event")
    if isinstance(event, dict):
        for key in ("ts", "thread_ts"):
            if event.get(key) == "<ts>":
                event[key] = ts
    if body.get("event_id") == "<id>":
        body["event_id"] = f"EvFuzz{n:06d}"
    return body


# -- pure functions -----------------------------------------------------------------------------


@given(slack_event(), st.sampled_from(["1700000001.000001", "<ts>"]))
@settings(max_examples=300, deadline=None)
def test_trigger_never_raises_and_yields_clean_fields(event, ts):
    event = {k: (ts if v == "<ts>" else v) for k, v in event.items()}
    trig = events.trigger(event, "T1", BOT_USER, BOT_ID)
    if trig is None:
        return
    for value in (trig.channel, trig.user, trig.ts):
        assert isinstance(value, str) and value.isascii() and value.isprintable()
    assert isinstance(trig.text, str)
    assert trig.user != BOT_USER
    events.plain_text(trig.text, BOT_USER, {"U1": "Ada"})


@st.composite
def history_message(draw: st.DrawFn) -> dict[str, Any]:
    own = draw(st.booleans())
    message: dict[str, Any] = {
        "type": "message",
        "ts": draw(st.one_of(st.sampled_from(["1.1", "2.2", "x"]), WRONG)),
        "user": BOT_USER if own else draw(st.one_of(st.sampled_from(["U1", "U2"]), WRONG)),
        "text": draw(st.one_of(NASTY_TEXT, WRONG)),
    }
    if own and draw(st.booleans()):
        message["bot_id"] = BOT_ID
    if own and draw(st.booleans()):
        payload = draw(
            st.one_of(
                WRONG,
                st.fixed_dictionaries(
                    {},
                    optional={"part": WRONG, "head": WRONG, "foot": WRONG, "asker": WRONG},
                ),
            )
        )
        message["metadata"] = draw(
            st.one_of(WRONG, st.just({"event_type": REPLY_EVENT, "event_payload": payload}))
        )
    if draw(st.booleans()):
        message["subtype"] = draw(st.one_of(st.sampled_from(SUBTYPES), WRONG))
    return message


@given(st.lists(history_message(), max_size=8), st.booleans())
@settings(max_examples=300, deadline=None)
def test_thread_turns_never_raise_and_keep_roles(messages, labelled):
    turns = events.thread_turns(messages, BOT_USER, BOT_ID, {"U1": "Ada"}, labelled=labelled)
    assert all(t.role in ("user", "assistant") and isinstance(t.text, str) and t.text for t in turns)
    assert all("\ud800" > c or c > "\udfff" for t in turns for c in t.text)  # no lone surrogates left


# -- the real Bolt app ----------------------------------------------------------------------------


@pytest.fixture
async def fuzz_bot(slack, start_bot, fake_llm, make_settings) -> AsyncIterator[tuple[Any, LogWatch]]:
    """One bot for every example; afterwards it must still answer, and its store must be sound."""
    bot = await start_bot()
    with LogWatch() as watch:
        yield bot, watch
        fake_llm.reply("Still here.")
        probe = mention(slack, f"<@{BOT_USER}> are you alive?")
        await slack.deliver(slack.callback(probe))
        await reply_text(slack, "C1", probe["ts"], "Still here.")
        await settled(bot, slack)
        assert watch.ours(0) == []
    await bot.stop(grace=10)
    await check_store(make_settings().bot_database, answered_min=1)


@given(body=callback_body(), twice=st.booleans())
@example(body={"type": "event_callback", "event_id": "<id>", "event": "not a dict"}, twice=False)
@example(body={"type": "event_callback", "event_id": "<id>"}, twice=False)
@example(body={"type": "app_rate_limited", "team_id": "T1"}, twice=False)
@example(body={"type": "event_callback", "event_id": ["x"], "event": {"type": "message"}}, twice=True)
@example(
    body={
        "type": "event_callback",
        "team_id": "T1",
        "event_id": "Ev\ud800",
        "event": {
            "type": "app_mention",
            "user": "U1",
            "channel": "C\udfff",
            "ts": "<ts>",
            "text": "<@UBOT> hi",
        },
    },
    twice=False,
)
@FUZZ
async def test_malformed_events_through_bolt(fuzz_bot, slack, fake_llm, body, twice):
    bot, watch = fuzz_bot
    body = fill(slack, body, len(slack.calls))
    mark, calls, asked = len(watch.bad), len(slack.calls), len(fake_llm.requests)
    await slack.deliver(body, wait=False)  # Bolt does not ack what it cannot handle (Slack retries)
    if twice:
        await slack.deliver(body, retry_attempt=1, wait=False)
    await settled(bot, slack)
    assert watch.ours(mark) == []
    if not bolt_rejects(body):
        assert watch.since(mark) == []
    assert len(fake_llm.requests) - asked <= 1  # a duplicate delivery never asks twice
    event("answered" if len(fake_llm.requests) > asked else "ignored")
    assert len(slack.calls) - calls <= MAX_CALLS_PER_EVENT
    assert placeholders_left(slack) == []


async def test_the_bot_survives_the_fuzz_and_its_store_is_intact(slack, start_bot, fake_llm, make_settings):
    """After a burst of hostile events the same bot answers a normal mention; the store is sound."""
    bot = await start_bot()
    hostile = [
        {"type": "app_mention", "user": "U1", "channel": "C1", "text": f"<@{BOT_USER}> " + SPECIAL_TOKENS[2]},
        {"type": "app_mention", "user": "U1", "channel": "C1", "text": f"<@{BOT_USER}> " + MEGABYTE},
        {"type": "app_mention", "user": "U1", "channel": "C1", "text": f"<@{BOT_USER}> \x00\x07\x1b bell"},
        {"type": "app_mention", "user": "U1", "channel": "C1", "text": f"<@{BOT_USER}>   "},
        {"type": "app_mention", "user": 5, "channel": "C1", "text": f"<@{BOT_USER}> Bolt rejects this"},
        {"type": "app_mention", "user": {"id": "U1"}, "channel": "C1", "text": f"<@{BOT_USER}> object user"},
        {"type": "app_mention", "user": "U1", "channel": ["C1"], "text": f"<@{BOT_USER}> list channel"},
        {"type": "app_mention", "user": "U1", "channel": "C1", "text": {"rich": "text"}},
        {
            "type": "message",
            "user": "U1",
            "channel": "C1",
            "subtype": "brand_new",
            "text": f"<@{BOT_USER}> n",
        },
        {"type": "message", "user": "U1", "channel": "C1", "subtype": ["x"], "text": f"<@{BOT_USER}> n"},
        {"type": "message", "user": "U1", "channel": "C1", "text": "no mention", "thread_ts": "bogus"},
    ]
    with LogWatch() as watch:
        bodies = []
        for event in hostile:
            event["ts"] = slack.next_ts()
            bodies.append(slack.callback(event))
        for body in bodies:
            await slack.deliver(body, wait=False)
        await slack.deliver(bodies[0], retry_attempt=1)  # a redelivery
        await settled(bot, slack)
        assert watch.ours(0) == []
        assert len(watch.since(0)) == 1 and "Failed to run a request listener" in watch.since(0)[0]
        # answered: the special tokens, the 1 MB text (cut), the control characters, the empty mention
        assert len(fake_llm.requests) == 3
        contents = sorted((r["messages"][-1]["content"] for r in fake_llm.requests), key=len)
        assert contents[0] == "Ada: \x00\x07\x1b bell"
        assert contents[1] == "Ada: " + SPECIAL_TOKENS[2].strip()  # plain text, passed on verbatim
        assert "tokens cut from the middle" in contents[2] and len(contents[2]) < len(MEGABYTE)
        texts = {b["event"]["ts"]: thread_texts(slack, "C1", b["event"]["ts"]) for b in bodies}
        assert texts[bodies[1]["event"]["ts"]][-1].startswith("Hello from the fake model.")
        assert "too long" in texts[bodies[1]["event"]["ts"]][-1]
        assert "empty" in texts[bodies[3]["event"]["ts"]][-1].lower()
        assert "empty" in texts[bodies[7]["event"]["ts"]][-1].lower()  # a mention without readable text
        for body in bodies[4:7] + bodies[8:]:  # malformed: silently ignored
            assert texts[body["event"]["ts"]] == []
        assert placeholders_left(slack) == []

        fake_llm.reply("Still here.")
        probe = mention(slack, f"<@{BOT_USER}> are you alive?")
        await slack.deliver(slack.callback(probe))
        await reply_text(slack, "C1", probe["ts"], "Still here.")
        assert len(watch.since(0)) == 1  # only Bolt's, for the numeric user
    await bot.stop(grace=10)
    await check_store(make_settings().bot_database, answered_min=4)


@st.composite
def slash_command(draw: st.DrawFn) -> dict[str, Any]:
    """An ``/ask`` (or ``/relay``) payload with hostile text and some fields missing or mistyped."""
    command: dict[str, Any] = {
        "command": draw(st.sampled_from(["/ask", "/ask", "/relay"])),
        "text": draw(NASTY_TEXT),
        "user_id": "U1",
        "channel_id": draw(st.sampled_from(["C7", "D1"])),
        "team_id": "T1",
        "trigger_id": "<id>",
    }
    for field in draw(
        st.lists(st.sampled_from(["text", "user_id", "channel_id", "team_id", "trigger_id"]), max_size=2)
    ):
        if draw(st.booleans()):
            command.pop(field, None)
        else:
            command[field] = draw(st.one_of(st.sampled_from(["", "C\ud800", "x" * 500]), WRONG))
    return command


@given(command=slash_command(), twice=st.booleans())
@FUZZ
async def test_hostile_slash_commands(fuzz_bot, slack, fake_llm, command, twice):
    bot, watch = fuzz_bot
    command["response_url"] = f"{slack.api_url}respond"  # Slack always sends one
    if command.get("trigger_id") == "<id>":
        command["trigger_id"] = f"trig-{len(slack.calls)}-{len(fake_llm.requests)}"
    mark, calls, asked = len(watch.bad), len(slack.calls), len(fake_llm.requests)
    await slack.deliver(command, kind="slash_commands", wait=False)
    if twice:
        await slack.deliver(command, kind="slash_commands", wait=False)
    await settled(bot, slack)
    assert watch.ours(mark) == []
    # a redelivery is answered once; without a readable trigger_id there is nothing to dedupe on
    deliveries = 2 if twice and events.slack_id(command.get("trigger_id")) is None else 1
    assert len(fake_llm.requests) - asked <= deliveries
    event("answered" if len(fake_llm.requests) > asked else "not asked")
    assert len(slack.calls) - calls <= MAX_CALLS_PER_EVENT
    assert placeholders_left(slack) == []


# -- controls: button presses, reactions, edits -----------------------------------------------------

KEYS = ["1:U1", "1:U2", "2:U1", "999:U1", "1:", ":U1", "abc", "1", "-1:U1", "1" * 30 + ":U1", "1:U1\ud800"]


@st.composite
def block_actions(draw: st.DrawFn) -> dict[str, Any]:
    """A ``block_actions`` payload: one of our buttons (or another), hostile values, fields dropped."""
    action: dict[str, Any] = {
        "action_id": draw(st.sampled_from(["relay_stop", "relay_regenerate", "relay_up", "relay_down",
                                           "relay_", "relay_nope", "other"])),
        "block_id": "relay_controls",
        "type": "button",
        "value": draw(st.one_of(st.sampled_from(KEYS), NASTY_TEXT)),
        "action_ts": "1700000000.000001",
    }
    body: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": draw(st.sampled_from(["U1", "U1", "U2", BOT_USER])), "username": draw(NASTY_TEXT)},
        "team": {"id": "T1"},
        "api_app_id": "A1",
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": "C1"},
        "channel": {"id": "C1"},
        "trigger_id": "<id>",
        "actions": [action],
    }
    for field in draw(st.lists(st.sampled_from(["action_id", "value", "user_id", "username"]), max_size=2)):
        target, name = (body["user"], field.removeprefix("user_")) if field.startswith("user") else (action, field)
        if draw(st.booleans()):
            target.pop(name, None)
        else:
            target[name] = draw(WRONG)
    if draw(st.integers(0, 9)) == 0:
        body["actions"] = draw(st.one_of(WRONG, st.just([])))
    return body


@given(block_actions())
@settings(max_examples=300, deadline=None)
def test_press_of_never_raises_and_yields_clean_fields(body):
    from adapters.slack.controls import press_of
    from bot.controls import ACTIONS, parse_key

    press = press_of(body)
    if press is None:
        return
    assert press.action in ACTIONS and isinstance(press.key, str) and isinstance(press.name, str)
    assert press.user.isascii() and press.user.isprintable()
    parsed = parse_key(press.key)
    assert parsed is None or (parsed[0] >= 0 and isinstance(parsed[1], str))


@st.composite
def control_event(draw: st.DrawFn) -> dict[str, Any]:
    """A ``reaction_added`` or ``message_changed`` event, hostile or malformed."""
    if draw(st.booleans()):
        event: dict[str, Any] = {
            "type": "reaction_added",
            "user": draw(st.sampled_from(["U1", "U2", BOT_USER])),
            "reaction": draw(st.sampled_from(["octagonal_sign", "octagonal_sign", "thumbsup", ""])),
            "item_user": draw(st.sampled_from([BOT_USER, "U1", None])),
            "item": {"type": "message", "channel": "C1", "ts": draw(st.sampled_from(["<answer>", "<ts>", "x"]))},
        }
        fields = ["user", "reaction", "item", "item_user"]
    else:
        inner = {"type": "message", "user": draw(st.sampled_from(["U1", "U2", BOT_USER])),
                 "text": f"<@{BOT_USER}> " + draw(NASTY_TEXT), "ts": draw(st.sampled_from(["<question>", "<ts>"]))}
        event = {"type": "message", "subtype": "message_changed", "channel": "C1", "channel_type": "channel",
                 "message": inner, "previous_message": {**inner, "text": "before"}, "event_ts": "<ts>"}
        fields = ["message", "previous_message", "channel"]
    for field in draw(st.lists(st.sampled_from(fields), max_size=2, unique=True)):
        if draw(st.booleans()):
            event.pop(field, None)
        else:
            event[field] = draw(WRONG)
    return event


@pytest.fixture
async def answered(slack, fuzz_bot, fake_llm) -> dict[str, str]:
    """A finished answer (with its buttons) for the presses to land on: its question's and its own ts."""
    slack.ts_base = int(__import__("time").time()) - 60  # recent: edits of it are within the window
    fake_llm.reply("An answer to press on.")
    question = mention(slack, f"<@{BOT_USER}> something to press on")
    await slack.deliver(slack.callback(question))
    await reply_text(slack, "C1", question["ts"], "An answer to press on.")
    bot, _ = fuzz_bot
    await settled(bot, slack)
    return {"question": question["ts"], "answer": slack.bot_messages("C1")[-1]["ts"]}


@given(body=block_actions(), twice=st.booleans())
@FUZZ
async def test_hostile_button_presses_through_bolt(fuzz_bot, answered, slack, fake_llm, body, twice):
    bot, watch = fuzz_bot
    body = copy.deepcopy(body)
    body["response_url"] = f"{slack.api_url}respond"
    body["trigger_id"] = f"trig-{len(slack.calls)}"
    mark, calls, asked = len(watch.bad), len(slack.calls), len(fake_llm.requests)
    await slack.deliver(body, kind="interactive", wait=False)
    if twice:
        await slack.deliver(body, kind="interactive", wait=False)
    await settled(bot, slack)
    assert watch.ours(mark) == []
    assert len(fake_llm.requests) - asked <= 1  # a regeneration at most, however often pressed
    event("asked again" if len(fake_llm.requests) > asked else "no model call")
    assert len(slack.calls) - calls <= MAX_CALLS_PER_EVENT
    assert placeholders_left(slack) == []


@given(event_=control_event(), twice=st.booleans())
@FUZZ
async def test_hostile_reactions_and_edits_through_bolt(fuzz_bot, answered, slack, fake_llm, event_, twice):
    bot, watch = fuzz_bot
    event_ = copy.deepcopy(event_)
    fresh = slack.next_ts()
    values = {"<answer>": answered["answer"], "<question>": answered["question"], "<ts>": fresh}
    for part in (event_, event_.get("item"), event_.get("message"), event_.get("previous_message")):
        if isinstance(part, dict):
            for k, v in part.items():
                if isinstance(v, str) and v in values:
                    part[k] = values[v]
    body = slack.callback(event_)
    mark, calls, asked = len(watch.bad), len(slack.calls), len(fake_llm.requests)
    await slack.deliver(body, wait=False)
    if twice:
        await slack.deliver(body, retry_attempt=1, wait=False)
    await settled(bot, slack)
    assert watch.ours(mark) == []
    assert len(fake_llm.requests) - asked <= 1  # an edit is answered again once at most
    assert len(slack.calls) - calls <= MAX_CALLS_PER_EVENT
    assert placeholders_left(slack) == []
