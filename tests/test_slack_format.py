"""Pure Slack translations: Markdown -> mrkdwn, neutralising pings, events -> turns."""

from __future__ import annotations

import pytest

from adapters.slack import events
from adapters.slack.events import PLACEHOLDER, REPLY_EVENT
from adapters.slack.format import ZWSP, footer, to_markdown, to_mrkdwn, unescape
from bot.conversation import Turn
from bot.splitting import cut


@pytest.mark.parametrize(
    ("markdown", "mrkdwn"),
    [
        ("**bold** and __also bold__", "*bold* and *also bold*"),
        ("*italic* and _italic_", "_italic_ and _italic_"),
        ("~~gone~~", "~gone~"),
        ("see [the docs](https://example.com/a?b=1&c=2)", "see <https://example.com/a?b=1&amp;c=2|the docs>"),
        ("# Title\n## Sub **title**", "*Title*\n*Sub title*"),
        ("- one\n* two\n  + nested", "• one\n• two\n  • nested"),
        ("1. first\n2. second", "1. first\n2. second"),
        ("> quoted *text*", "> quoted _text_"),
        ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
        ("use `x**2 < y` here", "use `x**2 &lt; y` here"),
        (
            "```python\nif a < b and c:\n    **not bold**\n```",
            "```\nif a &lt; b and c:\n    **not bold**\n```",
        ),
        ("2 * 3 * 4", "2 * 3 * 4"),
        (
            "Sizes:\n| name | size |\n|------|-----:|\n| a<b  | 1    |\nend",
            "Sizes:\n```\n| name | size |\n|------|-----:|\n| a&lt;b  | 1    |\n```\nend",
        ),
        ("| not | a table |", "| not | a table |"),
        ("snake_case_name stays", "snake_case_name stays"),
    ],
)
def test_markdown_becomes_mrkdwn(markdown, mrkdwn):
    assert to_mrkdwn(markdown) == mrkdwn


@pytest.mark.parametrize(
    "text",
    [
        "<!channel>",
        "<!here>",
        "<!everyone>",
        "<!subteam^S0123ABC>",
        "<!subteam^S0123ABC|@devs>",
        "<@U123>",
        "<#C1>",
    ],
)
def test_control_sequences_never_survive(text):
    for rendered in (to_mrkdwn(f"hi {text}!"), to_mrkdwn(f"`{text}`"), to_mrkdwn(f"```\n{text}\n```")):
        assert "<!" not in rendered and "<@" not in rendered and "<#" not in rendered
    assert text not in to_markdown(f"hi {text}!")


def test_plain_crowd_names_get_a_zero_width_space():
    assert to_mrkdwn("@here @Channel @everyone @hereafter") == (
        f"@{ZWSP}here @{ZWSP}Channel @{ZWSP}everyone @hereafter"
    )
    assert to_markdown("**@everyone**") == f"**@{ZWSP}everyone**"


def test_links_from_the_model_cannot_smuggle_a_ping():
    assert "<!here>" not in to_mrkdwn("[<!here>](https://example.com)")


def test_footer_is_italic_and_escaped():
    assert footer(["(earlier messages were left out)", "a <b>"]) == (
        "\n\n_(earlier messages were left out)_\n_a &lt;b&gt;_"
    )
    assert footer([]) == ""


def test_escaping_round_trips():
    text = "a < b & c > d &amp;"
    assert unescape(to_mrkdwn(text)) == text


# -- events ------------------------------------------------------------------------------------


def event(**kwargs):
    base = {
        "type": "message",
        "channel": "C1",
        "user": "U1",
        "text": "hi",
        "ts": "10.0",
        "channel_type": "channel",
    }
    return {**base, **kwargs}


def test_trigger_kinds():
    assert (
        events.trigger(event(type="app_mention", text="<@UBOT> hi"), "T1", "UBOT", "BBOT").kind == "mention"
    )
    assert events.trigger(event(text="<@UBOT> hi"), "T1", "UBOT", "BBOT").kind == "mention"
    assert events.trigger(event(), "T1", "UBOT", "BBOT") is None  # channel chatter
    follow = events.trigger(event(thread_ts="5.0"), "T1", "UBOT", "BBOT")
    assert follow.kind == "followup" and follow.reply_thread == "5.0"
    dm = events.trigger(event(channel="D1", channel_type="im"), "T1", "UBOT", "BBOT")
    assert dm.kind == "dm" and dm.reply_thread is None
    mention = events.trigger(event(type="app_mention", text="<@UBOT> q"), "T1", "UBOT", "BBOT")
    assert mention.reply_thread == "10.0"  # a new thread under the mention


@pytest.mark.parametrize(
    "extra",
    [
        {"subtype": "message_changed"},
        {"subtype": "message_deleted"},
        {"subtype": "bot_message", "bot_id": "B2"},
        {"bot_id": "B2"},
        {"user": "UBOT"},
        {"subtype": "channel_join"},
    ],
)
def test_ignored_events(extra):
    assert events.trigger(event(type="app_mention", text="<@UBOT> x", **extra), "T1", "UBOT", "BBOT") is None


def test_plain_text_reads_like_a_person_would():
    names = {"U2": "Grace"}
    text = "<@UBOT> ask <@U2> in <#C9|general> about <https://x.io|this> &amp; <!here>"
    assert (
        events.plain_text(text, "UBOT", names) == "ask @Grace in #general about [this](https://x.io) & @here"
    )


def meta(part, **extra):
    return {"event_type": REPLY_EVENT, "event_payload": {"part": part, **extra}}


def test_thread_turns_join_split_replies_and_strip_notes():
    answer = "intro\n\n```python\n" + "x = 1\n" * 40 + "```\nend"
    first = cut(answer, 150)
    rest = first.reopen + answer[first.consumed :]
    note = footer(["(earlier messages were left out)"])
    messages = [
        {"user": "U1", "text": "<@UBOT> write code", "ts": "1.0"},
        {"user": "UBOT", "bot_id": "BBOT", "text": to_mrkdwn(first.head), "ts": "2.0", "metadata": meta(0)},
        {
            "user": "UBOT",
            "bot_id": "BBOT",
            "text": to_mrkdwn(rest) + note,
            "ts": "3.0",
            "metadata": meta(1, foot=len(note)),
        },
        {"user": "U9", "bot_id": "B9", "text": "another bot", "ts": "3.5"},
        {"user": "UBOT", "bot_id": "BBOT", "text": PLACEHOLDER, "ts": "3.7", "metadata": meta(0)},
        {"user": "U2", "text": "thanks", "ts": "4.0"},
    ]
    turns = events.thread_turns(messages, "UBOT", "BBOT", {"U1": "Ada", "U2": "Grace"})
    expected_code = answer.replace("```python", "```")  # mrkdwn drops the language tag
    assert turns == [
        Turn("user", "write code", author="Ada", message_id="slack:1.0"),
        Turn("assistant", expected_code, message_id="slack:2.0"),
        Turn("user", "thanks", author="Grace", message_id="slack:4.0"),
    ]


def test_ask_header_becomes_the_user_turn():
    header = "<@U1> asked: what is 2+2?\n\n"
    messages = [
        {
            "user": "UBOT",
            "bot_id": "BBOT",
            "text": header + "4",
            "ts": "1.0",
            "metadata": meta(0, head=len(header), asker="U1"),
        },
    ]
    turns = events.thread_turns(messages, "UBOT", "BBOT", {"U1": "Ada"})
    assert [(t.role, t.text, t.author) for t in turns] == [
        ("user", "what is 2+2?", "Ada"),
        ("assistant", "4", None),
    ]


def test_interrupted_messages_keep_their_text_and_lose_the_placeholder():
    from adapters.slack.surface import Place, StreamSurface, UpdateSurface
    from bot.recovery import INTERRUPTED_NOTE
    from bot.surface import Draft

    note = (INTERRUPTED_NOTE,)
    plain = UpdateSurface(None, Place("C1", "5.0"))  # type: ignore[arg-type]
    assert plain.render(Draft("", notes=note, failed=True, final=True)) == "_(interrupted — ask again)_"
    header = "<@U1> asked: hi\n\n"
    asked = UpdateSurface(None, Place("C1", None, header=header))  # type: ignore[arg-type]
    text = asked.render(Draft("", notes=note, failed=True, final=True))
    assert text == header + "_(interrupted — ask again)_"
    stream = StreamSurface(None, Place("C1", "5.0", stream=True))  # type: ignore[arg-type]
    text = stream.render(Draft("half **an**", notes=note, failed=True, final=True))
    assert text == "half **an**\n\n*(interrupted — ask again)*"


def test_ts_keys_sort_exactly():
    assert events.ts_key("1700000000.000002") > events.ts_key("1700000000.000001")
    assert events.ts_key("1700000001.000000") > events.ts_key("1700000000.999999")
