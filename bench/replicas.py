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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from bot.recovery import INTERRUPTED_NOTE
from bot.store import Store, open_store
from tests import pg
from tests.fakes.slack import BOT_USER

from .botproc import BotProcess, base_env, start_bot
from .common import Row, percentile
from .load import answer_for
from .platforms import Seen, SlackDriver
from .provider import ProviderDouble, Stream


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
    return [*await bench_store(quick), *await bench_answering(quick)]


# -- replicas answering -----------------------------------------------------------------------


class ReplicaSlack(SlackDriver):
    """The Slack driver for several replicas: each question goes to a random Socket Mode connection."""

    def __init__(self, seed: int = 1) -> None:
        super().__init__(limits=False)  # the bot's own capacity, not Slack's limit
        self.fake.seed = seed

    async def connected_all(self, count: int) -> None:
        await self.fake.wait_connections(count, timeout=60)

    async def ask(self, tag: str, channel_index: int) -> None:
        channel = self.channel_ids[channel_index]
        event = {**self.fake.say(f"<@{BOT_USER}> q{tag} please explain streaming", channel=channel, user="U1"),
                 "type": "app_mention"}
        self.questions[(channel, event["ts"])] = (tag, time.monotonic())
        await self.fake.deliver(self.fake.callback(event), via="random", wait=False)


@dataclass
class ReplicaRun:
    seen: dict[str, Seen]
    streams: dict[str, Stream]
    started: float
    bots: list[BotProcess]
    killed_at: float | None = None

    def complete(self, tag: str) -> bool:
        stream = self.streams.get(tag)
        return stream is not None and stream.done_at is not None and self.seen[tag].text == stream.text

    def answers_per_second(self) -> float:
        done = [s.final_at for tag, s in self.seen.items() if self.complete(tag) and s.final_at]
        return len(done) / (max(done) - self.started) if done else 0.0


@asynccontextmanager
async def replicas_on(
    database: str, count: int, driver: ReplicaSlack, provider: ProviderDouble, workdir: Path
) -> AsyncIterator[list[BotProcess]]:
    bots: list[BotProcess] = []
    try:
        for n in range(count):
            home = workdir / f"r{n}"
            home.mkdir()
            env = base_env(
                home, provider.base_url, **driver.env(), BOT_DATABASE=database, BOT_REPLICA=f"r{n}",
                # the bot's capacity, not the workspace's 50 edits a minute (which replicas share)
                SLACK_EDITS_PER_MINUTE="6000",
            )
            bots.append(await start_bot(env, home))
        for bot in bots:
            await bot.wait_healthy()
        await driver.connected_all(count)
        yield bots
    finally:
        for bot in bots:
            await bot.stop()


async def _answer_all(
    driver: ReplicaSlack, provider: ProviderDouble, bots: list[BotProcess], conversations: int,
    kill_after: float | None, grace: float,
) -> ReplicaRun:
    started = time.monotonic()
    for n in range(conversations):
        await driver.ask(str(n), n)
    run = ReplicaRun({}, {}, started, bots)
    deadline = started + grace
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        if kill_after is not None and run.killed_at is None and time.monotonic() - started >= kill_after:
            bots[0].proc.kill()  # SIGKILL mid-stream: no goodbye, no last edit
            run.killed_at = time.monotonic()
        run.seen, run.streams = driver.outcome(), provider.by_tag()
        if all(_final(run, tag) for tag in run.seen):
            break
    return run


def _final(run: ReplicaRun, tag: str) -> bool:
    return run.complete(tag) or INTERRUPTED_NOTE in run.seen[tag].text


async def _load(
    database: str, replicas: int, conversations: int, tokens: int, *, kill_after: float | None = None
) -> ReplicaRun:
    provider = await ProviderDouble(answer_for(tokens), ttft=0.3, rate=40.0).start()
    driver = ReplicaSlack()
    await driver.start(conversations)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
            async with replicas_on(database, replicas, driver, provider, Path(tmp)) as bots:
                return await _answer_all(driver, provider, bots, conversations, kill_after, grace=120.0)
    finally:
        await driver.stop()
        await provider.stop()


def _takeover_seconds(driver_calls: list, killed_at: float) -> float:  # type: ignore[type-arg]
    """From the kill to the last "interrupted" note a survivor wrote."""
    notes = [c.at for c in driver_calls if INTERRUPTED_NOTE in str(c.params.get("text", ""))]
    return max(notes) - killed_at if notes else float("nan")


async def bench_answering(quick: bool = False) -> list[Row]:
    conversations, tokens = (30, 120) if quick else (100, 240)
    rows: list[Row] = []
    server = pg.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as tmp:
            loads = [("SQLite, 1 process", str(Path(tmp) / "bot.db"), 1)]
            for replicas in (1, 3):
                loads.append((f"PostgreSQL, {replicas} replica{'s' if replicas > 1 else ''}",
                               await server.new_database(), replicas))
            for label, database, replicas in loads:
                print(f"  replicas: {conversations} at once, {label}", file=sys.stderr, flush=True)
                run = await _load(database, replicas, conversations, tokens)
                name = f"replicas: {conversations} answers at once, {label}"
                done = sum(run.complete(tag) for tag in run.seen)
                rows += [
                    Row(name, "answers per second (question sent → final text)", run.answers_per_second(),
                        "answers/s", higher_is_better=True),
                    Row(name, "answers complete", done / max(len(run.seen), 1) * 100, "%", higher_is_better=True),
                ]
        print("  replicas: takeover after a SIGKILL, 3 replicas", file=sys.stderr, flush=True)
        rows += await _bench_takeover(await server.new_database(), quick)
    finally:
        server.stop()
    return rows


async def _bench_takeover(database: str, quick: bool) -> list[Row]:
    conversations = 15 if quick else 30
    provider = await ProviderDouble(answer_for(600), ttft=0.3, rate=40.0).start()
    driver = ReplicaSlack()
    await driver.start(conversations)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-takeover-") as tmp:
            async with replicas_on(database, 3, driver, provider, Path(tmp)) as bots:
                run = await _answer_all(driver, provider, bots, conversations, kill_after=3.0, grace=120.0)
        noted = [tag for tag in run.seen if INTERRUPTED_NOTE in run.seen[tag].text]
        final = sum(_final(run, tag) for tag in run.seen)
        takeover = _takeover_seconds(driver.fake.calls, run.killed_at or 0.0)
    finally:
        await driver.stop()
        await provider.stop()
    name = f"replicas: 3 replicas, {conversations} answers, one SIGKILLed 3 s in"
    return [
        Row(name, "kill → last half answer finished by a survivor", takeover, "s", target="≤ 30 s",
            met=takeover <= 30),
        Row(name, "half answers finished with the note", len(noted), "replies"),
        Row(name, "replies final (whole, or with the note)", final / max(len(run.seen), 1) * 100, "%",
            target="100%", met=final == len(run.seen), higher_is_better=True),
    ]
