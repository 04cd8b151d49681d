"""The Slack edit budget shared by replicas on one PostgreSQL database.

Three ``SharedEditBudget``s on three stores (three pools, as three replicas
would have) draw from one budget key.  Windows are short (about a second) so
the tests stay quick; assertions are on counts and orders, and the grants are
read back from what the database recorded.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from bot.pacing import EditBudget
from bot.shared_pacing import SharedEditBudget, edit_budget
from bot.store_postgres import PostgresStore
from tests.pg import PostgresServer, TcpProxy

KEY = "slack:T1:chat.update"


@pytest.fixture
async def grant_log(postgres_url, stores):
    """Every grant the database records, kept after the budget forgets it (a trigger)."""
    con = await asyncpg.connect(postgres_url)
    await con.execute(
        "CREATE TABLE grant_log (key TEXT, at DOUBLE PRECISION);"
        "CREATE FUNCTION log_grant() RETURNS trigger AS $$ BEGIN "
        "INSERT INTO grant_log VALUES (NEW.key, NEW.at); RETURN NEW; END $$ LANGUAGE plpgsql;"
        "CREATE TRIGGER log_grant AFTER INSERT ON edit_grants FOR EACH ROW EXECUTE FUNCTION log_grant();"
    )

    async def read() -> list[float]:
        return [float(r[0]) for r in await con.fetch("SELECT at FROM grant_log WHERE key = $1 ORDER BY at", KEY)]

    yield read
    await con.close()


def budgets(stores, *, burst: int, window: float, reserve: bool = False) -> list[SharedEditBudget]:
    return [
        SharedEditBudget(store, KEY, f"replica-{n}", per_minute=60.0 * burst / window, burst=burst,
                         window=window, reserve=reserve)
        for n, store in enumerate(stores)
    ]


async def close(*opened: SharedEditBudget) -> None:
    for budget in opened:
        await budget.aclose()


def most_in_any_window(times: list[float], window: float) -> int:
    return max((sum(1 for u in times if t <= u < t + window) for t in times), default=0)


async def test_the_store_decides_which_budget(stores, tmp_path):
    from bot.store_sqlite import SqliteStore

    assert isinstance(edit_budget(stores[0], KEY, "r", 50, burst=50, window=60.0, reserve=True), SharedEditBudget)
    sqlite = await SqliteStore.open(tmp_path / "one.db")
    try:  # one process: the in-process budget, unchanged
        assert type(edit_budget(sqlite, KEY, "r", 50, burst=50, window=60.0, reserve=True)) is EditBudget
    finally:
        await sqlite.close()


async def test_three_replicas_never_exceed_the_window_together(stores, grant_log):
    replicas = budgets(stores, burst=4, window=1.0)
    try:
        await asyncio.wait_for(asyncio.gather(*(b.acquire() for b in replicas for _ in range(4))), 30)
    finally:
        await close(*replicas)
    times = await grant_log()
    assert len(times) == 12 and sum(b.granted for b in replicas) == 12
    assert most_in_any_window(times, 1.0) == 4  # never more than the burst in any window


async def test_final_edits_go_before_first_text_before_interim_while_others_fill_the_window(stores):
    mine, other, _ = budgets(stores, burst=2, window=1.5)
    try:
        await other.acquire()
        await other.acquire()  # the other replica used the window up
        order: list[str] = []

        async def take(name: str, **kind: bool) -> None:
            await mine.acquire(**kind)
            order.append(name)

        waiting = [asyncio.create_task(take("interim")), asyncio.create_task(take("first", first=True))]
        await asyncio.sleep(0.05)
        waiting.append(asyncio.create_task(take("final", urgent=True)))
        await asyncio.wait_for(asyncio.gather(*waiting), 30)
    finally:
        await close(mine, other)
    assert order == ["final", "first", "interim"]


async def streaming(postgres_url: str, owner: str) -> int:
    con = await asyncpg.connect(postgres_url)
    try:
        return int(await con.fetchval("SELECT COALESCE(SUM(active), 0) FROM edit_streams WHERE owner = $1", owner) or 0)
    finally:
        await con.close()


async def test_the_reserve_keeps_room_for_final_edits_of_replies_streaming_on_other_replicas(stores, postgres_url):
    mine, other, _ = budgets(stores, burst=3, window=60.0, reserve=True)
    try:
        other.join()
        other.join()  # two replies streaming on the other replica
        for _ in range(200):
            if await streaming(postgres_url, "replica-1") == 2:
                break
            await asyncio.sleep(0.02)
        await asyncio.wait_for(mine.acquire(first=True), 10)  # 3 free: one for this, two kept
        interim = asyncio.create_task(mine.acquire())
        await asyncio.sleep(0.3)
        assert not interim.done()  # 2 free, both kept for the other replica's final edits
        await asyncio.wait_for(other.acquire(urgent=True), 10)  # a final edit takes one at once
        other.leave()
        other.leave()  # both replies done: the room is not kept any more
        await asyncio.wait_for(interim, 10)
    finally:
        await close(mine, other)
    assert mine.granted == 2 and other.granted == 1


async def test_a_pause_from_one_replica_stops_the_others(stores, postgres_url):
    first, second, third = budgets(stores, burst=50, window=60.0)
    try:
        first.pause(3.0)  # a 429 on the first replica
        con = await asyncpg.connect(postgres_url)
        try:
            for _ in range(200):
                if await con.fetchval("SELECT count(*) FROM edit_pauses WHERE key = $1", KEY):
                    break
                await asyncio.sleep(0.02)
        finally:
            await con.close()
        edits = [asyncio.create_task(b.acquire(urgent=True)) for b in (first, second, third)]
        await asyncio.sleep(0.5)
        assert [e.done() for e in edits] == [False, False, False]  # nobody edits while paused
        await asyncio.wait_for(asyncio.gather(*edits), 10)  # and everyone goes on afterwards
    finally:
        await close(first, second, third)


async def test_a_database_away_means_local_grants_not_blocked_replies(postgres_server: PostgresServer, postgres_url):
    proxy = TcpProxy(postgres_server.port)
    await proxy.start()
    url = postgres_server.url(postgres_url.rsplit("/", 1)[1], port=proxy.port)
    store = await PostgresStore.open(url, pool_size=2, wait=5)
    budget = SharedEditBudget(store, KEY, "replica-0", per_minute=120, burst=2, window=60.0)
    try:
        await asyncio.wait_for(budget.acquire(), 10)  # shared
        await proxy.cut()
        await asyncio.wait_for(budget.acquire(urgent=True), 10)  # granted here, by the same rules
        third = asyncio.create_task(budget.acquire())
        await asyncio.sleep(0.3)
        assert not third.done()  # this replica's own two grants fill the window it counts locally
        third.cancel()
    finally:
        await budget.aclose()
        await store.close()
    assert budget.granted == 2


async def test_the_core_hands_an_adapter_one_budget_per_key(make_settings, stores):
    from bot.runtime import build_router
    from bot.service import RelayService

    settings = make_settings()
    router = build_router(settings)
    service = RelayService(settings, stores[0], router)
    try:
        budget = service.edit_budget(KEY, 50, burst=50, window=60.0, reserve=True)
        assert isinstance(budget, SharedEditBudget) and budget.owner == service.owner
        assert service.edit_budget(KEY, 50, burst=50, window=60.0, reserve=True) is budget
        assert service.edit_budget("slack:T2:chat.update", 50) is not budget
    finally:
        await service.stop()
        await router.aclose()


async def test_a_waiter_sleeps_until_room_is_due_instead_of_asking_again_and_again(stores, postgres_url):
    budget, _, _ = budgets(stores, burst=2, window=60.0)
    con = await asyncpg.connect(postgres_url)
    commits = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
    try:
        await budget.acquire()
        await budget.acquire()  # the window is full for a minute
        before = await con.fetchval(commits)
        waiter = asyncio.create_task(budget.acquire())
        await asyncio.sleep(2.5)
        asked = await con.fetchval(commits) - before
        assert not waiter.done()
        waiter.cancel()
    finally:
        await con.close()
        await budget.aclose()
    assert asked < 50  # about one transaction a second (MAX_SLEEP), not a busy loop
