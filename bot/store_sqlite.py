"""The SQLite backend of the store: one file (WAL), one long-running process.

Every operation waits out a lock another connection holds (``store_locks``),
and ``serve`` opens the file ``exclusive``: one long-running process per file
(``ProcessLock``).  The schema version is SQLite's ``user_version``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from .conversation import Turn
from .store import (
    MIGRATIONS,
    OPEN_STATES,
    ORDER_STALE,
    REQUEST_COLUMNS,
    USAGE_GROUPS,
    RequestRecord,
    Summary,
    UsageRecord,
    UsageTotal,
    check_request_fields,
    migration,
    request_record,
)
from .sqlite_claims import Claim, Claims
from .store_locks import BUSY_TIMEOUT, DEFAULT_WAIT, LockWait, ProcessLock, in_transaction, waits_for_locks

_T = TypeVar("_T")


class SqliteStore:
    """The SQLite implementation.  Open with ``await SqliteStore.open(path)``."""

    shared = False  # one process per file

    def __init__(
        self, db: aiosqlite.Connection, *, lock_wait: LockWait | None = None, process_lock: ProcessLock | None = None
    ) -> None:
        self._db = db
        self._claims = Claims(self._in_thread)
        self._lock_wait = lock_wait or LockWait(":memory:")
        self._process_lock = process_lock

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        exclusive: bool = False,
        wait: float = DEFAULT_WAIT,
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> SqliteStore:
        """Connect, set up and migrate; a lock held elsewhere is waited out for ``wait`` seconds.

        ``exclusive`` (``serve``) also takes ``<path>.lock``: a second exclusive opener gets
        ``StoreInUse`` naming the file and the holder's PID.  If any step fails, whatever was
        opened is closed again before the error propagates.
        """
        name = str(path)
        if name != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        process_lock = ProcessLock.acquire(name) if exclusive and name != ":memory:" else None
        try:
            db = await aiosqlite.connect(name, isolation_level=None)
        except BaseException:
            if process_lock is not None:
                process_lock.release()
            raise
        store = cls(db, lock_wait=LockWait(name, wait), process_lock=process_lock)
        try:
            # The busy timeout first: every later step, the WAL switch included, waits on a lock.
            await db.execute(f"PRAGMA busy_timeout={round(min(busy_timeout, wait) * 1000)}")
            await store._set_up()
        except BaseException:
            await store.close()
            raise
        return store

    @waits_for_locks
    async def _set_up(self) -> None:
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.execute("PRAGMA foreign_keys=ON")
        await self._migrate()

    async def close(self) -> None:
        try:
            await self._db.close()
        finally:
            if self._process_lock is not None:
                self._process_lock.release()

    @waits_for_locks
    async def ping(self) -> bool:
        async with self._db.execute("SELECT 1") as cur:
            return (await cur.fetchone()) == (1,)

    @waits_for_locks
    async def schema_version(self) -> int:
        async with self._db.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def _migrate(self) -> None:
        # BEGIN IMMEDIATE takes the write lock first, so two processes never
        # run the same migration twice.
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            version = await self.schema_version()
            for number in range(version + 1, len(MIGRATIONS) + 1):
                for statement in filter(str.strip, migration(number, "sqlite").split(";")):
                    await self._db.execute(statement)
                await self._db.execute(f"PRAGMA user_version={number}")
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise
        await self._db.execute("COMMIT")

    # -- exactly once --------------------------------------------------------------

    @waits_for_locks
    async def claim_event(self, event_id: str, platform: str) -> bool:
        """True the first time an event id is seen, False for every redelivery."""
        cur = await self._db.execute(
            "INSERT OR IGNORE INTO events(event_id, platform, received_at) VALUES (?, ?, ?)",
            (event_id, platform, time.time()),
        )
        return cur.rowcount == 1

    # -- conversations -----------------------------------------------------------------

    async def _conversation_id(self, key: str) -> int:
        await self._db.execute(
            "INSERT OR IGNORE INTO conversations(key, created_at) VALUES (?, ?)", (key, time.time())
        )
        async with self._db.execute("SELECT id FROM conversations WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    @waits_for_locks
    async def load_turns(self, key: str) -> list[Turn]:
        sql = (
            "SELECT role, text, author, message_id, turns.id FROM turns JOIN conversations c "
            "ON c.id = turns.conversation_id WHERE c.key = ? ORDER BY turns.id"
        )
        async with self._db.execute(sql, (key,)) as cur:
            rows = await cur.fetchall()
        # Turns typed in the terminal have no platform id: their row id keys the count cache.
        return [Turn(role=r[0], text=r[1], author=r[2], message_id=r[3] or f"{key}#{r[4]}") for r in rows]

    @in_transaction
    async def add_turns(self, key: str, turns: Sequence[Turn]) -> None:
        """Append turns in one transaction: either all are stored or none."""
        now = time.time()
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            cid = await self._conversation_id(key)
            await self._db.executemany(
                "INSERT INTO turns(conversation_id, role, text, author, message_id, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(cid, t.role, t.text, t.author, t.message_id, now) for t in turns],
            )
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise
        await self._db.execute("COMMIT")

    @in_transaction
    async def reset_conversation(self, key: str) -> None:
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            await self._db.execute("DELETE FROM conversations WHERE key = ?", (key,))
            await self._db.execute("DELETE FROM summaries WHERE conversation = ?", (key,))
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise
        await self._db.execute("COMMIT")

    # -- token counts --------------------------------------------------------------------

    @waits_for_locks
    async def cached_counts(self, message_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        out: dict[str, tuple[str, int]] = {}
        ids = list(message_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT message_id, digest, tokens FROM token_counts WHERE message_id IN ({marks})"
            async with self._db.execute(sql, chunk) as cur:
                for mid, dig, n in await cur.fetchall():
                    out[mid] = (dig, int(n))
        return out

    @waits_for_locks
    async def save_counts(self, rows: Sequence[tuple[str, str, int]]) -> None:
        if rows:
            await self._db.executemany(
                "INSERT OR REPLACE INTO token_counts(message_id, digest, tokens) VALUES (?, ?, ?)", rows
            )

    # -- summarised history (``bot.summary``) ----------------------------------------------

    @waits_for_locks
    async def summary(self, conversation: str) -> Summary | None:
        sql = "SELECT covers, text, provider FROM summaries WHERE conversation = ?"
        async with self._db.execute(sql, (conversation,)) as cur:
            row = await cur.fetchone()
        return Summary(tuple(row[0].split()), row[1], row[2]) if row is not None else None

    @waits_for_locks
    async def save_summary(self, conversation: str, summary: Summary) -> None:
        await self._db.execute(
            "INSERT OR REPLACE INTO summaries(conversation, covers, text, provider, updated_at) VALUES (?, ?, ?, ?, ?)",
            (conversation, " ".join(summary.covers), summary.text, summary.provider, time.time()),
        )

    # -- requests -------------------------------------------------------------------------

    @waits_for_locks
    async def accept(
        self, keys: Sequence[str], platform: str, conversation: str, origin: dict[str, Any], owner: str
    ) -> int | None:
        """Claim every dedupe key and record the request, in one transaction.

        None when any key was claimed before (a redelivery, or the same message
        arriving as two events): nothing is written then.  The transaction runs
        on the connection's thread in one step, shared by the questions that
        arrive while another runs (``sqlite_claims``): it is on the path to the
        first platform call of every question.
        """
        return await self._claims.claim(Claim(tuple(keys), platform, conversation, json.dumps(origin), owner, time.time()))

    async def _in_thread(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` on the sqlite3 connection in aiosqlite's thread, as one queued step
        (aiosqlite has no public call for this; ``_execute`` is how its own methods do it)."""
        return await self._db._execute(work, self._db._conn)

    @waits_for_locks
    async def update_request(self, request_id: int, **fields: object) -> None:
        values = check_request_fields(fields)
        assigns = ", ".join(f"{name} = ?" for name in fields)
        await self._db.execute(
            f"UPDATE requests SET {assigns}, updated_at = ? WHERE id = ?", (*values, time.time(), request_id)
        )

    @waits_for_locks
    async def open_requests(self, platform: str) -> list[RequestRecord]:
        """Requests of ``platform`` that are not final yet, oldest first."""
        marks = ",".join("?" * len(OPEN_STATES))
        sql = (
            f"SELECT {REQUEST_COLUMNS} FROM requests "
            f"WHERE platform = ? AND state IN ({marks}) ORDER BY id"
        )
        async with self._db.execute(sql, (platform, *OPEN_STATES)) as cur:
            return [request_record(r) for r in await cur.fetchall()]

    @waits_for_locks
    async def heartbeat(self, owner: str) -> None:
        now = time.time()
        await self._db.execute(
            "INSERT INTO replicas(owner, started_at, heartbeat_at) VALUES (?, ?, ?) "
            "ON CONFLICT(owner) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
            (owner, now, now),
        )
        await self._db.commit()

    @waits_for_locks
    async def take_orphans(self, platform: str, owner: str, alive_since: float) -> list[RequestRecord]:
        """Make ``owner`` the owner of every open request of ``platform`` whose owner has not
        heartbeat since ``alive_since``; those requests, oldest first.  (One process per file:
        ``serve`` passes infinity, every other owner is gone.)"""
        marks = ",".join("?" * len(OPEN_STATES))
        sql = (
            f"UPDATE requests SET owner = ?, updated_at = ? WHERE platform = ? AND state IN ({marks}) "
            "AND owner <> ? AND owner NOT IN (SELECT owner FROM replicas WHERE heartbeat_at >= ?) "
            f"RETURNING {REQUEST_COLUMNS}"
        )
        args = (owner, time.time(), platform, *OPEN_STATES, owner, alive_since)

        def take(db: sqlite3.Connection) -> list[RequestRecord]:
            with closing(db.execute(sql, args)) as cur:
                rows = cur.fetchall()
            db.commit()
            return sorted((request_record(r) for r in rows), key=lambda r: r.id)

        return await self._in_thread(take)

    @waits_for_locks
    async def earlier_open(self, platform: str, conversation: str, request_id: int) -> bool:
        marks = ",".join("?" * len(OPEN_STATES))
        sql = (
            "SELECT 1 FROM requests WHERE platform = ? AND conversation = ? AND id < ? "
            f"AND state IN ({marks}) AND updated_at >= ? LIMIT 1"
        )
        args = (platform, conversation, request_id, *OPEN_STATES, time.time() - ORDER_STALE)
        async with self._db.execute(sql, args) as cur:
            return await cur.fetchone() is not None

    @waits_for_locks
    async def request(self, request_id: int) -> RequestRecord | None:
        sql = f"SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?"
        async with self._db.execute(sql, (request_id,)) as cur:
            row = await cur.fetchone()
        return request_record(row) if row is not None else None

    # -- per-channel settings -------------------------------------------------------------

    @waits_for_locks
    async def channel_settings(self, platform: str, channel: str) -> dict[str, str]:
        sql = "SELECT name, value FROM channel_settings WHERE platform = ? AND channel = ?"
        async with self._db.execute(sql, (platform, channel)) as cur:
            return {name: value for name, value in await cur.fetchall()}

    @waits_for_locks
    async def set_channel_setting(self, platform: str, channel: str, name: str, value: str | None) -> None:
        if value is None:
            await self._db.execute(
                "DELETE FROM channel_settings WHERE platform = ? AND channel = ? AND name = ?",
                (platform, channel, name),
            )
        else:
            await self._db.execute(
                "INSERT OR REPLACE INTO channel_settings(platform, channel, name, value) VALUES (?, ?, ?, ?)",
                (platform, channel, name, value),
            )

    # -- usage ------------------------------------------------------------------------------

    @waits_for_locks
    async def record_usage(self, record: UsageRecord) -> None:
        await self._db.execute(
            "INSERT INTO usage(at, reply_id, platform, provider, model, user_id, channel, "
            "prompt_tokens, completion_tokens, cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                time.time(),
                record.reply_id,
                record.platform,
                record.provider,
                record.model,
                record.user_id,
                record.channel,
                record.prompt_tokens,
                record.completion_tokens,
                record.cost_usd,
            ),
        )

    @waits_for_locks
    async def usage_of(self, by: str, key: str, since: float) -> tuple[int, float]:
        """(tokens in + out, cost) of one user or channel since a time."""
        column = USAGE_GROUPS[by]
        sql = (
            "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0), COALESCE(SUM(cost_usd), 0) "
            f"FROM usage WHERE {column} = ? AND at >= ?"
        )
        async with self._db.execute(sql, (key, since)) as cur:
            row = await cur.fetchone()
        return (int(row[0]), float(row[1])) if row else (0, 0.0)

    @waits_for_locks
    async def usage_totals(
        self, by: str, since: float = 0.0, *, user: str | None = None, channel: str | None = None
    ) -> list[UsageTotal]:
        """Totals grouped ``by`` provider/user/channel/model, optionally for one user or channel."""
        column = USAGE_GROUPS[by]
        where = ["at >= ?"]
        args: list[object] = [since]
        if user is not None:
            where.append("user_id = ?")
            args.append(user)
        if channel is not None:
            where.append("channel = ?")
            args.append(channel)
        sql = (
            f"SELECT COALESCE({column}, '-'), COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), "
            f"SUM(cost_usd) FROM usage WHERE {' AND '.join(where)} GROUP BY {column} "
            "ORDER BY SUM(cost_usd) DESC"
        )
        async with self._db.execute(sql, args) as cur:
            rows = await cur.fetchall()
        return [UsageTotal(str(r[0]), int(r[1]), int(r[2]), int(r[3]), float(r[4])) for r in rows]


    # -- controls on an answer (``bot.controls``) ----------------------------------------------

    @waits_for_locks
    async def request_stop(self, request_id: int, by: str) -> bool:
        cur = await self._db.execute(
            "UPDATE requests SET stop_by = ?, updated_at = ? WHERE id = ? AND stop_by IS NULL "
            "AND state IN ('accepted', 'answering')",
            (by, time.time(), request_id),
        )
        return cur.rowcount == 1

    @waits_for_locks
    async def stops(self, request_ids: Sequence[int]) -> dict[int, str]:
        if not request_ids:
            return {}
        marks = ", ".join("?" * len(request_ids))
        sql = f"SELECT id, stop_by FROM requests WHERE id IN ({marks}) AND stop_by IS NOT NULL"
        async with self._db.execute(sql, list(request_ids)) as cur:
            return {int(r[0]): str(r[1]) for r in await cur.fetchall()}

    @waits_for_locks
    async def vote(self, request_id: int, platform: str, user: str, vote: int) -> str | None:
        sql = (
            "INSERT INTO votes(request_id, platform, user_id, vote, provider, model, at) "
            "SELECT id, platform, ?, ?, provider, COALESCE(model, ''), ? FROM requests "
            "WHERE id = ? AND platform = ? AND provider IS NOT NULL "
            "ON CONFLICT (request_id, user_id) DO UPDATE SET vote = excluded.vote, at = excluded.at "
            "RETURNING provider"
        )
        async with self._db.execute(sql, (user, vote, time.time(), request_id, platform)) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row is not None else None

    @waits_for_locks
    async def vote_totals(self, by: str, since: float = 0.0) -> dict[str, tuple[int, int]]:
        column = {"provider": "provider", "model": "model"}.get(by)
        if column is None:
            return {}
        sql = (
            f"SELECT {column}, SUM(CASE WHEN vote > 0 THEN 1 ELSE 0 END), SUM(CASE WHEN vote < 0 THEN 1 ELSE 0 END) "
            f"FROM votes WHERE at >= ? GROUP BY {column}"
        )
        async with self._db.execute(sql, (since,)) as cur:
            return {str(r[0]): (int(r[1]), int(r[2])) for r in await cur.fetchall()}

async def probe(path: str) -> str:
    """For ``doctor``: read the file's schema version without creating or changing anything."""
    if path != ":memory:" and not Path(path).exists():
        return "SQLite, not created yet (the first command creates it)"

    def read() -> int:
        with closing(sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)) as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])

    version = 0 if path == ":memory:" else await asyncio.to_thread(read)
    return f"SQLite, schema version {version} of {len(MIGRATIONS)}"
