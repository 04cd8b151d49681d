"""Keeps ``bench/`` from rotting: a tiny end-to-end load through the real ``python -m bot serve``.

Asserts only that it completes and that every reply shows the provider's text
exactly; the timings it measures are the benchmark's business, not a test's.
"""

from __future__ import annotations

from bench.load import LoadSpec, run_load


async def test_a_tiny_bench_load_completes_with_the_providers_text():
    spec = LoadSpec("slack", conversations=2, channels=2, tokens=20, rate=200.0, ttft=0.05, grace=10.0)
    result = await run_load(spec)
    assert result.completed == 2
    assert all(seen.text == result.streams[tag].text for tag, seen in result.seen.items())
    assert result.tokens == 40
