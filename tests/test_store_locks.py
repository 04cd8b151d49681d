"""The store under locks held elsewhere, on real SQLite files: wait, then degrade cleanly.

Another process (a backup, an operator's ``sqlite3 file 'BEGIN IMMEDIATE'``) holds
the write lock; store operations wait it out for ``wait`` seconds and then raise
``StoreUnavailable``.  ``exclusive`` opens (``serve``) refuse a file another
process holds.  Timings are hang guards only, never measured.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bot.conversation import Turn
from bot.errors import StoreInUse, StoreUnavailable
from bot.store_sqlite import SqliteStore

GUARD = 60  # seconds: a hang guard, not a measurement

HOLD_SCRIPT = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""

OPEN_SCRIPT = """
import asyncio, sys
from bot.store_sqlite import SqliteStore

async def main():
    store = await SqliteStore.open(sys.argv[1], exclusive=True)
    print("open", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await store.close()

asyncio.run(main())
"""


@asynccontextmanager
async def write_lock_in_another_process(db: Path, seconds: float) -> AsyncIterator[asyncio.subprocess.Process]:
    """A separate process holds ``BEGIN IMMEDIATE`` on ``db`` for ``seconds`` (from when this yields)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLD_SCRIPT, str(db), str(seconds), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), GUARD) == b"locked\n"
        yield proc
    finally:
        if proc.returncode is None:
            await asyncio.wait_for(proc.wait(), GUARD)


@asynccontextmanager
async def write_lock_in_this_process(db: Path) -> AsyncIterator[None]:
    """Another connection (in a thread) holds ``BEGIN IMMEDIATE`` until the block ends."""
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    await asyncio.to_thread(conn.execute, "BEGIN IMMEDIATE")
    try:
        yield
    finally:
        await asyncio.to_thread(conn.execute, "ROLLBACK")
        conn.close()


def events(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT event_id FROM events ORDER BY event_id")]


def aiosqlite_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "_connection_worker_thread" in repr(getattr(t, "_target", None))}


async def no_connection_left_open(before: set[threading.Thread]) -> bool:
    """True once every aiosqlite worker thread started since ``before`` has ended (a leak never ends)."""
    for _ in range(100):
        if aiosqlite_threads() <= before:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_claim_waits_out_another_process_lock_and_succeeds_once(tmp_path, caplog):
    db = tmp_path / "s.db"
    store = await SqliteStore.open(db, wait=GUARD, busy_timeout=0.2)  # retried well before the lock ends
    caplog.set_level(logging.INFO, logger="bot.store_locks")
    async with write_lock_in_another_process(db, 2.0) as holder:
        claim = asyncio.ensure_future(store.claim_event("slack:Ev1", "slack"))
        await asyncio.sleep(0.5)
        assert not claim.done() and holder.returncode is None  # still waiting on the lock
        assert await asyncio.wait_for(claim, GUARD) is True
    assert await store.claim_event("slack:Ev1", "slack") is False  # a redelivery is still a duplicate
    assert events(db) == ["slack:Ev1"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(db) in warnings[0].getMessage() and "BOT_DATABASE_WAIT" in warnings[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)  # one line, no traceback
    await store.close()


async def test_many_operations_waiting_together_all_succeed_with_one_warning(tmp_path, caplog):
    db = tmp_path / "s.db"
    store = await SqliteStore.open(db, wait=GUARD, busy_timeout=0.1)
    caplog.set_level(logging.WARNING, logger="bot.store_locks")
    async with write_lock_in_another_process(db, 1.5):
        results = await asyncio.wait_for(
            asyncio.gather(
                store.claim_event("a", "discord"),
                store.claim_event("b", "discord"),
                store.claim_event("a", "discord"),
                store.add_turns("terminal:x", [Turn("user", "hi"), Turn("assistant", "hello")]),  # BEGIN IMMEDIATE
                store.accept(["discord:message:1"], "discord", "C1", {}, "me"),  # BEGIN IMMEDIATE too
            ),
            GUARD,
        )
    assert sorted(results[:3]) == [False, True, True]
    assert [t.text for t in await store.load_turns("terminal:x")] == ["hi", "hello"]
    assert [r.id for r in await store.open_requests("discord")] == [results[4]]
    assert events(db) == ["a", "b", "discord:message:1"]
    assert len(caplog.records) == 1  # one warning for the whole wait, not one per operation
    await store.close()


async def test_past_the_bound_an_operation_raises_store_unavailable(tmp_path):
    db = tmp_path / "s.db"
    store = await SqliteStore.open(db, wait=0.5, busy_timeout=0.1)
    async with write_lock_in_this_process(db):
        with pytest.raises(StoreUnavailable) as info:
            await asyncio.wait_for(store.claim_event("late", "slack"), GUARD)
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(store.add_turns("terminal:x", [Turn("user", "hi")]), GUARD)
    error = info.value
    assert str(db) in str(error) and "\n" not in str(error)
    assert error.retryable
    assert str(db) not in error.user_message and error.user_message.endswith(".")
    assert isinstance(error.__cause__, sqlite3.OperationalError)
    # Once the lock is gone the same store works again: nothing half-done was left behind.
    assert await store.claim_event("late", "slack") is True
    assert await store.load_turns("terminal:x") == []
    await store.close()


async def test_open_waits_for_a_lock_and_past_the_bound_closes_what_it_opened(tmp_path):
    db = tmp_path / "s.db"
    await (await SqliteStore.open(db)).close()  # an existing, migrated file
    before = aiosqlite_threads()
    async with write_lock_in_this_process(db):
        with pytest.raises(StoreUnavailable):
            await asyncio.wait_for(SqliteStore.open(db, wait=0.3, busy_timeout=0.1), GUARD)
    assert await no_connection_left_open(before)  # the connection was closed, its thread ended
    async with write_lock_in_another_process(db, 1.0):
        store = await asyncio.wait_for(SqliteStore.open(db, wait=GUARD, busy_timeout=0.1), GUARD)
    assert await store.ping()
    await store.close()


async def test_open_of_a_corrupt_file_closes_the_connection(tmp_path):
    db = tmp_path / "corrupt.db"
    db.write_bytes(b"this is not a database file, " * 300)
    before = aiosqlite_threads()
    with pytest.raises(sqlite3.DatabaseError):
        await asyncio.wait_for(SqliteStore.open(db, exclusive=True), GUARD)
    assert await no_connection_left_open(before)
    store = await SqliteStore.open(tmp_path / "good.db", exclusive=True)  # the failed open left no lock behind
    await store.close()
    (tmp_path / "good.db").unlink()
    db.write_bytes(b"")
    store = await SqliteStore.open(db, exclusive=True)  # and its own lock file was released
    await store.close()


def test_every_store_operation_waits_for_locks():
    """Methods added later get the wrapper too: a method without it would fail at once on a lock."""
    public = {
        name
        for name, member in inspect.getmembers(SqliteStore, inspect.iscoroutinefunction)
        if not name.startswith("_") and name not in ("open", "close")
    }
    assert public  # the check sees the methods
    missing = sorted(name for name in public if not getattr(getattr(SqliteStore, name), "waits_for_locks", False))
    assert missing == []


async def test_an_exclusive_open_refuses_a_file_another_process_holds(tmp_path):
    db = tmp_path / "s.db"
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", OPEN_SCRIPT, str(db),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=Path(__file__).parent.parent,
    )
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert await asyncio.wait_for(holder.stdout.readline(), GUARD) == b"open\n"
        with pytest.raises(StoreInUse) as info:
            await SqliteStore.open(db, exclusive=True)
        message = str(info.value)
        assert str(db) in message and f"PID {holder.pid}" in message and "\n" not in message
        shared = await SqliteStore.open(db)  # one-shot commands (ask, usage) still open it
        assert await shared.claim_event("from-ask", "terminal") is True
        await shared.close()
        holder.stdin.close()
        assert await asyncio.wait_for(holder.wait(), GUARD) == 0
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()
    store = await SqliteStore.open(db, exclusive=True)  # the holder's close released it
    assert (tmp_path / "s.db.lock").read_text().strip() == str(os.getpid())
    await store.close()


async def test_exclusive_opens_in_one_process_conflict_until_closed(tmp_path):
    db = tmp_path / "s.db"
    first = await SqliteStore.open(db, exclusive=True)
    with pytest.raises(StoreInUse, match=f"PID {os.getpid()}"):
        await SqliteStore.open(db, exclusive=True)
    await first.close()
    second = await SqliteStore.open(db, exclusive=True)
    await second.close()


async def test_an_in_memory_store_takes_no_lock_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = await SqliteStore.open(":memory:", exclusive=True)
    second = await SqliteStore.open(":memory:", exclusive=True)
    assert list(tmp_path.iterdir()) == []
    await first.close()
    await second.close()
