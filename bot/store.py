"""Persistent state behind one small interface, with two backends.

What lives there: claimed dedupe keys (exactly-once), request records (every
accepted question from its claim to its final state, with where its messages
are and the text they show, so a restart can settle it), conversations and
their turns (the terminal's history), the token-count cache, the usage and
cost ledger, and per-channel settings.  (The ``replies`` table of schema 1 is
no longer written; request records replaced it.)

This module holds what both backends share: the ``Store`` interface, its
records, the versioned migrations and ``open_store``, which picks the backend
from ``BOT_DATABASE``: a file path opens ``SqliteStore`` (``store_sqlite``:
embedded, one ``serve`` per file), a ``postgresql://`` URL opens
``PostgresStore`` (``store_postgres``: any number of processes).

Migrations are written once, in SQLite's words; ``postgres_sql`` translates
the three things that differ (``AUTOINCREMENT`` ids, ``REAL``, ``INTEGER``
width).  An entry that needs more than that is a ``Dialects`` pair.  Both
backends record the same version numbers.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .conversation import Turn
from .db_url import is_postgres
from .errors import ConfigError


@dataclass(frozen=True, slots=True)
class Dialects:
    """A migration whose SQLite and PostgreSQL texts differ by more than ``postgres_sql`` translates."""

    sqlite: str
    postgres: str


# Each entry moves the schema one version up; applied in order, once, in a transaction.
# Written in SQLite's words (see ``postgres_sql``); a ``Dialects`` entry when that is not enough.
MIGRATIONS: list[str | Dialects] = [
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
    # 3: replicas.  Each process heartbeats; the requests of one that stopped are taken over
    # (``take_orphans``).  The edit windows, request rates and budget reservations that
    # replicas on PostgreSQL share live here too (one SQLite process keeps them in memory).
    """
    CREATE TABLE replicas (
        owner TEXT PRIMARY KEY,
        started_at REAL NOT NULL,
        heartbeat_at REAL NOT NULL
    );
    CREATE INDEX requests_by_conversation ON requests(platform, conversation, id);
    CREATE TABLE edit_grants (
        key TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX edit_grants_by_key ON edit_grants(key, at);
    CREATE TABLE edit_streams (
        key TEXT NOT NULL,
        owner TEXT NOT NULL,
        active INTEGER NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (key, owner)
    );
    CREATE TABLE edit_pauses (
        key TEXT PRIMARY KEY,
        until REAL NOT NULL
    );
    CREATE TABLE rate_hits (
        key TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX rate_hits_by_key ON rate_hits(key, at);
    CREATE TABLE reservations (
        id TEXT NOT NULL,
        key TEXT NOT NULL,
        owner TEXT NOT NULL,
        tokens INTEGER NOT NULL,
        cost REAL NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (id, key)
    );
    CREATE INDEX reservations_by_key ON reservations(key);
    """,
    # 4: controls on an answer (``bot.controls``): a Stop press another replica took, the answer a
    # regenerated one replaces, and feedback votes (one per person per answer) with the answer's
    # provider and model.
    """
    ALTER TABLE requests ADD COLUMN stop_by TEXT;
    ALTER TABLE requests ADD COLUMN regenerates INTEGER;
    CREATE TABLE votes (
        request_id INTEGER NOT NULL,
        platform TEXT NOT NULL,
        user_id TEXT NOT NULL,
        vote INTEGER NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (request_id, user_id)
    );
    CREATE INDEX votes_by_provider ON votes(provider, at);
    """,
    # 5: summarised history (``BOT_HISTORY=summary``, ``bot.summary``): per conversation, the summary
    # of the turns its answers left out, with the fingerprints of the turns it covers (oldest first,
    # space-separated) so that it is reused while they stay the same and extended when more are left out.
    """
    CREATE TABLE summaries (
        conversation TEXT PRIMARY KEY,
        covers TEXT NOT NULL,
        text TEXT NOT NULL,
        provider TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
]


_POSTGRES_WORDS = (
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
)


def postgres_sql(sqlite_sql: str) -> str:
    """A SQLite migration in PostgreSQL's words (ids, 64-bit integers, double precision)."""
    for pattern, replacement in _POSTGRES_WORDS:
        sqlite_sql = pattern.sub(replacement, sqlite_sql)
    return sqlite_sql


def migration(version: int, dialect: str) -> str:
    """The text of migration ``version`` (1-based) for ``dialect`` (``sqlite`` or ``postgres``)."""
    entry = MIGRATIONS[version - 1]
    if isinstance(entry, Dialects):
        return entry.sqlite if dialect == "sqlite" else entry.postgres
    return entry if dialect == "sqlite" else postgres_sql(entry)


#: Every table of the schema, parents before children: the order ``db copy`` fills them in.
TABLES = (
    "events", "conversations", "turns", "token_counts", "replies", "usage", "channel_settings", "requests", "votes",
    "summaries",
)
#: What running replicas keep for each other (heartbeats, shared limits): not history, not copied.
LIVE_TABLES = ("replicas", "edit_grants", "edit_streams", "edit_pauses", "rate_hits", "reservations")
#: How often a replica says it is alive, and after how long without a word it counts as gone.
HEARTBEAT_EVERY = 5.0
LEASE = 20.0
#: An open request untouched this long no longer holds its conversation's later answers back
#: (one whose final edit never landed stays open for the next start; it must not block).
ORDER_STALE = 120.0

#: Request states that are not final: a restart settles them (``bot.recovery``).
OPEN_STATES = ("accepted", "answering")

#: Fields of a request record ``update_request`` may change; those stored as JSON text.
REQUEST_FIELDS = frozenset(
    {"state", "place", "messages", "shown", "part", "owner", "provider", "model", "error", "regenerates"}
)
JSON_FIELDS = frozenset({"place", "messages"})
REQUEST_COLUMNS = "id, platform, conversation, origin, place, messages, shown, part, state, owner, created_at, provider"
#: ``usage_of`` / ``usage_totals`` groups and their columns.
USAGE_GROUPS = {"provider": "provider", "user": "user_id", "channel": "channel", "model": "model"}

DEFAULT_POOL = 5  # PostgreSQL connections per process (BOT_DATABASE_POOL)


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
class Summary:
    """A conversation's cached summary of the turns left out (``bot.summary``)."""

    covers: tuple[str, ...]  # fingerprints of the turns it covers, oldest first
    text: str
    provider: str  # the provider that wrote it


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
    provider: str | None = None  # the provider that answered it (once it has)


@dataclass(frozen=True, slots=True)
class UsageTotal:
    key: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class Store(Protocol):
    """What the service needs from persistent state; ``SqliteStore`` and ``PostgresStore`` implement it.

    ``ping`` is one round trip: True when the database answers (PostgreSQL's says False when it
    does not; SQLite's may raise instead: ``ops`` counts both as unreachable).  The other methods
    raise ``StoreUnavailable`` when it stays locked (SQLite) or cannot be reached (PostgreSQL).
    """

    #: Whether other processes share this database (PostgreSQL): then conversation order, edit
    #: windows, request rates and budget reservations are kept in it, not in process memory.
    shared: bool

    async def close(self) -> None: ...
    async def ping(self) -> bool: ...
    async def schema_version(self) -> int: ...
    async def claim_event(self, event_id: str, platform: str) -> bool: ...
    async def load_turns(self, key: str) -> list[Turn]: ...
    async def add_turns(self, key: str, turns: Sequence[Turn]) -> None: ...
    async def reset_conversation(self, key: str) -> None: ...
    async def cached_counts(self, message_ids: Sequence[str]) -> dict[str, tuple[str, int]]: ...
    async def save_counts(self, rows: Sequence[tuple[str, str, int]]) -> None: ...
    async def summary(self, conversation: str) -> Summary | None: ...
    async def save_summary(self, conversation: str, summary: Summary) -> None: ...
    async def accept(
        self, keys: Sequence[str], platform: str, conversation: str, origin: dict[str, Any], owner: str
    ) -> int | None: ...
    async def update_request(self, request_id: int, **fields: object) -> None: ...
    async def open_requests(self, platform: str) -> list[RequestRecord]: ...
    async def heartbeat(self, owner: str) -> None: ...
    async def take_orphans(self, platform: str, owner: str, alive_since: float) -> list[RequestRecord]: ...
    async def earlier_open(self, platform: str, conversation: str, request_id: int) -> bool: ...
    async def request(self, request_id: int) -> RequestRecord | None: ...
    async def channel_settings(self, platform: str, channel: str) -> dict[str, str]: ...
    async def set_channel_setting(self, platform: str, channel: str, name: str, value: str | None) -> None: ...
    async def record_usage(self, record: UsageRecord) -> None: ...
    async def usage_of(self, by: str, key: str, since: float) -> tuple[int, float]: ...
    async def usage_totals(
        self, by: str, since: float = 0.0, *, user: str | None = None, channel: str | None = None
    ) -> list[UsageTotal]: ...
    # controls on an answer (``bot.controls``)
    async def request_stop(self, request_id: int, by: str) -> bool:
        """Mark an open request to be stopped (by another replica); False when it is not open."""
    async def stops(self, request_ids: Sequence[int]) -> dict[int, str]:
        """Who asked to stop which of ``request_ids`` (only those marked)."""
    async def vote(self, request_id: int, platform: str, user: str, vote: int) -> str | None:
        """Record (or change) ``user``'s vote (+1/-1) on an answer of ``platform``; its provider, or
        None when there is no such answer (unknown, another platform's, or no provider answered)."""
    async def vote_totals(self, by: str, since: float = 0.0) -> dict[str, tuple[int, int]]:
        """(up, down) votes grouped ``by`` provider or model."""


async def open_store(
    database: str | Path, *, exclusive: bool = False, wait: float | None = None, pool_size: int = DEFAULT_POOL
) -> Store:
    """Open (and migrate) the database ``BOT_DATABASE`` names: a SQLite file or a PostgreSQL URL.

    ``exclusive`` (``serve``) refuses a SQLite file another ``serve`` holds; PostgreSQL
    takes any number of processes.  ``wait`` bounds how long one operation waits for a
    lock (SQLite) or a connection and a statement (PostgreSQL).  A database that cannot be
    opened is a one-line ``ConfigError`` or ``StoreUnavailable`` naming it without its password.
    """
    name = str(database)
    if is_postgres(name):
        from .store_postgres import PostgresStore

        return await PostgresStore.open(name, pool_size=pool_size, wait=wait)
    from .store_locks import DEFAULT_WAIT
    from .store_sqlite import SqliteStore

    try:
        return await SqliteStore.open(name, exclusive=exclusive, wait=DEFAULT_WAIT if wait is None else wait)
    except (sqlite3.Error, OSError) as exc:
        raise ConfigError(f"BOT_DATABASE: cannot open {name}: {exc}") from exc


def check_request_fields(fields: dict[str, object]) -> list[object]:
    """The values ``update_request`` stores, in order; ``ValueError`` for a field it does not know."""
    unknown = set(fields) - REQUEST_FIELDS
    if unknown:
        raise ValueError(f"unknown request fields: {sorted(unknown)}")
    return [json.dumps(v) if k in JSON_FIELDS else v for k, v in fields.items()]


def request_record(r: Sequence[Any]) -> RequestRecord:
    """A ``RequestRecord`` from a row of ``REQUEST_COLUMNS``."""
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
        provider=r[11],
    )


def __getattr__(name: str) -> Any:
    """``from bot.store import SqliteStore`` still works (code written before the backends were
    split); new code imports it from ``bot.store_sqlite``."""
    if name == "SqliteStore":
        from .store_sqlite import SqliteStore

        return SqliteStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
