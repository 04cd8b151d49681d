"""Block lists, admins, request rates and daily budgets, on a real ledger.

Most tests run on both backends (``store``: SQLite, and PostgreSQL where rates
and reservations live in the database); the "replicas" tests spread questions
over three policies, each on a store of its own on PostgreSQL (one policy on
SQLite: one process).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.access import AccessPolicy, Caller, start_of_day_utc
from bot.errors import Blocked, QuotaReached
from bot.settings import Settings
from bot.store import LEASE, Store, UsageRecord
from bot.store_sqlite import SqliteStore

NOON = 1_800_000_000.0 - (1_800_000_000.0 % 86400) + 12 * 3600  # a UTC noon


@pytest.fixture
async def sqlite_store(tmp_path):
    s = await SqliteStore.open(tmp_path / "a.db")
    yield s
    await s.close()


@pytest.fixture
def replicas(backend, make_store):
    """Three policies as three replicas would have them (PostgreSQL); one shared by all on SQLite."""

    async def make(settings: Settings) -> list[AccessPolicy]:
        if backend == "sqlite":
            return [AccessPolicy(settings, await make_store())] * 3
        return [AccessPolicy(settings, await make_store(), owner=f"replica-{n}") for n in range(3)]

    return make


async def execute(store: Store, sql: str, *args: object) -> None:
    """Raw SQL on either backend (``$1`` placeholders), to move time in the tables."""
    if store.shared:
        async with store.connection() as con:  # type: ignore[attr-defined]
            await con.execute(sql, *args)
    else:
        await store._db.execute(sql.replace("$1", "?").replace("$2", "?"), args)  # type: ignore[attr-defined]


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
    await execute(store, "UPDATE usage SET at = $1", NOON)
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
    from tests.fakes.sinks import RecordingSurface, incoming

    async with open_service(make_settings(bot_user_requests_per_minute=1)) as service:
        first, second = RecordingSurface(), RecordingSurface()
        await service.handle(incoming([Turn("user", "one")], first))
        out = await service.handle(incoming([Turn("user", "two")], second))
    assert first.messages == [fake_llm.default_text]
    assert out.state == "failed" and second.calls[-1] == ("fail", "")
    assert "faster than 1 questions a minute" in second.notes[0]
    assert len(fake_llm.requests) == 1


async def test_requests_arriving_together_cannot_slip_past_the_rate(make_settings, store):
    policy = AccessPolicy(make_settings(bot_user_requests_per_minute=1, bot_user_daily_tokens=100_000), store)
    results = await asyncio.gather(*(policy.check(caller(), now=NOON) for _ in range(5)), return_exceptions=True)
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, QuotaReached) for r in results if r is not None)


# -- daily budgets under concurrency: reservations ----------------------------------------------


async def spend(store, tokens: int, user: str = "U1", channel: str = "C1", cost: float = 0.0) -> None:
    await store.record_usage(UsageRecord("slack", "p", "m", user, channel, tokens, 0, cost))


async def test_the_first_question_goes_through_even_when_its_worst_case_exceeds_the_budget(make_settings, store):
    policy = AccessPolicy(make_settings(bot_user_daily_tokens=150), store)
    first = await policy.admit(caller(), reserve_tokens=1024)
    assert await policy.held("user:U1") == (1024, 0.0)
    with pytest.raises(QuotaReached) as info:
        await policy.admit(caller(), reserve_tokens=1024)
    assert "held by answers still being written" in info.value.user_message
    await spend(store, 48)
    await first.settle()
    second = await policy.admit(caller(), reserve_tokens=1024)  # 48 used, nothing in flight
    await spend(store, 120)
    await second.settle()
    with pytest.raises(QuotaReached) as info:
        await policy.admit(caller(), reserve_tokens=1024)
    assert "daily budget used up" in info.value.user_message


async def test_six_admissions_at_once_let_exactly_one_in(make_settings, store):
    policy = AccessPolicy(make_settings(bot_user_daily_tokens=150), store)
    results = await asyncio.gather(
        *(policy.admit(caller(), reserve_tokens=1024) for _ in range(6)), return_exceptions=True
    )
    admitted = [r for r in results if not isinstance(r, BaseException)]
    assert len(admitted) == 1
    assert all(isinstance(r, QuotaReached) for r in results if isinstance(r, BaseException))


async def test_settle_and_release_are_idempotent_and_forget_idle_keys(make_settings, store):
    policy = AccessPolicy(make_settings(bot_user_daily_tokens=150, bot_channel_daily_tokens=1000), store)
    admission = await policy.admit(caller(), reserve_tokens=100, reserve_cost=0.5)
    assert await policy.held("user:U1") == (100, 0.5) and await policy.held("channel:C1") == (100, 0.5)
    await admission.settle()
    await admission.settle()
    await admission.release()
    assert await policy.held("user:U1") == (0, 0.0)
    assert store.shared or policy._held == {}  # in memory: idle keys are forgotten
    await admission.grow(10_000)  # too late: nothing is held again
    assert await policy.held("user:U1") == (0, 0.0)


async def test_grow_raises_the_reservation_others_see(make_settings, store):
    policy = AccessPolicy(make_settings(bot_user_daily_tokens=1000), store)
    first = await policy.admit(caller(), reserve_tokens=100)
    second = await policy.admit(caller(), reserve_tokens=100)  # 200 held < 1000
    await first.grow(900)
    await first.grow(50)  # never lowers it
    assert await policy.held("user:U1") == (1000, 0.0)
    with pytest.raises(QuotaReached):
        await policy.admit(caller(), reserve_tokens=1)
    await second.release()
    third = await policy.admit(caller(), reserve_tokens=1)  # 900 held < 1000: room again
    assert await policy.held("user:U1") == (901, 0.0)
    await first.release()
    await third.release()


async def test_the_cost_budget_counts_reservations_too(make_settings, store):
    policy = AccessPolicy(make_settings(bot_channel_daily_cost=0.10), store)
    first = await policy.admit(caller("U1"), reserve_tokens=10, reserve_cost=0.08)
    second = await policy.admit(caller("U2"), reserve_tokens=10, reserve_cost=0.08)  # 0.08 < 0.10
    with pytest.raises(QuotaReached) as info:  # the channel's budget is shared by its users
        await policy.admit(caller("U3"), reserve_tokens=10, reserve_cost=0.01)
    assert "this channel's daily budget is held" in info.value.user_message
    await policy.check(caller("U3", channel="C2"))  # other channels are not affected
    await first.release()
    await second.release()


async def test_admins_hold_nothing_and_are_never_refused(make_settings, store):
    policy = AccessPolicy(make_settings(bot_user_daily_tokens=10, bot_admins=["UADMIN"]), store)
    held = [await policy.admit(caller("UADMIN"), reserve_tokens=1000) for _ in range(3)]
    assert await policy.held("user:UADMIN") == (0, 0.0)
    for admission in held:
        await admission.settle()


async def test_a_refusal_for_answers_in_flight_does_not_use_up_the_request_rate(make_settings, store):
    policy = AccessPolicy(make_settings(bot_user_daily_tokens=150, bot_user_requests_per_minute=2), store)
    first = await policy.admit(caller(), reserve_tokens=1024, now=NOON)
    for _ in range(3):
        with pytest.raises(QuotaReached):
            await policy.admit(caller(), reserve_tokens=1024, now=NOON + 1)
    await first.settle()
    await (await policy.admit(caller(), reserve_tokens=1024, now=NOON + 2)).settle()  # the second of 2 a minute


class SettlesDuringTheRead:
    """A real store whose next ledger read lets an answer record its usage and settle meanwhile."""

    shared = False

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.during_read = None

    async def record_usage(self, record: UsageRecord) -> None:
        await self.store.record_usage(record)

    async def usage_of(self, by: str, key: str, since: float) -> tuple[int, float]:
        result = await self.store.usage_of(by, key, since)  # read before the other answer records...
        if self.during_read is not None:
            hook, self.during_read = self.during_read, None
            await hook()  # ... which then records and settles before the decision
        return result


async def test_an_answer_settling_during_the_ledger_read_is_not_missed(make_settings, sqlite_store):
    store = sqlite_store
    wrapped = SettlesDuringTheRead(store)
    policy = AccessPolicy(make_settings(bot_user_daily_tokens=150), wrapped)  # type: ignore[arg-type]
    first = await policy.admit(caller(), reserve_tokens=200)
    await first.grow(200)

    async def finish_first() -> None:
        await spend(store, 160)
        await first.settle()

    wrapped.during_read = finish_first
    with pytest.raises(QuotaReached):  # the read missed the 160 tokens; the reservation counts them
        await policy.admit(caller(), reserve_tokens=200)
    with pytest.raises(QuotaReached) as info:  # afterwards the ledger has them
        await policy.admit(caller(), reserve_tokens=200)
    assert "used up" in info.value.user_message


def test_one_policy_answers_who_may_ask_on_every_platform(make_settings, sqlite_store):
    policy = AccessPolicy(
        make_settings(
            slack_allowed_channels=["C1"],
            slack_allowed_users=["U1", "U2"],
            discord_allowed_guilds=["G1"],
            discord_allowed_roles=["R1"],
            bot_blocked_users=["U2"],
        ),
        sqlite_store,
    )
    assert policy.admits(Caller("slack", "U1", "C1", "T1"))
    assert not policy.admits(Caller("slack", "U1", "C2", "T1"))  # not an allowed channel
    assert policy.admits(Caller("slack", "U1", "D9", "T1", direct=True))  # a DM: channel lists do not apply
    assert not policy.admits(Caller("slack", "U3", "C1", "T1"))  # not an allowed user
    assert not policy.admits(Caller("slack", "U2", "C1", "T1"))  # allowed, but blocked
    assert policy.admits(Caller("discord", "7", "100", "G1", frozenset({"R1"})))
    assert not policy.admits(Caller("discord", "7", "100", "G1", frozenset({"R2"})))  # no allowed role
    assert not policy.admits(Caller("discord", "7", "100", "G2", frozenset({"R1"})))  # another guild
    assert not policy.admits(Caller("discord", "7", "55", None, direct=True))  # DMs need the user list
    assert policy.admits(Caller("terminal", "terminal", "ask"))


async def test_a_caller_who_may_not_ask_costs_nothing(make_settings, fake_llm):
    from bot.conversation import Turn
    from bot.runtime import open_service
    from tests.fakes.sinks import RecordingSurface, incoming

    read = []
    async with open_service(make_settings(slack_allowed_users=["U1"])) as service:
        stranger = incoming([Turn("user", "hi")], RecordingSurface(), user="U7", keys=(("event", "E1"),))
        original = stranger.read

        async def counting_read(budget, counter):
            read.append(budget)
            return await original(budget, counter)

        stranger.read = counting_read
        assert await service.handle(stranger) is None
        assert await service.store.open_requests("slack") == []  # nothing claimed or recorded
    assert read == [] and fake_llm.requests == []


# -- replicas: rates and reservations shared through the database ---------------------------------


async def test_nine_questions_at_once_over_three_replicas_admit_exactly_the_rate(make_settings, replicas):
    policies = await replicas(make_settings(bot_user_requests_per_minute=3))
    results = await asyncio.gather(
        *(policies[n % 3].check(caller(), now=NOON) for n in range(9)), return_exceptions=True
    )
    assert sum(r is None for r in results) == 3
    assert all(isinstance(r, QuotaReached) for r in results if r is not None)
    with pytest.raises(QuotaReached) as info:
        await policies[1].check(caller(), now=NOON + 30)
    assert "Try again in 30 s" in info.value.user_message  # the oldest of the three leaves at NOON + 60
    await policies[2].check(caller(), now=NOON + 61)


async def test_six_admissions_at_once_over_three_replicas_let_exactly_one_in(make_settings, replicas):
    policies = await replicas(make_settings(bot_user_daily_tokens=150))
    results = await asyncio.gather(
        *(policies[n % 3].admit(caller(), reserve_tokens=1024) for n in range(6)), return_exceptions=True
    )
    admitted = [r for r in results if not isinstance(r, BaseException)]
    assert len(admitted) == 1
    assert all(isinstance(r, QuotaReached) for r in results if isinstance(r, BaseException))
    assert await policies[1].held("user:U1") == (1024, 0.0)  # every replica sees it
    await admitted[0].settle()
    assert await policies[2].held("user:U1") == (0, 0.0)


async def test_the_ledger_ends_at_most_one_answer_beyond_the_budget_across_replicas(make_settings, replicas):
    policies = await replicas(make_settings(bot_user_daily_tokens=1000))
    answered: list[int] = []

    async def ask(policy: AccessPolicy) -> None:
        try:
            admission = await policy.admit(caller(), reserve_tokens=300)
        except QuotaReached:
            return
        await asyncio.sleep(0)  # answers overlap
        await spend(policy.store, 300)
        await admission.settle()
        answered.append(300)

    for _ in range(3):  # waves of questions, each wave at once
        await asyncio.gather(*(ask(policies[n % 3]) for n in range(6)))
    used, _ = await policies[0].store.usage_of("user", "U1", since=0.0)
    assert used == sum(answered) and 1000 <= used <= 1000 + 300


async def test_a_stopped_replica_s_reservation_stops_counting_after_the_lease(make_settings, postgres_url):
    from bot.store import open_store

    stores = [await open_store(postgres_url) for _ in range(3)]
    try:
        settings = make_settings(bot_user_daily_tokens=150)
        gone, alive, other = (AccessPolicy(settings, s, owner=f"replica-{n}") for n, s in enumerate(stores))
        await stores[1].heartbeat(alive.owner)
        await gone.admit(caller("U1"), reserve_tokens=1024)  # never settled: its replica stops
        await alive.admit(caller("U2"), reserve_tokens=1024)  # still being written, its replica alive
        long_ago = time.time() - LEASE - 1
        await execute(stores[0], "UPDATE reservations SET at = $1", long_ago)
        with pytest.raises(QuotaReached):  # a live replica's answer holds however long it takes
            await other.admit(caller("U2"), reserve_tokens=10)
        await (await other.admit(caller("U1"), reserve_tokens=10)).settle()  # the stopped one's does not
        assert await other.held("user:U1") == (0, 0.0)
        async with stores[2].connection() as con:  # and that admission cleaned it up
            assert await con.fetchval("SELECT count(*) FROM reservations WHERE owner = $1", gone.owner) == 0
        await execute(stores[0], "UPDATE replicas SET heartbeat_at = $1", long_ago)  # now it stopped too
        await (await other.admit(caller("U2"), reserve_tokens=10)).settle()
    finally:
        for store in stores:
            await store.close()


async def test_a_release_while_the_database_is_away_does_not_fail_the_answer(make_settings, postgres_server, postgres_url):
    from bot.errors import StoreUnavailable
    from bot.store_postgres import PostgresStore
    from tests.pg import TcpProxy

    proxy = TcpProxy(postgres_server.port)
    await proxy.start()
    store = await PostgresStore.open(postgres_server.url(postgres_url.rsplit("/", 1)[1], port=proxy.port), wait=5)
    try:
        policy = AccessPolicy(make_settings(bot_user_daily_tokens=150), store)
        admission = await policy.admit(caller(), reserve_tokens=100)
        await proxy.cut()
        await admission.settle()  # logged; the row expires on its own
        with pytest.raises(StoreUnavailable):  # a new question cannot be judged without the database
            await policy.admit(caller(), reserve_tokens=100)
    finally:
        await store.close()


async def test_the_sweep_deletes_what_no_longer_counts_for_any_key(make_settings, postgres_url):
    from bot.shared_limits import sweep
    from bot.store import open_store

    store = await open_store(postgres_url)
    try:
        policy = AccessPolicy(make_settings(bot_user_requests_per_minute=5, bot_user_daily_tokens=150), store)
        long_ago = time.time() - 3600
        await policy.admit(caller("U1"), reserve_tokens=10, now=long_ago)  # its replica stopped since
        await execute(store, "UPDATE reservations SET at = $1", long_ago)
        live = await policy.admit(caller("U2"), reserve_tokens=10)
        await sweep(store)  # type: ignore[arg-type]
        async with store.connection() as con:  # type: ignore[attr-defined]
            assert await con.fetchval("SELECT count(*) FROM rate_hits WHERE key = 'user:U1'") == 0
            assert await con.fetchval("SELECT array_agg(key) FROM reservations") == ["user:U2"]
            assert await con.fetchval("SELECT count(*) FROM rate_hits WHERE key = 'user:U2'") == 1
        await live.settle()
    finally:
        await store.close()


async def test_replicas_sweep_as_they_heartbeat(make_settings, postgres_url):
    from types import SimpleNamespace

    from bot.leases import Leases
    from bot.store import open_store

    store = await open_store(postgres_url)

    async def settle(platform, alive_since) -> int:
        return 0

    leases = Leases(store, "replica-0", settle, every=0.05, sweep_every=0.0)
    try:
        await execute(store, "INSERT INTO rate_hits(key, at) VALUES ('user:U1', $1)", time.time() - 3600)
        await leases.start(SimpleNamespace(name="slack"))  # type: ignore[arg-type]

        async def hits() -> int:
            async with store.connection() as con:  # type: ignore[attr-defined]
                return int(await con.fetchval("SELECT count(*) FROM rate_hits"))

        for _ in range(200):
            if await hits() == 0:
                break
            await asyncio.sleep(0.02)
        assert await hits() == 0
    finally:
        await leases.stop()
        await store.close()
