"""Persistent state in one SQLite file (WAL), behind a small interface.

What lives here: claimed dedupe keys (exactly-once), request records (every
accepted question from its claim to its final state, with where its messages
are and the text they show, so a restart can settle it), conversations and
their turns (the terminal's history), the token-count cache, the usage and
cost ledger, and per-channel settings.  (The ``replies`` table of schema 1 is
no longer written; request records replaced it.)  ``Store`` is the interface; ``SqliteStore``
is the implementation a PostgreSQL one can replace when replicas share state.

Every operation waits out a lock another connection holds (``store_locks``),
and ``serve`` opens the file ``exclusive``: one long-running process per file.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiosqlite

from .conversation import Turn
from .store_locks import BUSY_TIMEOUT, DEFAULT_WAIT, LockWait, ProcessLock, in_transaction, waits_for_locks

_T = TypeVar("_T")

# Each entry moves the schema one version up; applied in order, once, in a transaction.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE events (
        event_id TEXT PRIMARY KEY,
        platform TEXT NOT NULL,
        received_at REAL NOT NULL
    );
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL
    );
    CREATE TABLE turns (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        text TEXT NOT NULL,
        author TEXT,
        message_id TEXT,
        created_at REAL NOT NULL
    );
    CREATE INDEX turns_by_conversation ON turns(conversation_id, id);
    CREATE TABLE token_counts (
        message_id TEXT PRIMARY KEY,
        digest TEXT NOT NULL,
        tokens INTEGER NOT NULL
    );
    CREATE TABLE replies (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        platform TEXT NOT NULL,
        channel TEXT NOT NULL,
        thread TEXT,
        locator TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL,
        provider TEXT,
        model TEXT,
        error TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX replies_by_state ON replies(state);
    CREATE TABLE usage (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        reply_id INTEGER,
        platform TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        user_id TEXT,
        channel TEXT,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        cost_usd REAL NOT NULL
    );
    CREATE INDEX usage_by_user ON usage(user_id, at);
    CREATE INDEX usage_by_channel ON usage(channel, at);
    CREATE TABLE channel_settings (
        platform TEXT NOT NULL,
        channel TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (platform, channel, name)
    );
    """,
    # 2: the request record: one row per accepted question, from the claim to its final state
    """
    CREATE TABLE requests (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        platform TEXT NOT NULL,
        conversation TEXT NOT NULL,
        origin TEXT NOT NULL DEFAULT '{}',
        place TEXT NOT NULL DEFAULT '{}',
        messages TEXT NOT NULL DEFAULT '[]',
        shown TEXT NOT NULL DEFAULT '',
        part INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        owner TEXT NOT NULL DEFAULT '',
        provider TEXT,
        model TEXT,
        error TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX requests_by_state ON requests(platform, state);
    """,
]

#: Request states that are not final: a restart settles them (``bot.recovery``).
OPEN_STATES = ("accepted", "answering")



@dataclass(frozen=True, slots=True)
class UsageRecord:
    platform: str
    provider: str
    model: str
    user_id: str | None
    channel: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    reply_id: int | None = None


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """An accepted question: where its answer goes and how far it got."""

    id: int
    platform: str
    conversation: str
    origin: dict[str, Any]  # what the adapter needs to rebuild the request after a restart
    place: dict[str, Any]  # where the reply goes (the adapter's surface)
    messages: list[dict[str, Any]]  # every message posted, in order
    shown: str  # the text shown in the last message
    part: int  # which message of the reply the last one is
    state: str  # accepted, answering, done, partial, failed, ignored
    owner: str  # the process that accepted it
    created_at: float


@dataclass(frozen=True, slots=True)
class UsageTotal:
    key: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class Store(Protocol):
    """What the service needs from persistent state; ``SqliteStore`` implements it.

    A PostgreSQL implementation for several replicas implements the same methods.
    """

    async def close(self) -> None: ...
    async def ping(self) -> bool: ...
    async def claim_event(self, event_id: str, platform: str) -> bool: ...
    async def load_turns(self, key: str) -> list[Turn]: ...
    async def add_turns(self, key: str, turns: Sequence[Turn]) -> None: ...
    async def reset_conversation(self, key: str) -> None: ...
    async def cached_counts(self, message_ids: Sequence[str]) -> dict[str, tuple[str, int]]: ...
    async def save_counts(self, rows: Sequence[tuple[str, str, int]]) -> None: ...
    async def accept(
        self, keys: Sequence[str], platform: str, conversation: str, origin: dict[str, Any], owner: str
    ) -> int | None: ...
    async def update_request(self, request_id: int, **fields: object) -> None: ...
    async def open_requests(self, platform: str) -> list[RequestRecord]: ...
    async def request(self, request_id: int) -> RequestRecord | None: ...
    async def channel_settings(self, platform: str, channel: str) -> dict[str, str]: ...
    async def set_channel_setting(self, platform: str, channel: str, name: str, value: str | None) -> None: ...
    async def record_usage(self, record: UsageRecord) -> None: ...
    async def usage_of(self, by: str, key: str, since: float) -> tuple[int, float]: ...
    async def usage_totals(
        self, by: str, since: float = 0.0, *, user: str | None = None, channel: str | None = None
    ) -> list[UsageTotal]: ...


class SqliteStore:
    """The SQLite implementation.  Open with ``await SqliteStore.open(path)``."""

    def __init__(
        self, db: aiosqlite.Connection, *, lock_wait: LockWait | None = None, process_lock: ProcessLock | None = None
    ) -> None:
        self._db = db
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
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
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

    @waits_for_locks
    async def reset_conversation(self, key: str) -> None:
        await self._db.execute("DELETE FROM conversations WHERE key = ?", (key,))

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

    # -- requests -------------------------------------------------------------------------

    @waits_for_locks
    async def accept(
        self, keys: Sequence[str], platform: str, conversation: str, origin: dict[str, Any], owner: str
    ) -> int | None:
        """Claim every dedupe key and record the request, in one transaction.

        None when any key was claimed before (a redelivery, or the same message
        arriving as two events): nothing is written then.  The transaction runs
        on the connection's thread in one step: it is on the path to the first
        platform call of every question, and nothing can interleave with it.
        """
        now, data = time.time(), json.dumps(origin)

        def claim(db: sqlite3.Connection) -> int | None:
            db.execute("BEGIN IMMEDIATE")
            try:
                for key in keys:
                    added = db.execute(
                        "INSERT OR IGNORE INTO events(event_id, platform, received_at) VALUES (?, ?, ?)",
                        (key, platform, now),
                    )
                    if added.rowcount != 1:
                        db.execute("ROLLBACK")
                        return None
                row = db.execute(
                    "INSERT INTO requests(platform, conversation, origin, state, owner, created_at, updated_at) "
                    "VALUES (?, ?, ?, 'accepted', ?, ?, ?)",
                    (platform, conversation, data, owner, now, now),
                ).lastrowid
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return row

        return await self._in_thread(claim)

    async def _in_thread(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` on the sqlite3 connection in aiosqlite's thread, as one queued step
        (aiosqlite has no public call for this; ``_execute`` is how its own methods do it)."""
        return await self._db._execute(work, self._db._conn)

    _REQUEST_FIELDS = frozenset(
        {"state", "place", "messages", "shown", "part", "owner", "provider", "model", "error"}
    )
    _JSON_FIELDS = frozenset({"place", "messages"})

    @waits_for_locks
    async def update_request(self, request_id: int, **fields: object) -> None:
        unknown = set(fields) - self._REQUEST_FIELDS
        if unknown:
            raise ValueError(f"unknown request fields: {sorted(unknown)}")
        values = [json.dumps(v) if k in self._JSON_FIELDS else v for k, v in fields.items()]
        assigns = ", ".join(f"{name} = ?" for name in fields)
        await self._db.execute(
            f"UPDATE requests SET {assigns}, updated_at = ? WHERE id = ?", (*values, time.time(), request_id)
        )

    _REQUEST_COLUMNS = "id, platform, conversation, origin, place, messages, shown, part, state, owner, created_at"

    @waits_for_locks
    async def open_requests(self, platform: str) -> list[RequestRecord]:
        """Requests of ``platform`` that are not final yet, oldest first."""
        marks = ",".join("?" * len(OPEN_STATES))
        sql = (
            f"SELECT {self._REQUEST_COLUMNS} FROM requests "
            f"WHERE platform = ? AND state IN ({marks}) ORDER BY id"
        )
        async with self._db.execute(sql, (platform, *OPEN_STATES)) as cur:
            return [_request_record(r) for r in await cur.fetchall()]

    @waits_for_locks
    async def request(self, request_id: int) -> RequestRecord | None:
        sql = f"SELECT {self._REQUEST_COLUMNS} FROM requests WHERE id = ?"
        async with self._db.execute(sql, (request_id,)) as cur:
            row = await cur.fetchone()
        return _request_record(row) if row is not None else None

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

    _GROUPS = {"provider": "provider", "user": "user_id", "channel": "channel", "model": "model"}

    @waits_for_locks
    async def usage_of(self, by: str, key: str, since: float) -> tuple[int, float]:
        """(tokens in + out, cost) of one user or channel since a time."""
        column = self._GROUPS[by]
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
        column = self._GROUPS[by]
        where, args = ["at >= ?"], [since]
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


def _request_record(r: Sequence[Any]) -> RequestRecord:
    return RequestRecord(
        id=int(r[0]),
        platform=r[1],
        conversation=r[2],
        origin=json.loads(r[3] or "{}"),
        place=json.loads(r[4] or "{}"),
        messages=json.loads(r[5] or "[]"),
        shown=r[6],
        part=int(r[7]),
        state=r[8],
        owner=r[9],
        created_at=float(r[10]),
    )
