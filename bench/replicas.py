"""Replicas on one PostgreSQL: store latency per event, answers per second, takeover time.

* **Store latency per event**: N events accepted at once (claim + request record, the
  first thing every question costs), through one store or through three (three
  replicas' pools on one database); per-event latency p50/p95 and events per second.
  SQLite (one process) is the reference.
* **Answers per second** and **takeover time** run real ``python -m bot serve``
  replicas against one throwaway PostgreSQL and the fake Slack (``replica_loads``).

The PostgreSQL server is the tests' throwaway one (``tests/pg.py``): ``initdb`` into a
temporary directory, 127.0.0.1 only, ``fsync`` off, so the figures show what the bot
costs, not what a disk costs.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from bot.store import Store, open_store
from tests import pg

from .common import Row, percentile


async def _accept_all(stores: list[Store], events: int, run: str) -> tuple[list[float], float]:
    """Accept ``events`` events at once, spread over ``stores``: per-event seconds and the wall time."""
    latencies: list[float] = []

    async def one(n: int) -> None:
        store = stores[n % len(stores)]
        started = time.monotonic()
        rid = await store.accept([f"bench:event:{run}{n}", f"bench:message:{run}{n}"], "slack", f"C{n}", {}, "bench")
        latencies.append(time.monotonic() - started)
        assert rid is not None

    t0 = time.monotonic()
    await asyncio.gather(*(one(n) for n in range(events)))
    return latencies, time.monotonic() - t0


async def _store_rows(database: str, label: str, replicas: int, events: int) -> list[Row]:
    stores = [await open_store(database) for _ in range(replicas)]
    try:
        await _accept_all(stores, 20, "warm")  # the pools' connections open
        latencies, wall = await _accept_all(stores, events, "run")
    finally:
        for store in stores:
            await store.close()
    name = f"store: {events} events at once, {label}"
    ms = [x * 1000 for x in latencies]
    return [
        Row(name, "accept latency per event, p50", percentile(ms, 50), "ms"),
        Row(name, "accept latency per event, p95", percentile(ms, 95), "ms"),
        Row(name, "events accepted per second", events / wall, "events/s", higher_is_better=True),
    ]


async def bench_store(quick: bool = False) -> list[Row]:
    events = 200 if quick else 1000
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        print("  store: SQLite, one process", file=sys.stderr, flush=True)
        rows += await _store_rows(str(Path(tmp) / "bench.db"), "SQLite, 1 process", 1, events)
    server = pg.start()
    try:
        for replicas in (1, 3):
            print(f"  store: PostgreSQL, {replicas} replica(s)", file=sys.stderr, flush=True)
            database = await server.new_database()
            label = f"PostgreSQL, {replicas} replica{'s' if replicas > 1 else ''}"
            rows += await _store_rows(database, label, replicas, events)
    finally:
        server.stop()
    return rows


async def bench_replicas(quick: bool = False) -> list[Row]:
    return await bench_store(quick)
