"""Scenario "busy": loads back to back in one bot process, as a busy workspace sees them.

A fresh bot per load (scenario 4) starts every load with an unspent edit
budget and hides what a busy workspace lives with: the budget the last load
spent.  Here one ``python -m bot serve`` per platform answers a sequence of
loads, one right after the other, against one set of fakes whose limits
change between loads:

* Slack, ``lenient``: ``chat.update`` 10 a second per channel; ``tier3``:
  Slack's published limits, ``chat.update`` 50 a minute per workspace
  (``FakeSlack.slack_limits``).  ``chat.postMessage`` about 1 a second per
  channel in both.
* Discord: 5 message writes per 5 s per channel.
* Providers: ``normal`` 600 pieces at 40/s, ``fast`` 2,000 pieces at 200/s,
  both 300 ms to the first piece.

For each load: provider's last byte -> final text and first byte -> first
text (p50/p95), completion and 429s, with the targets beside them.  On
Discord the target is relative to ``bucket_bound``: the p95 the channel's
bucket allows at best for the messages those answers need.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .botproc import base_env, start_bot
from .common import Row, percentile
from .load import LoadResult, LoadSpec, answer_for, drive
from .platforms import DISCORD_LIMIT, DiscordDriver, SlackDriver
from .provider import ProviderDouble

#: pieces, pieces per second
PROVIDERS = {"normal": (600, 40.0), "fast": (2000, 200.0)}
QUICK_PROVIDERS = {"normal": (120, 40.0), "fast": (400, 200.0)}
TTFT = 0.3
GRACE = 60.0  # seconds after the provider's end to wait for every final text
CHANNELS = 30  # channels the fakes know (every load uses the first ones)


@dataclass(frozen=True)
class Workload:
    conversations: int
    channels: int
    provider: str  # a key of PROVIDERS
    limits: str  # Slack: "lenient" or "tier3"; Discord: "bucket"

    def label(self, platform: str) -> str:
        where = "1 channel" if self.channels == 1 else f"{self.channels} channels"
        limits = "" if platform == "discord" else f", {self.limits}"
        return f"busy {platform}: {self.conversations} in {where}, {self.provider}{limits}"


SLACK = [
    Workload(10, 1, "normal", "lenient"),
    Workload(30, 30, "normal", "lenient"),
    Workload(10, 1, "fast", "lenient"),
    Workload(30, 30, "fast", "lenient"),
    Workload(30, 30, "normal", "tier3"),
    Workload(10, 1, "fast", "tier3"),
    Workload(30, 30, "fast", "tier3"),
    Workload(30, 30, "normal", "tier3"),
    Workload(200, 20, "normal", "tier3"),
]
QUICK_SLACK = [Workload(10, 1, "normal", "tier3"), Workload(30, 30, "normal", "tier3"), Workload(30, 30, "normal", "tier3")]
DISCORD = [
    Workload(10, 1, "normal", "bucket"),
    Workload(10, 1, "fast", "bucket"),
    Workload(30, 30, "normal", "bucket"),
    Workload(10, 1, "normal", "bucket"),
]
QUICK_DISCORD = [Workload(10, 1, "normal", "bucket"), Workload(10, 1, "fast", "bucket")]


async def bench_busy(quick: bool = False, platforms: tuple[str, ...] = ("discord", "slack")) -> list[Row]:
    rows: list[Row] = []
    for platform in platforms:
        if platform == "slack":
            loads = QUICK_SLACK if quick else SLACK
        else:
            loads = QUICK_DISCORD if quick else DISCORD
        for result in await run_sequence(platform, loads, quick):
            rows.extend(rows_for(platform, result))
    return rows


async def run_sequence(platform: str, loads: list[Workload], quick: bool = False) -> list[LoadResult]:
    """Every load of ``loads``, one after the other, in one bot process."""
    providers = QUICK_PROVIDERS if quick else PROVIDERS
    provider = await ProviderDouble(answer_for(600), ttft=TTFT).start()
    driver = SlackDriver(limits=False) if platform == "slack" else DiscordDriver(limits=True)
    await driver.start(CHANNELS)
    results: list[LoadResult] = []
    with tempfile.TemporaryDirectory(prefix="bench-busy-") as tmp:
        workdir = Path(tmp)
        bot = await start_bot(base_env(workdir, provider.base_url, **driver.env()), workdir)
        try:
            healthy = await bot.wait_healthy()
            await driver.connected()
            for n, load in enumerate(loads):
                tokens, rate = providers[load.provider]
                provider.answer, provider.rate = answer_for(tokens), rate
                if isinstance(driver, SlackDriver):
                    driver.limits(load.limits)
                spec = LoadSpec(platform, load.conversations, load.channels, tokens=tokens, rate=rate,
                                ttft=TTFT, grace=GRACE, first_tag=1000 * (n + 1), name=load.label(platform))
                print(f"  {load.label(platform)}", file=sys.stderr, flush=True)
                results.append(await drive(spec, provider, driver, bot, healthy - bot.started))
        finally:
            await bot.stop()
            await driver.stop()
            await provider.stop()
    return results


def bucket_bound(
    result: LoadResult, count: int = DISCORD_LIMIT[0], window: float = DISCORD_LIMIT[1], *, first_texts: bool = False
) -> float:
    """The best p95 (ms) of last byte -> final text that a channel bucket of ``count`` writes per
    ``window`` seconds allows for these answers, if every message were written once, with its
    whole text, as soon as that text exists (a message's text is complete when the stream has
    passed its end), and the bucket spent on the replies with the fewest writes left first.
    ``first_texts``: each reply also writes its first text at its first byte (as a bot that
    shows an answer as it streams must).

    Assumes one channel, a full bucket when the first question is asked, and the fake's
    fixed window (it opens at the first write after the last one closed)."""
    jobs: list[tuple[float, str]] = []  # (ready at, tag)
    left: dict[str, int] = {}
    ends: dict[str, float] = {}
    start = min(s.event_at for s in result.seen.values())
    for tag, seen in result.seen.items():
        stream = result.streams.get(tag)
        if stream is None or stream.first_at is None or stream.last_at is None or not seen.parts:
            continue
        total = max(sum(len(p) for p in seen.parts), 1)
        done = 0
        for part in seen.parts:
            done += len(part)
            jobs.append((stream.first_at + (stream.last_at - stream.first_at) * done / total, tag))
        if first_texts:
            jobs.append((stream.first_at, tag))
        left[tag] = len(seen.parts) + first_texts
        ends[tag] = stream.last_at
    pending = sorted(jobs)
    now, window_start, used = start, start, 0
    finished: dict[str, float] = {}
    while pending:
        now = max(now, pending[0][0])
        if now - window_start >= window:
            window_start, used = now, 0
        if used >= count:
            now = window_start + window
            continue
        ready = [job for job in pending if job[0] <= now]
        job = min(ready, key=lambda j: (left[j[1]], j[0]))
        pending.remove(job)
        used += 1
        left[job[1]] -= 1
        if left[job[1]] == 0:
            finished[job[1]] = now
    return percentile([(finished[tag] - ends[tag]) * 1000 for tag in finished], 95)


def rows_for(platform: str, r: LoadResult) -> list[Row]:
    name = r.spec.label
    n = len(r.seen)
    first, final = r.first_text_ms(), r.final_ms()
    extra = {"summary": r.summary()}
    first_target, final_target = "", ""
    first_met: bool | None = None
    final_met: bool | None = None
    tier3_30 = "tier3" in name and r.spec.conversations == 30 and r.spec.channels == 30
    if tier3_30:
        first_target, first_met = "≤ 1,000 ms", percentile(first, 95) <= 1000
        final_target, final_met = "≤ 1,500 ms", percentile(final, 95) <= 1500
    elif platform == "slack" and r.spec.conversations == 200:
        final_target, final_met = "≤ 5,000 ms", percentile(final, 95) <= 5000
    rows = [
        Row(name, "first byte → first text, p50", percentile(first, 50), "ms", extra=extra),
        Row(name, "first byte → first text, p95", percentile(first, 95), "ms", target=first_target, met=first_met),
        Row(name, "last byte → final text, p50", percentile(final, 50), "ms"),
    ]
    if platform == "discord" and r.spec.channels == 1:
        bound = bucket_bound(r)
        rows.append(Row(name, "last byte → final text, p95: best the bucket allows", bound, "ms"))
        rows.append(Row(name, "... the same, with a first text per reply", bucket_bound(r, first_texts=True), "ms"))
        final_target, final_met = f"≤ {1.2 * bound:,.0f} ms (bound + 20%)", percentile(final, 95) <= 1.2 * bound
    rows += [
        Row(name, "last byte → final text, p95", percentile(final, 95), "ms", target=final_target, met=final_met),
        Row(name, "replies complete", r.completed / n * 100, "%", target="100%", met=r.completed == n,
            higher_is_better=True),
        Row(name, "429s", r.limited, "responses", target=f"≤ {max(1, n // 10)} (no storm)", met=r.limited <= max(1, n // 10)),
        Row(name, "platform writes per reply", sum(r.writes) / n, "calls"),
        Row(name, "bot CPU per streamed piece", r.cpu_ms_per_token(), "ms"),
    ]
    return rows
