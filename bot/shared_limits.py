"""The PostgreSQL side of the limits replicas share: edit windows, request rates, reservations.

With several replicas on one PostgreSQL database (``store.shared``), what one
process kept in memory lives in the tables of migration 3:

* ``edit_grants(key, at)``: every edit granted from a shared edit budget, per
  key (``slack:T1:chat.update``), for as long as it is in the sliding window;
* ``edit_streams(key, owner, active, at)``: each replica's count of replies
  still streaming into a budget (room is kept for their final edits); a row
  older than ``LEASE`` is a replica gone and counts for nothing;
* ``edit_pauses(key, until)``: a 429 pauses a budget for every replica;
* ``rate_hits(key, at)``: the requests of the last minute per rate key;
* ``reservations(id, key, owner, tokens, cost, at)``: the worst case of each
  answer in flight against its daily budgets (``bot.access``).

Every decision is one short transaction serialised per key by a
transaction-scoped advisory lock (``pg_advisory_xact_lock(LOCKS, hashtext(key))``),
taken before anything is read, so each decision sees every earlier one.  Several
keys are locked in the order of their hashes: two transactions never wait for
each other in a circle.  Edit windows run on the database's clock
(``clock_timestamp()`` read under the lock): grants of every replica are on one
clock and waits come back as durations.  Rates and reservations use the
caller's ``now`` for the quota calendar (as the in-process policy does) and
``time.time()`` for whether an owner is alive, as ``replicas`` heartbeats do.

A reservation counts while it is younger than ``LEASE`` or its owner has
heartbeat within ``LEASE``, and never past ``HOLD_LIMIT`` (a release lost while
the database was away).  Rows that stopped counting are deleted by the next
admission or grant of their key, and those of keys nobody uses any more by
``sweep``, which each replica runs about once a minute (``bot.leases``).  Nothing here imports asyncpg at run time: the
SQLite-only process does not pay for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .errors import StoreUnavailable
from .store import LEASE, USAGE_GROUPS

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger(__name__)

#: The first key of every advisory lock taken here ("lr"), the second being ``hashtext(key)``;
#: apart from the migration lock and from other applications' locks.
LOCKS = 0x6C72
#: Seconds a reservation counts at most (its release was lost, its owner is still alive).
HOLD_LIMIT = 3600.0
#: The window of a request rate, in seconds.
RATE_WINDOW = 60.0


@runtime_checkable
class Pooled(Protocol):
    """A store with pooled PostgreSQL connections (``PostgresStore``)."""

    def connection(self) -> AbstractAsyncContextManager[asyncpg.Connection]: ...


def pooled(store: object) -> Pooled:
    """``store`` as a ``Pooled`` one; ``TypeError`` for a store that shares nothing (SQLite)."""
    if not isinstance(store, Pooled):
        raise TypeError(f"{type(store).__name__} is not a shared (PostgreSQL) store")
    return store


async def _lock(con: asyncpg.Connection, keys: Sequence[str]) -> None:
    """Take the advisory locks of ``keys`` for this transaction, in the order of their hashes.

    PostgreSQL evaluates a volatile function in the select list after ORDER BY (since 9.6),
    so the locks are taken in that order.
    """
    if len(keys) == 1:
        await con.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", LOCKS, keys[0])
        return
    await con.execute(
        "SELECT pg_advisory_xact_lock($1, h) FROM "
        "(SELECT DISTINCT hashtext(k) AS h FROM unnest($2::text[]) AS k) AS locks ORDER BY h",
        LOCKS, list(keys),
    )


# -- edit budgets ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EditWindow:
    """One budget's state as a grant transaction reads it (database clock, seconds)."""

    now: float
    paused_until: float
    others_active: int  # replies streaming on other replicas (rows fresher than LEASE)
    grants: list[float]  # grant times still in the window, oldest first


_EDIT_STATE = """
SELECT t.now,
       COALESCE((SELECT until FROM edit_pauses WHERE key = $1), 0) AS paused_until,
       COALESCE((SELECT SUM(active) FROM edit_streams
                 WHERE key = $1 AND owner <> $2 AND at > t.now - $4), 0) AS others_active,
       COALESCE(ARRAY(SELECT at FROM edit_grants WHERE key = $1 AND at > t.now - $3 ORDER BY at),
                '{}') AS grants
FROM (SELECT extract(epoch FROM clock_timestamp())::float8 AS now) AS t
"""

_EDIT_GRANT = """
WITH gone AS (DELETE FROM edit_grants WHERE key = $1 AND at <= $2::float8 - $3::float8)
INSERT INTO edit_grants(key, at) VALUES ($1, $2::float8)
"""


async def grant_edit(
    store: Pooled, key: str, owner: str, window: float, decide: Callable[[EditWindow], float]
) -> float:
    """One grant transaction for budget ``key``: 0.0 when an edit was granted (and recorded),
    else the seconds ``decide`` says to wait before asking again.

    ``decide`` gets the budget's state read under the key's lock and returns 0.0 to grant.
    """
    async with store.connection() as con, con.transaction():
        await _lock(con, [key])
        row = await con.fetchrow(_EDIT_STATE, key, owner, window, LEASE)
        assert row is not None  # one row, always
        state = EditWindow(float(row[0]), float(row[1]), int(row[2]), [float(g) for g in row[3]])
        wait = decide(state)
        if wait <= 0:
            await con.execute(_EDIT_GRANT, key, state.now, window)
        return wait


async def publish_streams(store: Pooled, key: str, owner: str, active: int) -> None:
    """Say how many replies this replica is streaming into ``key`` (the row's ``at`` keeps it
    fresh), and clear rows replicas that stopped left behind."""
    async with store.connection() as con:
        await con.execute(
            "WITH gone AS (DELETE FROM edit_streams WHERE key = $1 AND owner <> $2 "
            "AND at < extract(epoch FROM clock_timestamp())::float8 - $4::float8) "
            "INSERT INTO edit_streams(key, owner, active, at) "
            "VALUES ($1, $2, $3, extract(epoch FROM clock_timestamp())::float8) "
            "ON CONFLICT (key, owner) DO UPDATE SET active = EXCLUDED.active, at = EXCLUDED.at",
            key, owner, active, 2 * LEASE,
        )


async def pause_edits(store: Pooled, key: str, seconds: float) -> None:
    """Nobody edits through ``key`` for ``seconds`` (a later pause never shortens an earlier one)."""
    async with store.connection() as con:
        await con.execute(
            "INSERT INTO edit_pauses(key, until) VALUES ($1, extract(epoch FROM clock_timestamp())::float8 + $2::float8) "
            "ON CONFLICT (key) DO UPDATE SET until = GREATEST(edit_pauses.until, EXCLUDED.until)",
            key, seconds,
        )


# -- request rates and daily budgets -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ledger:
    """One daily key as an admission reads it: the ledger's usage today and what answers in flight hold."""

    used_tokens: int
    used_cost: float
    held_tokens: int
    held_cost: float


@dataclass(frozen=True, slots=True)
class QuotaReading:
    #: rate key -> (requests in the last minute, the oldest of them)
    hits: dict[str, tuple[int, float]]
    #: daily key -> its ledger and reservations
    budgets: dict[str, Ledger]


@dataclass(frozen=True, slots=True)
class Ask:
    """What one admission counts and reserves."""

    rates: Sequence[str]  # rate keys this request counts against
    budgets: Sequence[tuple[str, str, str]]  # (daily key, ledger group, id): ("user:U1", "user", "U1")
    reservation: str  # the reservation's id
    tokens: int
    cost: float


def _alive(alive_since: int, oldest: int) -> str:
    """SQL: reservation ``r`` still counts (the parameters' numbers: the time since which an owner
    or a reservation is alive, and the oldest time a reservation counts from)."""
    return (
        f"(r.at >= ${alive_since} OR EXISTS (SELECT 1 FROM replicas p "
        f"WHERE p.owner = r.owner AND p.heartbeat_at >= ${alive_since})) AND r.at >= ${oldest}"
    )


def _budget_sql(group: str, first: int) -> str:
    """The ledger and the live reservations of one daily key (parameters: $1 since, $2 alive
    since, $3 oldest counted, then the key at ``first`` and the user or channel id after it)."""
    column = USAGE_GROUPS[group]
    return (
        f"SELECT ${first}::text, u.tokens, u.cost, h.tokens, h.cost FROM "
        "(SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0)::bigint AS tokens, "
        f"COALESCE(SUM(cost_usd), 0)::float8 AS cost FROM usage WHERE {column} = ${first + 1} AND at >= $1) AS u, "
        "(SELECT COALESCE(SUM(r.tokens), 0)::bigint AS tokens, COALESCE(SUM(r.cost), 0)::float8 AS cost "
        f"FROM reservations r WHERE r.key = ${first}::text AND {_alive(2, 3)}) AS h"
    )


async def _read(con: asyncpg.Connection, ask: Ask, since: float, now: float) -> QuotaReading:
    hits: dict[str, tuple[int, float]] = {}
    if ask.rates:
        rows = await con.fetch(
            "SELECT key, COUNT(*), MIN(at) FROM rate_hits WHERE key = ANY($1::text[]) AND at > $2::float8 GROUP BY key",
            list(ask.rates), now - RATE_WINDOW,
        )
        hits = {r[0]: (int(r[1]), float(r[2])) for r in rows}
    budgets: dict[str, Ledger] = {}
    if ask.budgets:
        # One statement, one snapshot: an answer records its usage before it drops its
        # reservation, so a snapshot that misses the one sees the other.
        parts = [_budget_sql(group, 4 + 2 * n) for n, (_, group, _) in enumerate(ask.budgets)]
        real = time.time()
        args: list[object] = [since, real - LEASE, real - HOLD_LIMIT]
        for key, _, ident in ask.budgets:
            args += [key, ident]
        rows = await con.fetch(" UNION ALL ".join(parts), *args)
        budgets = {r[0]: Ledger(int(r[1]), float(r[2]), int(r[3]), float(r[4])) for r in rows}
    return QuotaReading(hits, budgets)


_RECORD = f"""
WITH old_hits AS (DELETE FROM rate_hits WHERE key = ANY($1::text[]) AND at <= $2::float8 - {RATE_WINDOW}),
     dead AS (DELETE FROM reservations r WHERE r.key = ANY($3::text[]) AND NOT ({_alive(8, 9)})),
     hits AS (INSERT INTO rate_hits(key, at) SELECT k, $2::float8 FROM unnest($1::text[]) AS k)
INSERT INTO reservations(id, key, owner, tokens, cost, at)
SELECT $4::text, k, $5::text, $6::bigint, $7::float8, $10::float8 FROM unnest($3::text[]) AS k
"""


async def admit(
    store: Pooled, owner: str, ask: Ask, *, since: float, now: float, judge: Callable[[QuotaReading], None]
) -> None:
    """Count a request and reserve its worst case, if ``judge`` lets it in: one transaction.

    ``judge`` sees the rates and budgets read under the keys' locks and raises (``QuotaReached``)
    to refuse: then nothing is written.  ``now`` is the quota clock (rate windows, the day).
    """
    keys = sorted({*ask.rates, *(key for key, _, _ in ask.budgets)})
    budget_keys = [key for key, _, _ in ask.budgets]
    async with store.connection() as con, con.transaction():
        if keys:
            await _lock(con, keys)
        judge(await _read(con, ask, since, now))
        real = time.time()
        await con.execute(
            _RECORD,
            list(ask.rates), now, budget_keys, ask.reservation, owner, ask.tokens, ask.cost,
            real - LEASE, real - HOLD_LIMIT, real,
        )


_SWEEP = f"""
WITH hits AS (DELETE FROM rate_hits WHERE at <= $1::float8 - {RATE_WINDOW}),
     gone AS (DELETE FROM replicas WHERE heartbeat_at < $3::float8),
     streams AS (DELETE FROM edit_streams WHERE at < extract(epoch FROM clock_timestamp())::float8 - $4::float8)
DELETE FROM reservations r WHERE NOT ({_alive(2, 3)})
"""


async def sweep(store: Pooled) -> None:
    """Delete what no longer counts for any key: rate hits older than a minute, reservations
    that stopped counting, streaming counts of replicas silent for twice ``LEASE``, and the
    heartbeat rows of replicas gone for longer than a reservation may live."""
    real = time.time()
    async with store.connection() as con:
        await con.execute(_SWEEP, real, real - LEASE, real - HOLD_LIMIT, 2 * LEASE)


async def grow_reservation(store: Pooled, reservation: str, tokens: int, cost: float) -> None:
    """Raise a reservation to at least ``tokens`` and ``cost`` (never lower it)."""
    async with store.connection() as con:
        await con.execute(
            "UPDATE reservations SET tokens = GREATEST(tokens, $2), cost = GREATEST(cost, $3), at = $4 WHERE id = $1",
            reservation, tokens, cost, time.time(),
        )


async def drop_reservation(store: Pooled, reservation: str) -> None:
    async with store.connection() as con:
        await con.execute("DELETE FROM reservations WHERE id = $1", reservation)


async def held(store: Pooled, key: str) -> tuple[int, float]:
    """(tokens, cost) the live reservations of every replica hold against daily ``key``."""
    real = time.time()
    async with store.connection() as con:
        row = await con.fetchrow(
            "SELECT COALESCE(SUM(r.tokens), 0)::bigint, COALESCE(SUM(r.cost), 0)::float8 FROM reservations r "
            f"WHERE r.key = $1 AND {_alive(2, 3)}",
            key, real - LEASE, real - HOLD_LIMIT,
        )
    assert row is not None
    return int(row[0]), float(row[1])


class SharedAdmission:
    """A request let in on a shared database: its worst case is a ``reservations`` row per daily
    key until ``settle`` or ``release`` (both idempotent) drops them."""

    def __init__(self, store: Pooled, reservation: str, keys: tuple[str, ...], tokens: int, cost: float) -> None:
        self._store = store
        self.reservation = reservation
        self.keys = keys
        self.tokens = max(0, tokens)
        self.cost = max(0.0, cost)
        self.done = False

    async def grow(self, tokens: int, cost: float = 0.0) -> None:
        """Raise the reservation to at least ``tokens`` and ``cost``; never lowers it, never refuses."""
        if self.done or not self.keys or (tokens <= self.tokens and cost <= self.cost):
            return
        self.tokens, self.cost = max(self.tokens, tokens), max(self.cost, cost)
        await grow_reservation(self._store, self.reservation, self.tokens, self.cost)

    async def settle(self) -> None:
        """The answer ended and its usage is in the ledger: the reservation is not needed any more."""
        await self.release()

    async def release(self) -> None:
        """Drop the reservation.  With the database away it is left to expire (``HOLD_LIMIT``, or
        ``LEASE`` after this replica stops): a release must not fail the answer it ends."""
        if self.done:
            return
        self.done = True
        if not self.keys:
            return
        try:
            await drop_reservation(self._store, self.reservation)
        except StoreUnavailable as exc:
            log.warning("could not drop reservation %s; it expires on its own: %s", self.reservation, exc)
