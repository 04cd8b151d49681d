"""The PostgreSQL backend of the store: one database shared by any number of processes.

Opened from ``BOT_DATABASE=postgresql://user:password@host:port/db`` through an
asyncpg pool of ``BOT_DATABASE_POOL`` connections: each operation borrows one,
so operations run side by side; nothing of ours serialises them.  The database
keeps the promises: a claim is a unique insert (``ON CONFLICT DO NOTHING``), and
``accept`` claims its keys and records the request in one transaction, so of two
replicas accepting the same event exactly one wins.  Migrations run under a
transaction-scoped advisory lock, so processes starting together migrate once;
``schema_migrations`` records the same version numbers as SQLite's ``user_version``.

Errors name the database through ``db_url.redact``: the password never shows.
Not reaching the server is ``StoreUnavailable``; a rejected login or a missing
database is ``ConfigError``.  ``BOT_DATABASE_WAIT`` bounds the wait for a
connection (retrying while the server cannot be reached) and for one statement.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from .conversation import Turn
from .db_url import redact, scrub
from .errors import ConfigError, StoreUnavailable
from .store import (
    DEFAULT_POOL,
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

log = logging.getLogger(__name__)

DEFAULT_WAIT = 60.0  # seconds for a connection or one statement (BOT_DATABASE_WAIT)
CONNECT_TIMEOUT = 10.0  # seconds for one connection attempt
PING_TIMEOUT = 3.0  # seconds /healthz and doctor give the round trip
CLOSE_TIMEOUT = 10.0  # seconds close() waits for busy connections
FIRST_PAUSE, LONGEST_PAUSE = 0.05, 1.0  # backoff between two attempts to connect, seconds
MIGRATION_LOCK = 0x6C6C616D6172656C  # pg_advisory_xact_lock key while migrating ("llamarel")

#: The server is not there, went away, or cannot take us now: worth another try later.
UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)
#: The server answered but refuses this configuration: a wrong login, no such database, a bad URL.
REFUSED: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    asyncpg.exceptions.InvalidCatalogNameError,
    asyncpg.exceptions.ClientConfigurationError,
    ValueError,  # a URL asyncpg cannot parse
)

def _reason(exc: BaseException, url: str) -> str:
    """One line saying what went wrong, the password scrubbed out."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return scrub(text, url)


def unreachable(url: str, exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"BOT_DATABASE: cannot reach {redact(url)}: {_reason(exc, url)}")


def refused(url: str, exc: BaseException) -> ConfigError:
    return ConfigError(f"BOT_DATABASE: {redact(url)}: {_reason(exc, url)}")


class PostgresStore:
    """The PostgreSQL implementation.  Open with ``await PostgresStore.open(url)``."""

    shared = True  # any number of replicas

    def __init__(self, pool: asyncpg.Pool, url: str, wait: float) -> None:
        self._pool = pool
        self._url = url
        self._wait = wait
        self.name = redact(url)

    @classmethod
    async def open(cls, url: str, *, pool_size: int = DEFAULT_POOL, wait: float | None = None) -> PostgresStore:
        """Connect a pool of ``pool_size`` connections and migrate; errors name the redacted URL."""
        wait = DEFAULT_WAIT if wait is None else wait
        pool = await connect_pool(url, pool_size, wait)
        store = cls(pool, url, wait)
        try:
            await store._migrate()
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        """Close the pool; connections still busy after ``CLOSE_TIMEOUT`` seconds are cut."""
        try:
            await asyncio.wait_for(self._pool.close(), CLOSE_TIMEOUT)
        except TimeoutError:
            self._pool.terminate()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """One pooled connection.  Losing it during the operation is ``StoreUnavailable`` naming
        the redacted URL (a statement that may have run is never sent again)."""
        con = await self._acquire()
        try:
            yield con
        except UNREACHABLE as exc:
            raise unreachable(self._url, exc) from None
        finally:
            await self._pool.release(con)

    async def _acquire(self) -> asyncpg.Connection:
        """A connection, retried with backoff while the server cannot be reached (a restart, a
        failover) for at most ``BOT_DATABASE_WAIT`` seconds in all; then ``StoreUnavailable``."""
        deadline = time.monotonic() + self._wait
        pause = FIRST_PAUSE
        while True:
            try:
                return await self._pool.acquire(timeout=max(deadline - time.monotonic(), 0.001))
            except UNREACHABLE as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise unreachable(self._url, exc) from None
                if pause == FIRST_PAUSE:
                    log.warning("store: cannot reach %s; retrying for up to %g s (BOT_DATABASE_WAIT)", self.name, left)
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, LONGEST_PAUSE)

    async def ping(self, timeout: float = PING_TIMEOUT) -> bool:
        """A real round trip (``SELECT 1``) within ``timeout`` seconds; False when the server does not answer."""
        try:
            async with asyncio.timeout(timeout):
                async with self._pool.acquire() as con:
                    return await con.fetchval("SELECT 1") == 1
        except (*UNREACHABLE, *REFUSED, asyncpg.PostgresError):  # a rotated password, too: not a 500
            return False

    async def schema_version(self) -> int:
        async with self.connection() as con:
            return await _version(con)

    async def _migrate(self) -> None:
        async with self.connection() as con, con.transaction():
            # Every process that starts takes this lock first: one migrates, the others
            # then find the schema current.  It is released with the transaction.
            await con.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await con.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
            )
            version = await _version(con)
            if version > len(MIGRATIONS):
                raise ConfigError(
                    f"BOT_DATABASE: {self.name} has schema version {version}, newer than this "
                    f"llama-relay knows ({len(MIGRATIONS)}): upgrade llama-relay"
                )
            for number in range(version + 1, len(MIGRATIONS) + 1):
                await con.execute(migration(number, "postgres"))
                await con.execute(
                    "INSERT INTO schema_migrations(version, applied_at) VALUES ($1, $2)", number, time.time()
                )

    # -- exactly once --------------------------------------------------------------

    async def claim_event(self, event_id: str, platform: str) -> bool:
        """True the first time an event id is seen, False for every redelivery."""
        async with self.connection() as con:
            status = await con.execute(
                "INSERT INTO events(event_id, platform, received_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                event_id, platform, time.time(),
            )
        return _count(status) == 1

    async def accept(
        self, keys: Sequence[str], platform: str, conversation: str, origin: dict[str, Any], owner: str
    ) -> int | None:
        """Claim every dedupe key and record the request, in one transaction.

        None when any key was claimed before (a redelivery, another replica, or the same
        message arriving as two events): nothing is written then.  Keys are inserted in
        sorted order, so two accepts sharing keys wait for each other instead of deadlocking.
        """
        now = time.time()
        async with self.connection() as con:
            transaction = con.transaction()
            await transaction.start()
            try:
                status = await con.execute(
                    "INSERT INTO events(event_id, platform, received_at) "
                    "SELECT key, $2, $3 FROM unnest($1::text[]) AS key ON CONFLICT DO NOTHING",
                    sorted(keys), platform, now,
                )
                if _count(status) != len(keys):
                    await transaction.rollback()
                    return None
                request_id = await con.fetchval(
                    "INSERT INTO requests(platform, conversation, origin, state, owner, created_at, updated_at) "
                    "VALUES ($1, $2, $3, 'accepted', $4, $5, $5) RETURNING id",
                    platform, conversation, json.dumps(origin), owner, now,
                )
            except BaseException:
                if not con.is_closed():
                    await transaction.rollback()
                raise
            await transaction.commit()
        return int(request_id)

    async def update_request(self, request_id: int, **fields: object) -> None:
        values = check_request_fields(fields)
        assigns = ", ".join(f"{name} = ${n}" for n, name in enumerate(fields, start=1))
        at = len(values) + 1
        async with self.connection() as con:
            await con.execute(
                f"UPDATE requests SET {assigns}, updated_at = ${at} WHERE id = ${at + 1}", *values, time.time(), request_id
            )

    async def open_requests(self, platform: str) -> list[RequestRecord]:
        """Requests of ``platform`` that are not final yet, oldest first."""
        sql = f"SELECT {REQUEST_COLUMNS} FROM requests WHERE platform = $1 AND state = ANY($2::text[]) ORDER BY id"
        async with self.connection() as con:
            rows = await con.fetch(sql, platform, list(OPEN_STATES))
        return [request_record(r) for r in rows]

    async def heartbeat(self, owner: str) -> None:
        now = time.time()
        async with self.connection() as con:
            await con.execute(
                "INSERT INTO replicas(owner, started_at, heartbeat_at) VALUES ($1, $2, $2) "
                "ON CONFLICT (owner) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at",
                owner, now,
            )

    async def take_orphans(self, platform: str, owner: str, alive_since: float) -> list[RequestRecord]:
        """Make ``owner`` the owner of every open request of ``platform`` whose owner has not
        heartbeat since ``alive_since``; those requests, oldest first.

        The rows are locked ``FOR UPDATE SKIP LOCKED``: two replicas taking over at once
        split the orphans, and no request is taken (so settled) twice.
        """
        # The owner each orphan had when it was picked is checked again when it is moved (a
        # compare-and-swap): a taker whose pick raced another's finds the row moved, not free.
        sql = (
            "WITH picked AS (SELECT r.id, r.owner FROM requests r WHERE r.platform = $3 "
            "AND r.state = ANY($4::text[]) AND r.owner <> $1 AND NOT EXISTS (SELECT 1 FROM replicas p "
            "WHERE p.owner = r.owner AND p.heartbeat_at >= $5) ORDER BY r.id FOR UPDATE OF r SKIP LOCKED) "
            "UPDATE requests SET owner = $1, updated_at = $2 FROM picked "
            "WHERE requests.id = picked.id AND requests.owner = picked.owner "
            f"AND requests.state = ANY($4::text[]) RETURNING {_qualified(REQUEST_COLUMNS)}"
        )
        async with self.connection() as con:
            rows = await con.fetch(sql, owner, time.time(), platform, list(OPEN_STATES), alive_since)
        return sorted((request_record(r) for r in rows), key=lambda r: r.id)

    async def earlier_open(self, platform: str, conversation: str, request_id: int) -> bool:
        sql = (
            "SELECT EXISTS (SELECT 1 FROM requests WHERE platform = $1 AND conversation = $2 "
            "AND id < $3 AND state = ANY($4::text[]) AND updated_at >= $5)"
        )
        fresh = time.time() - ORDER_STALE
        async with self.connection() as con:
            return bool(await con.fetchval(sql, platform, conversation, request_id, list(OPEN_STATES), fresh))

    async def request(self, request_id: int) -> RequestRecord | None:
        async with self.connection() as con:
            row = await con.fetchrow(f"SELECT {REQUEST_COLUMNS} FROM requests WHERE id = $1", request_id)
        return request_record(row) if row is not None else None

    # -- conversations -----------------------------------------------------------------

    async def load_turns(self, key: str) -> list[Turn]:
        sql = (
            "SELECT role, text, author, message_id, turns.id FROM turns JOIN conversations c "
            "ON c.id = turns.conversation_id WHERE c.key = $1 ORDER BY turns.id"
        )
        async with self.connection() as con:
            rows = await con.fetch(sql, key)
        # Turns typed in the terminal have no platform id: their row id keys the count cache.
        return [Turn(role=r[0], text=r[1], author=r[2], message_id=r[3] or f"{key}#{r[4]}") for r in rows]

    async def add_turns(self, key: str, turns: Sequence[Turn]) -> None:
        """Append turns in one transaction: either all are stored or none."""
        now = time.time()
        async with self.connection() as con, con.transaction():
            cid = await con.fetchval(
                "INSERT INTO conversations(key, created_at) VALUES ($1, $2) "
                "ON CONFLICT (key) DO UPDATE SET key = EXCLUDED.key RETURNING id",
                key, now,
            )
            await con.executemany(
                "INSERT INTO turns(conversation_id, role, text, author, message_id, created_at) "
                "VALUES ($1, $2, $3, $4, $5, $6)",
                [(cid, t.role, t.text, t.author, t.message_id, now) for t in turns],
            )

    async def reset_conversation(self, key: str) -> None:
        async with self.connection() as con, con.transaction():
            await con.execute("DELETE FROM conversations WHERE key = $1", key)
            await con.execute("DELETE FROM summaries WHERE conversation = $1", key)

    # -- token counts --------------------------------------------------------------------

    async def cached_counts(self, message_ids: Sequence[str]) -> dict[str, tuple[str, int]]:
        sql = "SELECT message_id, digest, tokens FROM token_counts WHERE message_id = ANY($1::text[])"
        async with self.connection() as con:
            rows = await con.fetch(sql, list(message_ids))
        return {mid: (digest, int(tokens)) for mid, digest, tokens in rows}

    async def save_counts(self, rows: Sequence[tuple[str, str, int]]) -> None:
        if not rows:
            return
        async with self.connection() as con:
            await con.executemany(
                "INSERT INTO token_counts(message_id, digest, tokens) VALUES ($1, $2, $3) "
                "ON CONFLICT (message_id) DO UPDATE SET digest = EXCLUDED.digest, tokens = EXCLUDED.tokens",
                sorted(rows),  # one order for every writer: two saves of the same ids never deadlock
            )

    # -- summarised history (``bot.summary``) ----------------------------------------------

    async def summary(self, conversation: str) -> Summary | None:
        sql = "SELECT covers, text, provider FROM summaries WHERE conversation = $1"
        async with self.connection() as con:
            row = await con.fetchrow(sql, conversation)
        return Summary(tuple(row[0].split()), row[1], row[2]) if row is not None else None

    async def save_summary(self, conversation: str, summary: Summary) -> None:
        async with self.connection() as con:
            await con.execute(
                "INSERT INTO summaries(conversation, covers, text, provider, updated_at) VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (conversation) DO UPDATE SET covers = EXCLUDED.covers, text = EXCLUDED.text, "
                "provider = EXCLUDED.provider, updated_at = EXCLUDED.updated_at",
                conversation, " ".join(summary.covers), summary.text, summary.provider, time.time(),
            )

    # -- per-channel settings -------------------------------------------------------------

    async def channel_settings(self, platform: str, channel: str) -> dict[str, str]:
        sql = "SELECT name, value FROM channel_settings WHERE platform = $1 AND channel = $2"
        async with self.connection() as con:
            return {name: value for name, value in await con.fetch(sql, platform, channel)}

    async def set_channel_setting(self, platform: str, channel: str, name: str, value: str | None) -> None:
        async with self.connection() as con:
            if value is None:
                await con.execute(
                    "DELETE FROM channel_settings WHERE platform = $1 AND channel = $2 AND name = $3",
                    platform, channel, name,
                )
            else:
                await con.execute(
                    "INSERT INTO channel_settings(platform, channel, name, value) VALUES ($1, $2, $3, $4) "
                    "ON CONFLICT (platform, channel, name) DO UPDATE SET value = EXCLUDED.value",
                    platform, channel, name, value,
                )

    # -- usage ------------------------------------------------------------------------------

    async def record_usage(self, record: UsageRecord) -> None:
        async with self.connection() as con:
            await con.execute(
                "INSERT INTO usage(at, reply_id, platform, provider, model, user_id, channel, "
                "prompt_tokens, completion_tokens, cost_usd) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                time.time(), record.reply_id, record.platform, record.provider, record.model,
                record.user_id, record.channel, record.prompt_tokens, record.completion_tokens, record.cost_usd,
            )

    async def usage_of(self, by: str, key: str, since: float) -> tuple[int, float]:
        """(tokens in + out, cost) of one user or channel since a time."""
        column = USAGE_GROUPS[by]
        sql = (
            "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0), COALESCE(SUM(cost_usd), 0) "
            f"FROM usage WHERE {column} = $1 AND at >= $2"
        )
        async with self.connection() as con:
            row = await con.fetchrow(sql, key, since)
        return (int(row[0]), float(row[1])) if row else (0, 0.0)

    async def usage_totals(
        self, by: str, since: float = 0.0, *, user: str | None = None, channel: str | None = None
    ) -> list[UsageTotal]:
        """Totals grouped ``by`` provider/user/channel/model, optionally for one user or channel."""
        column = USAGE_GROUPS[by]
        where = ["at >= $1"]
        args: list[object] = [since]
        for name, value in (("user_id", user), ("channel", channel)):
            if value is not None:
                args.append(value)
                where.append(f"{name} = ${len(args)}")
        sql = (
            f"SELECT COALESCE({column}, '-'), COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), "
            f"SUM(cost_usd) FROM usage WHERE {' AND '.join(where)} GROUP BY {column} "
            "ORDER BY SUM(cost_usd) DESC"
        )
        async with self.connection() as con:
            rows = await con.fetch(sql, *args)
        return [UsageTotal(str(r[0]), int(r[1]), int(r[2]), int(r[3]), float(r[4])) for r in rows]


    # -- controls on an answer (``bot.controls``) ----------------------------------------------

    async def request_stop(self, request_id: int, by: str) -> bool:
        async with self.connection() as con:
            status = await con.execute(
                "UPDATE requests SET stop_by = $1, updated_at = $2 WHERE id = $3 AND stop_by IS NULL "
                "AND state IN ('accepted', 'answering')",
                by, time.time(), request_id,
            )
        return _count(status) == 1

    async def stops(self, request_ids: Sequence[int]) -> dict[int, str]:
        if not request_ids:
            return {}
        sql = "SELECT id, stop_by FROM requests WHERE id = ANY($1::bigint[]) AND stop_by IS NOT NULL"
        async with self.connection() as con:
            rows = await con.fetch(sql, list(request_ids))
        return {int(r[0]): str(r[1]) for r in rows}

    async def vote(self, request_id: int, platform: str, user: str, vote: int) -> str | None:
        sql = (
            "INSERT INTO votes(request_id, platform, user_id, vote, provider, model, at) "
            "SELECT id, platform, $2, $3, provider, COALESCE(model, ''), $4 FROM requests "
            "WHERE id = $5 AND platform = $1 AND provider IS NOT NULL "
            "ON CONFLICT (request_id, user_id) DO UPDATE SET vote = EXCLUDED.vote, at = EXCLUDED.at "
            "RETURNING provider"
        )
        async with self.connection() as con:
            provider = await con.fetchval(sql, platform, user, vote, time.time(), request_id)
        return str(provider) if provider is not None else None

    async def vote_totals(self, by: str, since: float = 0.0) -> dict[str, tuple[int, int]]:
        column = {"provider": "provider", "model": "model"}.get(by)
        if column is None:
            return {}
        sql = (
            f"SELECT {column}, COUNT(*) FILTER (WHERE vote > 0), COUNT(*) FILTER (WHERE vote < 0) "
            f"FROM votes WHERE at >= $1 GROUP BY {column}"
        )
        async with self.connection() as con:
            rows = await con.fetch(sql, since)
        return {str(r[0]): (int(r[1]), int(r[2])) for r in rows}

async def connect_pool(url: str, size: int, wait: float) -> asyncpg.Pool:
    """A pool of at most ``size`` connections (one opened now, to fail early); errors redacted."""
    try:
        return await asyncpg.create_pool(
            url,
            min_size=1,
            max_size=size,
            timeout=min(CONNECT_TIMEOUT, wait),
            command_timeout=wait,
        )
    except REFUSED as exc:
        raise refused(url, exc) from None
    except UNREACHABLE as exc:
        raise unreachable(url, exc) from None


def _qualified(columns: str) -> str:
    """``REQUEST_COLUMNS`` as ``requests.<column>`` (an ``UPDATE … FROM`` names two tables)."""
    return ", ".join(f"requests.{name.strip()}" for name in columns.split(","))


async def _version(con: asyncpg.Connection) -> int:
    exists = await con.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return 0
    return int(await con.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"))


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])  # rows an INSERT touched, from its status tag: INSERT 0 3


async def probe(url: str, timeout: float = PING_TIMEOUT) -> str:
    """For ``doctor``, changing nothing: ``PostgreSQL 15.4, schema version 2 of 2``, or
    ``StoreUnavailable``/``ConfigError`` naming the redacted URL."""
    try:
        con = await asyncpg.connect(url, timeout=timeout)
    except REFUSED as exc:
        raise refused(url, exc) from None
    except UNREACHABLE as exc:
        raise unreachable(url, exc) from None
    try:
        async with asyncio.timeout(timeout):
            server = await con.fetchval("SHOW server_version")
            version = await _version(con)
    except UNREACHABLE as exc:
        raise unreachable(url, exc) from None
    finally:
        await con.close(timeout=timeout)
    return f"PostgreSQL {server.split()[0]}, schema version {version} of {len(MIGRATIONS)}"
