"""The Discord adapter's pure parts: decisions, formatting, pacing signals, error mapping."""

from __future__ import annotations

import time
from types import SimpleNamespace

import discord
import pytest
from multidict import CIMultiDict

from adapters.discord import format as fmt
from adapters.discord.conversations import thread_name
from adapters.discord.events import MessageFacts, Policy, Trigger, decide
from adapters.discord.pacing import SLACK, RateMonitor, Watch, route_key
from adapters.discord.surface import MAX_CHARS, map_error
from bot.errors import MessageGone, PlatformError, PlatformRateLimited, PlatformUnavailable
from bot.splitting import cut, join_parts

# -- events -----------------------------------------------------------------------------------

ALICE, BOT, GUILD, CHAN, THREAD, ROLE = 1, 2, 3, 4, 5, 6


def facts(**over: object) -> MessageFacts:
    values: dict[str, object] = {
        "author_id": ALICE,
        "author_is_bot": False,
        "is_own": False,
        "answerable_type": True,
        "guild_id": GUILD,
        "channel_id": CHAN,
    }
    values.update(over)
    return MessageFacts(**values)  # type: ignore[arg-type]


def test_decide_triggers() -> None:
    policy = Policy()
    assert decide(facts(), policy) is None  # a plain channel message
    assert decide(facts(mentions_bot=True), policy) is Trigger.MENTION
    assert decide(facts(replies_to_bot=True), policy) is Trigger.REPLY
    assert decide(facts(channel_id=THREAD, parent_id=CHAN, in_own_thread=True), policy) is Trigger.THREAD
    assert decide(facts(guild_id=None), policy) is Trigger.DM


def test_decide_ignores_itself_bots_and_system_messages() -> None:
    assert decide(facts(is_own=True, mentions_bot=True), Policy(allow_bots=True)) is None
    assert decide(facts(author_is_bot=True, mentions_bot=True), Policy()) is None
    assert decide(facts(author_is_bot=True, mentions_bot=True), Policy(allow_bots=True)) is Trigger.MENTION
    assert decide(facts(answerable_type=False, mentions_bot=True), Policy()) is None


def test_policy_from_settings(make_settings) -> None:
    settings = make_settings(
        discord_allowed_guilds="10, 11", discord_allowed_roles="7", discord_allow_bots=True
    )
    assert Policy.from_settings(settings).allow_bots  # the allowlists are the core's (AccessPolicy)


# -- format ------------------------------------------------------------------------------------


def test_mass_mentions_are_neutralised_outside_code() -> None:
    text = "Hi @everyone and @here!\n`@everyone in code`\n```\n@here in a block\n```"
    shown = fmt.render(text)
    assert f"@{fmt.ZWSP}everyone and @{fmt.ZWSP}here!" in shown
    assert "`@everyone in code`" in shown
    assert "\n@here in a block\n" in shown


def test_tables_become_aligned_code_blocks() -> None:
    text = (
        "Prices:\n\n| Provider | $/M in |\n|---|---:|\n| DeepInfra | 0.13 |\n| Cloudflare | 0.40 |\n\nDone."
    )
    shown = fmt.render(text)
    assert shown == (
        "Prices:\n\n```\nProvider   | $/M in\n-----------+-------\nDeepInfra  | 0.13\nCloudflare | 0.40\n```\n\nDone."
    )


def test_table_inside_code_is_left_alone() -> None:
    text = "```\n| a | b |\n|---|---|\n```"
    assert fmt.render(text) == text


def test_deep_headings_become_level_three() -> None:
    assert fmt.render("# One\n#### Four\n###### Six") == "# One\n### Four\n### Six"


def test_notes_round_trip() -> None:
    body = "The answer."
    shown = fmt.with_notes(body, ["(earlier messages were left out)"])
    assert shown == "The answer.\n-# (earlier messages were left out)"
    assert fmt.strip_notes(shown) == body
    assert fmt.with_notes("", []) == fmt.EMPTY_ANSWER
    assert fmt.strip_notes(fmt.with_notes("", ["x"])) == ""


def test_question_text_drops_bot_mention_and_names_others() -> None:
    content = "<@2> what does <@!7> think?"
    assert fmt.question_text(content, 2, {7: "Bob"}) == "what does @Bob think?"
    assert fmt.question_text("<@2>", 2, {}) == ""


def test_split_answer_joins_back_after_rendering() -> None:
    text = "Intro.\n\n```python\n" + "\n".join(f"x = {i}" for i in range(800)) + "\n```\nEnd."
    parts, rest = [], text
    while fmt.measure(rest) > MAX_CHARS:
        piece = cut(rest, MAX_CHARS, fmt.measure)
        parts.append(piece.head)
        rest = piece.reopen + rest[piece.consumed :]
    parts.append(rest)
    rendered = [fmt.render(p) for p in parts]
    assert len(rendered) >= 3 and all(len(r) <= 2000 for r in rendered)
    assert join_parts(rendered) == text


def test_thread_name() -> None:
    assert thread_name("What is @everyone doing?\nmore") == f"What is @{fmt.ZWSP}everyone doing?"
    assert len(thread_name("x" * 300)) <= 90
    assert thread_name("") == "Answer"


# -- pacing -----------------------------------------------------------------------------------


def test_route_keys() -> None:
    assert route_key("/api/v10/channels/12/messages/34") == "channel:12"
    assert route_key("/api/v10/channels/12/messages") == "channel:12"
    assert route_key("/api/v10/channels/12/typing") is None
    assert route_key("/api/v10/webhooks/1/tok/messages/@original") == "token:tok"
    assert route_key("/api/v10/interactions/9/tok/callback") == "token:tok"


def test_watch_holds_edits_after_429_and_empty_bucket() -> None:
    monitor = RateMonitor()
    watch = Watch(monitor, "channel:1")
    assert watch.wait_needed() == 0
    monitor.observe("channel:1", 200, {"X-RateLimit-Remaining": "3", "X-RateLimit-Reset-After": "2"})
    assert watch.wait_needed() == 0
    monitor.observe("channel:1", 200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "0.5"})
    assert 0 < watch.wait_needed() <= 0.5 + SLACK  # held for what is left of the reset
    monitor.signals["channel:1"].hold_until = time.monotonic() - 1  # the bucket has reset
    assert watch.wait_needed() == 0
    # a 429 discord.py retried silently still slows the stream once, even after the wait
    monitor.observe("channel:1", 429, {"Retry-After": "1"})
    monitor.signals["channel:1"].hold_until = time.monotonic() - 1
    assert watch.wait_needed() == SLACK
    assert watch.wait_needed() == 0
    assert Watch(monitor, "channel:2").wait_needed() == 0  # other channels are not held


# -- errors --------------------------------------------------------------------------------------


def http_error(cls: type[discord.HTTPException], status: int, code: int, headers: dict | None = None):
    response = SimpleNamespace(status=status, reason="x", headers=headers or {})
    return cls(response, {"code": code, "message": "m"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (http_error(discord.NotFound, 404, 10008), MessageGone),
        (http_error(discord.NotFound, 404, 10062), MessageGone),
        (http_error(discord.HTTPException, 401, 50027), MessageGone),
        (http_error(discord.Forbidden, 403, 50013), MessageGone),
        (http_error(discord.HTTPException, 429, 0, {"Retry-After": "3"}), PlatformRateLimited),
        (http_error(discord.HTTPException, 400, 50035), PlatformError),
        (discord.RateLimited(45.0), PlatformRateLimited),
        (OSError("reset"), PlatformUnavailable),
        (http_error(discord.HTTPException, 503, 0), PlatformUnavailable),
    ],
)
def test_errors_are_mapped(exc: Exception, kind: type) -> None:
    mapped = map_error(exc)
    assert type(mapped) is kind
    if isinstance(exc, discord.RateLimited):
        assert mapped.retry_after == 45.0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        (CIMultiDict({"Retry-After": "soon"}), 1.0),  # unreadable: the default, not a ValueError
        (CIMultiDict({"Retry-After": ""}), 1.0),
        (CIMultiDict(), 1.0),
        (CIMultiDict({"retry-after": "2.5"}), 2.5),
        (CIMultiDict({"Retry-After": "-3"}), 0.0),
    ],
)
def test_a_429_with_any_retry_after_header_maps_without_raising(
    headers: CIMultiDict[str], wait: float
) -> None:
    mapped = map_error(http_error(discord.HTTPException, 429, 0, headers))  # type: ignore[arg-type]
    assert isinstance(mapped, PlatformRateLimited) and mapped.retry_after == wait


def test_a_429_without_a_response_maps_to_the_default_wait() -> None:
    exc = http_error(discord.HTTPException, 429, 0)
    exc.response = None  # type: ignore[assignment]
    mapped = map_error(exc)
    assert isinstance(mapped, PlatformRateLimited) and mapped.retry_after == 1.0


def test_monitor_forgets_the_oldest_keys() -> None:
    monitor = RateMonitor(max_keys=3)
    for key in ("a", "b", "c"):
        monitor.observe(key, 429, {})
    monitor.signal("a")  # used again: kept
    monitor.observe("d", 200, {})
    assert list(monitor.signals) == ["c", "a", "d"]
