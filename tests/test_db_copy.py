"""``llama-relay db copy``: a SQLite store filled through the store API, copied into PostgreSQL,
read back through the PostgreSQL store: every table, the ids kept, the sequences past them."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys

import asyncpg
import pytest

from bot import db_copy
from bot.conversation import Turn
from bot.errors import ConfigError, StoreInUse
from bot.store import LIVE_TABLES, TABLES, Store, Summary, UsageRecord, open_store
from bot.store_sqlite import SqliteStore


async def fill(store: Store) -> dict[str, int]:
    """Some of everything, through the public API only."""
    assert await store.claim_event("slack:event:Ev0", "slack")
    first = await store.accept(["slack:event:Ev1", "slack:message:C1:1.0"], "slack", "C1:1.0", {"trigger": 1}, "p1")
    second = await store.accept(["discord:message:9"], "discord", "G1:9", {"trigger": 2}, "p1")
    third = await store.accept(["slack:event:Ev3"], "slack", "C1:3.0", {}, "p1")
    assert first and second and third
    await store.update_request(first, state="done", messages=[{"ts": "1.1"}], shown="the answer", provider="p")
    await store.update_request(second, state="answering", place={"channel": "G1"}, messages=[{"id": 5}], part=1)
    await store.add_turns("terminal:kept", [Turn("user", "hi ünïcode"), Turn("assistant", "hello", author="bot")])
    await store.add_turns("slack:C1:1.0", [Turn("user", "q", author="U1", message_id="1.0")])
    await store.add_turns("terminal:gone", [Turn("user", "deleted"), Turn("assistant", "soon")])
    await store.reset_conversation("terminal:gone")  # turn ids 4-5 are used up: a copy must not give them out again
    await store.save_counts([("1.0", "d1", 12), ("terminal:kept#2", "d2", 7)])
    await store.set_channel_setting("slack", "C1", "model", "fast")
    await store.set_channel_setting("discord", "G1", "prompt", "be brief")
    await store.record_usage(UsageRecord("slack", "deepinfra", "m", "U1", "C1", 100, 50, 0.25, first))
    await store.record_usage(UsageRecord("discord", "openai", "m2", "U2", "G1", 10, 5, 0.5, second))
    await store.save_summary("terminal:kept", Summary(("f1", "f2"), "They said hello.", "openai"))
    return {"first": first, "second": second, "third": third}


async def snapshot(store: Store) -> dict[str, object]:
    """Everything the API can read back."""
    requests = [await store.request(n) for n in range(1, 5)]
    return {
        "requests": requests,
        "open": [await store.open_requests(p) for p in ("slack", "discord")],
        "turns": [await store.load_turns(k) for k in ("terminal:gone", "terminal:kept", "slack:C1:1.0")],
        "counts": await store.cached_counts(["1.0", "terminal:kept#2", "missing"]),
        "settings": [await store.channel_settings("slack", "C1"), await store.channel_settings("discord", "G1")],
        "usage": [await store.usage_totals(by) for by in ("provider", "user", "channel", "model")],
        "usage_of": await store.usage_of("user", "U1", since=0),
        "summary": await store.summary("terminal:kept"),
    }


@pytest.fixture
async def sqlite_file(tmp_path):
    path = tmp_path / "bot.db"
    store = await open_store(path)
    ids = await fill(store)
    expected = await snapshot(store)
    await store.close()
    return path, ids, expected


async def test_copy_moves_every_table_with_its_ids(sqlite_file, postgres_url):
    path, ids, expected = sqlite_file
    copied = await db_copy.copy(str(path), postgres_url)
    counts = {c.table: c.rows for c in copied}
    assert [c.table for c in copied] == list(TABLES)
    assert counts["events"] == 5 and counts["requests"] == 3 and counts["turns"] == 3 and counts["usage"] == 2
    assert counts["conversations"] == 2 and counts["token_counts"] == 2 and counts["channel_settings"] == 2
    assert counts["summaries"] == 1

    store = await open_store(postgres_url)
    try:
        assert await snapshot(store) == expected
        for key in ("slack:event:Ev0", "slack:event:Ev1", "slack:message:C1:1.0", "discord:message:9"):
            assert await store.claim_event(key, "slack") is False  # claimed before the move stays claimed
        new = await store.accept(["slack:event:new"], "slack", "c", {}, "p2")
        assert new == ids["third"] + 1  # the sequence continues after the copied ids
        await store.add_turns("terminal:new", [Turn("user", "after the move")])
        (turn,) = await store.load_turns("terminal:new")
        assert turn.message_id == "terminal:new#6"  # 1-3 copied; 4-5 were deleted in SQLite, and never reused
    finally:
        await store.close()


async def test_copy_refuses_a_target_that_holds_data(sqlite_file, postgres_url):
    path, _, _ = sqlite_file
    store = await open_store(postgres_url)
    await store.set_channel_setting("slack", "C9", "model", "already here")
    await store.close()
    with pytest.raises(ConfigError, match=r"postgresql://relay:\*\*\*@.* already holds data \(in channel_settings\)"):
        await db_copy.copy(str(path), postgres_url)
    store = await open_store(postgres_url)
    try:
        assert await store.request(1) is None  # nothing was copied
        assert await store.channel_settings("slack", "C9") == {"model": "already here"}
    finally:
        await store.close()


async def test_copy_refuses_while_a_serve_holds_the_sqlite_file(sqlite_file, postgres_url):
    path, _, _ = sqlite_file
    serving = await SqliteStore.open(path, exclusive=True)
    try:
        with pytest.raises(StoreInUse):
            await db_copy.copy(str(path), postgres_url)
    finally:
        await serving.close()


async def test_copy_refuses_what_it_cannot_copy(tmp_path, postgres_url):
    with pytest.raises(ConfigError, match="does not exist"):
        await db_copy.copy(str(tmp_path / "missing.db"), postgres_url)
    with pytest.raises(ConfigError, match="--to must be a postgresql:// URL"):
        await db_copy.copy(str(tmp_path / "missing.db"), str(tmp_path / "other.db"))


async def test_the_db_copy_command(sqlite_file, postgres_server, postgres_url, tmp_path):
    path, _, _ = sqlite_file
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "BOT_DATABASE": str(path)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "db", "copy", "--to", postgres_url,
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[-1] == f"copied 20 rows into {postgres_url.replace(postgres_server.password, '***')}"
    assert postgres_server.password not in out.decode() + err.decode()
    assert lines[0].split() == ["events", "5"]

    again = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "db", "copy", "--from", str(path), "--to", postgres_url,
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(again.communicate(), 60)
    assert again.returncode == 2 and out == b""
    (line,) = err.decode().splitlines()
    assert line.startswith("configuration error: db copy: postgresql://relay:***@") and "already holds data" in line


async def test_every_table_of_the_schema_is_copied(tmp_path, postgres_url):
    """A migration that adds a table must add it to ``TABLES`` too, or ``db copy`` would leave it behind
    (or to ``LIVE_TABLES``: what running replicas share, which a copy starts without)."""
    await (await open_store(tmp_path / "s.db")).close()
    with sqlite3.connect(tmp_path / "s.db") as raw:
        names = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert names - {"sqlite_sequence"} == set(TABLES) | set(LIVE_TABLES)
    await (await open_store(postgres_url)).close()
    con = await asyncpg.connect(postgres_url)
    try:
        rows = await con.fetch("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
    finally:
        await con.close()
    assert {r[0] for r in rows} - {"schema_migrations"} == set(TABLES) | set(LIVE_TABLES)
