"""``llama-relay db copy --to postgresql://…``: move a SQLite store into PostgreSQL.

The source (``--from PATH``, else ``BOT_DATABASE``) is opened as ``serve`` opens it
(migrated, and refused while a ``serve`` holds it), then read in one read
transaction.  The target is migrated to the same schema version and must be
empty: a copy never merges into, or overwrites, a database that holds data (to
copy again, drop and recreate the target database).  Every table of the schema
is copied with its ids, in one PostgreSQL transaction — all or nothing — and each
id sequence is then set past the highest id SQLite ever gave out, so new rows
never reuse an id (usage rows and turn-keyed token counts refer to old ones).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg

from .db_url import is_postgres, redact
from .errors import ConfigError
from .store import TABLES
from .store import open_store as open_database
from .store_postgres import PostgresStore
from .store_sqlite import SqliteStore

BATCH = 2000  # rows read and written at a time

_CASTS: dict[str, Callable[[Any], Any]] = {"text": str, "bigint": int, "integer": int, "double precision": float}


@dataclass(frozen=True, slots=True)
class Copied:
    table: str
    rows: int


async def copy(source: str, target: str, *, wait: float | None = None) -> list[Copied]:
    """Copy every table of the SQLite store ``source`` into the empty PostgreSQL ``target``."""
    if is_postgres(source):
        raise ConfigError(f"db copy: the source must be a SQLite file, not {redact(source)}")
    if not is_postgres(target):
        raise ConfigError("db copy: --to must be a postgresql:// URL")
    if not Path(source).exists():
        raise ConfigError(f"db copy: {source} does not exist")
    sqlite = await open_database(source, exclusive=True, wait=wait)  # migrated; no serve writes meanwhile
    try:
        assert isinstance(sqlite, SqliteStore)
        postgres = await PostgresStore.open(target, pool_size=1, wait=wait)
        try:
            return await _copy_all(source, sqlite, postgres)
        finally:
            await postgres.close()
    finally:
        await sqlite.close()


async def _copy_all(source: str, sqlite: SqliteStore, postgres: PostgresStore) -> list[Copied]:
    if await sqlite.schema_version() != await postgres.schema_version():
        raise ConfigError("db copy: the two databases have different schema versions")
    copied = []
    async with aiosqlite.connect(f"{Path(source).resolve().as_uri()}?mode=ro", uri=True) as reader:
        await reader.execute("BEGIN")  # one snapshot of every table
        async with postgres.connection() as con, con.transaction():
            await _refuse_if_not_empty(con, postgres.name)
            for table in TABLES:
                copied.append(Copied(table, await _copy_table(reader, con, table)))
            await _set_sequences(reader, con)
        await reader.execute("COMMIT")
    return copied


async def _refuse_if_not_empty(con: asyncpg.Connection, name: str) -> None:
    filled = [table for table in TABLES if await con.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})")]
    if filled:
        raise ConfigError(
            f"db copy: {name} already holds data (in {', '.join(filled)}); "
            "copy only into an empty database (drop and recreate it to copy again)"
        )


async def _copy_table(reader: aiosqlite.Connection, con: asyncpg.Connection, table: str) -> int:
    columns = [row[1] async for row in _rows(reader, f"PRAGMA table_info({table})")]
    types = dict(
        await con.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = $1",
            table,
        )
    )
    missing = [c for c in columns if c not in types]
    if missing:
        raise ConfigError(f"db copy: the target's {table} has no column {missing[0]}")
    casts = [_CASTS.get(types[c], _same) for c in columns]
    count = 0
    cursor = await reader.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid")
    while batch := await cursor.fetchmany(BATCH):
        records = [_cast(row, casts) for row in batch]
        await con.copy_records_to_table(table, records=records, columns=columns)
        count += len(records)
    await cursor.close()
    return count


async def _set_sequences(reader: aiosqlite.Connection, con: asyncpg.Connection) -> None:
    """Each identity column continues past the highest id SQLite gave out (deleted rows included)."""
    given = {name: int(seq) async for name, seq in _rows(reader, "SELECT name, seq FROM sqlite_sequence")}
    identities = await con.fetch(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND is_identity = 'YES'"
    )
    for table, column in identities:
        if table not in TABLES:
            continue
        highest = max(given.get(table, 0), int(await con.fetchval(f"SELECT COALESCE(MAX({column}), 0) FROM {table}")))
        await con.execute(
            "SELECT setval(pg_get_serial_sequence($1, $2), $3, false)", table, column, highest + 1
        )


async def _rows(reader: aiosqlite.Connection, sql: str) -> AsyncIterator[Sequence[Any]]:
    async with reader.execute(sql) as cursor:
        async for row in cursor:
            yield row


def _cast(row: Sequence[Any], casts: list[Callable[[Any], Any]]) -> tuple[Any, ...]:
    """SQLite keeps what it is given; PostgreSQL wants each column's own type."""
    return tuple(None if value is None else cast(value) for value, cast in zip(row, casts, strict=True))


def _same(value: Any) -> Any:
    return value


def render(copied: list[Copied], target: str) -> str:
    lines = [f"{c.table:<17} {c.rows:>9,}" for c in copied]
    total = sum(c.rows for c in copied)
    return "\n".join([*lines, f"copied {total:,} rows into {redact(target)}"])
