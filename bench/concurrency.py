"""Scenario 4, concurrency under the platforms' real limits.

Each load is a fresh ``python -m bot serve`` against fresh fakes that enforce
the limits (Discord: 5 message creates/edits per 5 s per channel; Slack:
``chat.update`` 50 per minute per workspace, one workspace) and a provider
that takes 300 ms to the first token, then streams 600 tokens at 40/s.
Loads: 1 conversation; 10 at once in one channel; 30, 100 and 500 at once,
each in its own channel.  The naive baseline (an edit per delta, awaited in
line) runs the small loads; it cannot finish bigger ones within the wait.
"""

from __future__ import annotations

import sys

from .common import Row, percentile
from .load import LoadResult, LoadSpec, run_load

#: (conversations, channels)
LOADS = [(1, 1), (10, 1), (30, 30), (100, 100), (500, 500)]
QUICK_LOADS = [(1, 1), (10, 1), (30, 30)]
NAIVE_LOADS = {(1, 1), (10, 1), (30, 30)}
QUICK_NAIVE = {(1, 1)}
GRACE = 30.0  # seconds after the provider's end to wait for every final text
#: the naive bot never finishes a 600-token reply under these limits (600 edits at <= 1/s): a short wait shows it
NAIVE_GRACE = 10.0


async def bench_concurrency(quick: bool = False, platforms: tuple[str, ...] = ("discord", "slack")) -> list[Row]:
    rows: list[Row] = []
    tokens = 120 if quick else 600
    grace = 10.0 if quick else GRACE
    for platform in platforms:
        for convs, channels in QUICK_LOADS if quick else LOADS:
            spec = LoadSpec(platform, convs, channels, tokens=tokens, grace=grace)
            print(f"  {platform}: {spec.label}", file=sys.stderr, flush=True)
            ours = await run_load(spec)
            naive = None
            if (convs, channels) in (QUICK_NAIVE if quick else NAIVE_LOADS):
                print(f"  {platform}: {spec.label} (naive)", file=sys.stderr, flush=True)
                naive = await run_load(
                    LoadSpec(platform, convs, channels, tokens=tokens, grace=min(grace, NAIVE_GRACE), naive=True)
                )
            rows.extend(rows_for(ours, naive))
    return rows


def _p(values: list[float], p: float) -> float:
    return percentile(values, p)


def rows_for(ours: LoadResult, naive: LoadResult | None) -> list[Row]:
    spec = ours.spec
    name = f"{spec.platform}: {spec.label}"
    b = naive
    n = len(ours.seen)
    extra = {"summary": ours.summary(), "naive": naive.summary() if naive else None}
    rows = [
        Row(name, "event → first platform call, p95", _p(ours.first_call_ms(), 95), "ms",
            baseline=_p(b.first_call_ms(), 95) if b else None, target="≤ 50 ms",
            met=_p(ours.first_call_ms(), 95) <= 50, extra=extra),
        Row(name, "first delta → first visible text, p50", _p(ours.first_text_ms(), 50), "ms",
            baseline=_p(b.first_text_ms(), 50) if b else None),
        Row(name, "first delta → first visible text, p95", _p(ours.first_text_ms(), 95), "ms",
            baseline=_p(b.first_text_ms(), 95) if b else None),
        Row(name, "last delta → final text, p50", _p(ours.final_ms(), 50), "ms",
            baseline=_p(b.final_ms(), 50) if b else None),
        Row(name, "last delta → final text, p95", _p(ours.final_ms(), 95), "ms",
            baseline=_p(b.final_ms(), 95) if b else None, target="≤ 1,500 ms",
            met=_p(ours.final_ms(), 95) <= 1500),
        Row(name, "platform writes per reply", sum(ours.writes) / n, "calls",
            baseline=sum(b.writes) / len(b.writes) if b else None),
        Row(name, "429s", ours.limited, "responses", baseline=b.limited if b else None),
        Row(name, "replies complete (final text = provider's)", ours.completed / n * 100, "%",
            baseline=b.completed / len(b.seen) * 100 if b else None, target="100%",
            met=ours.completed == n, higher_is_better=True),
        Row(name, "bot CPU per streamed token", ours.cpu_ms_per_token(), "ms",
            baseline=b.cpu_ms_per_token() if b else None, target="≤ 0.05 ms",
            met=ours.cpu_ms_per_token() <= 0.05),
        Row(name, "bot peak RSS", ours.peak_rss_mb, "MB", baseline=b.peak_rss_mb if b else None,
            target="≤ 100 MB" if n == 30 else "", met=(ours.peak_rss_mb <= 100) if n == 30 else None),
    ]
    return rows
