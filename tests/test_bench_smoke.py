"""Keeps ``bench/`` from rotting: tiny loads through the real ``python -m bot serve`` and
``python -m bench.naive serve``, and the in-process platform double of the core scenario.

Asserts only that they complete, that every reply shows the provider's text
exactly, and that the naive baseline stays naive (a write per delta); the
timings they measure are the benchmark's business, not a test's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from bench.core import LatencySurface, naive_stream
from bench.e2e import UNLIMITED
from bench.load import LoadSpec, run_load
from bot.providers.base import Delta
from bot.reply import ReplyStream


async def test_a_tiny_bench_load_completes_with_the_providers_text():
    spec = LoadSpec("slack", conversations=2, channels=2, tokens=20, rate=200.0, ttft=0.05, grace=10.0)
    result = await run_load(spec)
    assert result.completed == 2
    assert all(seen.text == result.streams[tag].text for tag, seen in result.seen.items())
    assert result.tokens == 40


async def test_the_naive_baseline_bot_writes_once_per_delta_and_completes():
    spec = LoadSpec(
        "discord", conversations=2, channels=2, tokens=20, rate=200.0, ttft=0.05, grace=10.0,
        naive=True, limits=False, env=UNLIMITED,
    )
    result = await run_load(spec)
    assert result.completed == 2
    assert all(seen.text == result.streams[tag].text for tag, seen in result.seen.items())
    assert all(seen.writes >= 20 for seen in result.seen.values())


async def deltas(n: int) -> AsyncIterator[Delta]:
    for i in range(n):
        yield Delta(text=f" tok{i}")
    yield Delta(finish_reason="stop")


async def test_the_core_scenario_surface_counts_writes_for_ours_and_the_naive_loop():
    ours = LatencySurface(latency=0.0)
    outcome = await ReplyStream(ours, interval=1.0).run(deltas(50))
    naive = LatencySurface(latency=0.0)
    await naive_stream(naive, deltas(50))
    assert outcome.state == "complete"
    assert ours.text == naive.text == "".join(f" tok{i}" for i in range(50))
    assert naive.calls == 51 and naive.kinds[-1] == "finish"
    assert ours.calls < naive.calls and ours.kinds[-1] == "finish"


async def test_the_replicas_scenario_answers_through_two_replicas_and_measures_the_store(postgres_url):
    from bench.replicas import _load, _store_rows

    rows = await _store_rows(postgres_url, "PostgreSQL, 2 replicas", 2, 20)
    assert [r.metric for r in rows][-1] == "events accepted per second" and rows[-1].value > 0
    run = await _load(postgres_url, 2, conversations=2, tokens=20)
    assert sorted(run.seen) == ["0", "1"] and all(run.complete(tag) for tag in run.seen)
    assert run.answers_per_second() > 0


async def test_the_busy_scenario_runs_loads_back_to_back_in_one_bot():
    from bench.busy import Workload, bucket_bound, run_sequence

    loads = [Workload(2, 1, "normal", "bucket"), Workload(2, 2, "normal", "bucket")]
    results = await run_sequence("discord", loads, quick=True)
    assert [r.completed for r in results] == [2, 2]
    assert [sorted(r.seen) for r in results] == [["1000", "1001"], ["2000", "2001"]]  # each load its own replies
    assert bucket_bound(results[0]) >= 0
