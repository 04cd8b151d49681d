"""The SQLite store on real files: migrations, exactly-once, conversations, ledger."""

from __future__ import annotations

import sqlite3

from bot.conversation import Turn
from bot.store import MIGRATIONS, UsageRecord
from bot.store_sqlite import SqliteStore


async def test_migrations_are_versioned_and_idempotent(tmp_path):
    path = tmp_path / "s.db"
    store = await SqliteStore.open(path)
    assert await store.schema_version() == len(MIGRATIONS)
    await store.close()
    store = await SqliteStore.open(path)  # opening again applies nothing twice
    assert await store.schema_version() == len(MIGRATIONS)
    await store.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_events_are_claimed_once_even_across_restarts(tmp_path):
    store = await SqliteStore.open(tmp_path / "s.db")
    assert await store.claim_event("Ev1", "slack") is True
    assert await store.claim_event("Ev1", "slack") is False
    await store.close()
    store = await SqliteStore.open(tmp_path / "s.db")
    assert await store.claim_event("Ev1", "slack") is False
    assert await store.claim_event("Ev2", "slack") is True
    await store.close()


async def test_conversations_keep_turns_in_order_and_reset(tmp_path):
    store = await SqliteStore.open(tmp_path / "s.db")
    await store.add_turns("terminal:a", [Turn("user", "hi"), Turn("assistant", "hello")])
    await store.add_turns("terminal:a", [Turn("user", "<|eot_id|> and ünïcode")])
    await store.add_turns("terminal:b", [Turn("user", "other")])
    turns = await store.load_turns("terminal:a")
    assert [(t.role, t.text) for t in turns] == [
        ("user", "hi"),
        ("assistant", "hello"),
        ("user", "<|eot_id|> and ünïcode"),
    ]
    assert all(t.message_id for t in turns)  # row ids key the token-count cache
    await store.reset_conversation("terminal:a")
    assert await store.load_turns("terminal:a") == []
    assert len(await store.load_turns("terminal:b")) == 1
    await store.close()


async def test_token_counts_persist(tmp_path):
    store = await SqliteStore.open(tmp_path / "s.db")
    await store.save_counts([("m1", "d1", 12), ("m2", "d2", 7)])
    assert await store.cached_counts(["m1", "m2", "m3"]) == {"m1": ("d1", 12), "m2": ("d2", 7)}
    await store.close()


async def test_request_records_and_usage_ledger(tmp_path):
    store = await SqliteStore.open(tmp_path / "s.db")
    rid = await store.accept(["slack:event:Ev1"], "slack", "C1:123.4", {"trigger": {"ts": "123.4"}}, "me")
    assert rid is not None
    await store.update_request(rid, state="answering", messages=[{"ts": "123.5"}], shown="half", part=0)
    (open_,) = await store.open_requests("slack")
    assert (open_.id, open_.state, open_.messages, open_.shown) == (rid, "answering", [{"ts": "123.5"}], "half")
    assert open_.origin == {"trigger": {"ts": "123.4"}} and open_.owner == "me"
    await store.update_request(rid, state="done", provider="deepinfra", model="m")
    assert await store.open_requests("slack") == []
    for user, cost in (("U1", 0.5), ("U1", 0.25), ("U2", 1.0)):
        await store.record_usage(UsageRecord("slack", "deepinfra", "m", user, "C1", 100, 50, cost, rid))
    by_user = {t.key: t for t in await store.usage_totals("user")}
    assert by_user["U1"].requests == 2 and by_user["U1"].cost_usd == 0.75
    assert by_user["U2"].prompt_tokens == 100
    await store.close()


async def test_accept_claims_every_key_or_none(tmp_path):
    store = await SqliteStore.open(tmp_path / "s.db")
    first = await store.accept(["slack:event:Ev1", "slack:message:C1:1.0"], "slack", "c", {}, "me")
    # the same message arriving as another event: one key is taken, so nothing is written
    again = await store.accept(["slack:event:Ev2", "slack:message:C1:1.0"], "slack", "c", {}, "me")
    assert first is not None and again is None
    assert [r.id for r in await store.open_requests("slack")] == [first]
    assert await store.accept(["slack:event:Ev2"], "slack", "c", {}, "me") is not None  # Ev2 was rolled back
    await store.close()


async def test_concurrent_accepts_and_updates_do_not_interleave_transactions(tmp_path):
    import asyncio

    store = await SqliteStore.open(tmp_path / "s.db")
    first = await store.accept(["k:0"], "discord", "c", {}, "me")
    assert first is not None
    results = await asyncio.gather(
        *(store.accept([f"k:{n % 10}"], "discord", "c", {}, "me") for n in range(40)),
        *(store.update_request(first, shown=f"text {n}") for n in range(10)),
    )
    accepted = [r for r in results[:40] if r is not None]
    assert len(accepted) == 9  # k:1 .. k:9 once each; k:0 was taken before
    assert len(await store.open_requests("discord")) == 10
    record = await store.request(first)
    assert record is not None and record.shown.startswith("text ")
    await store.close()
