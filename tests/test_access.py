"""Block lists, admins, request rates and daily budgets, on a real ledger."""

from __future__ import annotations

import pytest

from bot.access import AccessPolicy, Caller, start_of_day_utc
from bot.errors import Blocked, QuotaReached
from bot.store import SqliteStore, UsageRecord

NOON = 1_800_000_000.0 - (1_800_000_000.0 % 86400) + 12 * 3600  # a UTC noon


@pytest.fixture
async def store(tmp_path):
    s = await SqliteStore.open(tmp_path / "a.db")
    yield s
    await s.close()


def caller(user="U1", channel="C1", **kw) -> Caller:
    return Caller("slack", user, channel, **kw)


async def test_blocked_callers_are_refused_silently(make_settings, store):
    policy = AccessPolicy(make_settings(bot_blocked_users=["U9"], bot_blocked_roles=["R1"]), store)
    with pytest.raises(Blocked):
        await policy.check(caller("U9"))
    with pytest.raises(Blocked):
        await policy.check(caller(roles=frozenset({"R1"})))
    await policy.check(caller("U2"))


async def test_request_rate_per_user_says_when_to_retry(make_settings, store):
    policy = AccessPolicy(make_settings(bot_user_requests_per_minute=2), store)
    await policy.check(caller(), now=NOON)
    await policy.check(caller(), now=NOON + 10)
    with pytest.raises(QuotaReached) as info:
        await policy.check(caller(), now=NOON + 20)
    assert "Try again in 40 s" in info.value.user_message
    await policy.check(caller("U2"), now=NOON + 20)  # others are not affected
    await policy.check(caller(), now=NOON + 61)  # the window moved on


async def test_daily_budget_from_the_ledger_resets_at_midnight(make_settings, store):
    policy = AccessPolicy(make_settings(bot_user_daily_tokens=1000), store)
    await store.record_usage(UsageRecord("slack", "deepinfra", "m", "U1", "C1", 700, 400, 0.01))
    await store._db.execute("UPDATE usage SET at = ?", (NOON,))
    with pytest.raises(QuotaReached) as info:
        await policy.check(caller(), now=NOON + 60)
    assert "resets at 00:00 UTC, in 11 h 59 min" in info.value.user_message
    await policy.check(caller(), now=start_of_day_utc(NOON) + 86400 + 1)  # next day


async def test_channel_cost_budget_and_admin_exemption(make_settings, store):
    policy = AccessPolicy(make_settings(bot_channel_daily_cost=0.5, bot_admins=["UADMIN"]), store)
    await store.record_usage(UsageRecord("slack", "p", "m", "U1", "C1", 1, 1, 0.6))
    with pytest.raises(QuotaReached):
        await policy.check(caller("U2"))
    await policy.check(caller("UADMIN"))
    await policy.check(caller("U2", channel="C2"))


async def test_a_refusal_reaches_the_user_politely(make_settings, fake_llm):
    from bot.conversation import Turn
    from bot.runtime import open_service
    from bot.service import Request
    from tests.fakes.sinks import RecordingSink

    async with open_service(make_settings(bot_user_requests_per_minute=1)) as service:
        first, second = RecordingSink(), RecordingSink()
        await service.answer(Request("slack", "C1", [Turn("user", "one")], user_id="U1"), first)
        out = await service.answer(Request("slack", "C1", [Turn("user", "two")], user_id="U1"), second)
    assert first.messages == [fake_llm.default_text]
    assert out.state == "failed" and second.calls[-1] == ("fail", "")
    assert "faster than 1 questions a minute" in second.notes[0]
    assert len(fake_llm.requests) == 1


async def test_requests_arriving_together_cannot_slip_past_the_rate(make_settings, store):
    import asyncio

    policy = AccessPolicy(make_settings(bot_user_requests_per_minute=1, bot_user_daily_tokens=100_000), store)
    results = await asyncio.gather(*(policy.check(caller(), now=NOON) for _ in range(5)), return_exceptions=True)
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, QuotaReached) for r in results if r is not None)
