"""Scenario 3, end to end: how much latency the bot itself adds, on the Slack and Discord fakes.

Questions go one at a time (each in its own channel, short answers), so
nothing queues: platform rate limits are switched off here (in the fakes and
in the bot's edit budgets) because scenario 4 is about them.  Measured on the
fakes' side of the sockets: question event sent -> first platform call for it
(status, typing or placeholder), and first provider token written -> first
text the platform receives; and whether every final text equals the
provider's answer.  The naive baseline is the same run with ``bench.naive``.
"""

from __future__ import annotations

from .common import Row, percentile
from .load import LoadResult, LoadSpec, run_load

TARGET_MS = 20.0
UNLIMITED = {"SLACK_EDITS_PER_MINUTE": "60000", "DISCORD_EDITS_PER_MINUTE": "60000"}


def spec(platform: str, n: int, naive: bool = False) -> LoadSpec:
    return LoadSpec(
        platform, conversations=n, channels=n, tokens=20, rate=200.0, ttft=0.05, grace=10.0,
        naive=naive, limits=False, env=UNLIMITED, spacing=0.25,
    )


async def bench_e2e(quick: bool = False, platforms: tuple[str, ...] = ("discord", "slack")) -> list[Row]:
    n = 10 if quick else 100
    rows: list[Row] = []
    for platform in platforms:
        ours = await run_load(spec(platform, n))
        naive = await run_load(spec(platform, n, naive=True))
        rows.extend(rows_for(platform, ours, naive))
    return rows


def rows_for(platform: str, ours: LoadResult, naive: LoadResult) -> list[Row]:
    name = f"e2e {platform}: {len(ours.seen)} replies, one at a time"
    rows = []
    for label, fn in (("event → first platform call", LoadResult.first_call_ms),
                      ("first delta → first visible text", LoadResult.first_text_ms)):
        for p in (50, 99):
            value, base = percentile(fn(ours), p), percentile(fn(naive), p)
            target = f"≤ {TARGET_MS:.0f} ms" if p == 99 else ""
            rows.append(Row(name, f"{label}, p{p}", value, "ms", baseline=base, target=target,
                            met=(value <= TARGET_MS) if p == 99 else None))
    share = ours.completed / len(ours.seen) * 100
    rows.append(Row(name, "final text equal to the provider's", share, "%", baseline=naive.completed / len(naive.seen) * 100,
                    target="100%", met=share == 100, higher_is_better=True))
    return rows
