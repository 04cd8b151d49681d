"""One load: fresh fakes, a fresh ``python -m bot serve``, N questions at once, and what came of them.

``run_load`` starts the provider double and one platform fake (with that
platform's limits), starts the bot in its own process pointed at them by
environment variables, waits until ``/healthz`` says it is connected, sends
every question at once, and waits until every reply shows the provider's
whole text (or ``grace`` seconds after the provider finished).  The bot's CPU
and peak RSS come from ``/proc``; every time is taken in this process, on
the fakes' side of the sockets.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .botproc import BotProcess, base_env, start_bot
from .common import percentile
from .platforms import DRIVERS, Seen
from .provider import ProviderDouble, Stream, token_pieces

PARAGRAPH = (
    "Streaming a reply means the model sends its answer a few characters at a time, and the bot "
    "shows each new piece as soon as it can. The platform limits how often a message may change, "
    "so the bot gathers the pieces and edits the message about once a second. When the answer is "
    "long it continues in a second message, cut at the end of a sentence or a paragraph, never in "
    "the middle of a word. "
)
BASE_TEXT = "\n\n".join(PARAGRAPH * 2 for _ in range(20))


@dataclass
class LoadSpec:
    platform: str
    conversations: int
    channels: int
    tokens: int = 600
    rate: float = 40.0
    ttft: float = 0.3
    grace: float = 30.0  # seconds after the provider's last token to wait for the final text
    naive: bool = False
    limits: bool = True
    env: dict[str, str] = field(default_factory=dict)
    profile: str | None = None  # write a py-spy profile of the bot (while it answers) to this file
    spacing: float = 0.0  # seconds between questions (0: all at once)
    first_tag: int = 0  # questions are tagged q<first_tag>, q<first_tag + 1>, ... (unique per bot process)
    name: str = ""  # the label, when the default one does not say enough

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        where = "1 channel" if self.channels == 1 else f"{self.channels} channels"
        return f"{self.conversations} at once, {where}"


@dataclass
class LoadResult:
    spec: LoadSpec
    seen: dict[str, Seen]
    streams: dict[str, Stream]
    bot_cpu: float  # CPU seconds the bot used while answering
    bench_cpu: float  # CPU seconds the fakes (this process) used meanwhile
    wall: float  # seconds from the first question to the end of the wait
    peak_rss_mb: float
    startup: float  # process start -> healthy, seconds

    # -- per-reply figures, milliseconds -------------------------------------------------------

    def first_call_ms(self) -> list[float]:
        return [(s.first_call_at - s.event_at) * 1000 for s in self.seen.values() if s.first_call_at]

    def first_text_ms(self) -> list[float]:
        out = []
        for tag, s in self.seen.items():
            st = self.streams.get(tag)
            if st and st.first_at and s.first_text_at:
                out.append((s.first_text_at - st.first_at) * 1000)
        return out

    def final_ms(self) -> list[float]:
        """Last provider token -> final text on the platform; incomplete replies count as +inf."""
        out = []
        for tag, s in self.seen.items():
            st = self.streams.get(tag)
            if self.complete(tag) and st and st.last_at and s.final_at:
                out.append((s.final_at - st.last_at) * 1000)
            else:
                out.append(float("inf"))
        return out

    def complete(self, tag: str) -> bool:
        st = self.streams.get(tag)
        return st is not None and st.done_at is not None and self.seen[tag].text == st.text

    @property
    def completed(self) -> int:
        return sum(self.complete(tag) for tag in self.seen)

    @property
    def tokens(self) -> int:
        return sum(len(s.pieces) for s in self.streams.values() if s.done_at is not None)

    @property
    def writes(self) -> list[int]:
        return [s.writes for s in self.seen.values()]

    @property
    def limited(self) -> int:
        return sum(s.limited for s in self.seen.values())

    def cpu_ms_per_token(self) -> float:
        return self.bot_cpu / self.tokens * 1000 if self.tokens else float("nan")

    def summary(self) -> dict[str, object]:
        final = self.final_ms()
        return {
            "load": self.spec.label,
            "platform": self.spec.platform,
            "naive": self.spec.naive,
            "first_call_ms_p50": percentile(self.first_call_ms(), 50),
            "first_call_ms_p95": percentile(self.first_call_ms(), 95),
            "first_call_ms_p99": percentile(self.first_call_ms(), 99),
            "first_text_ms_p50": percentile(self.first_text_ms(), 50),
            "first_text_ms_p95": percentile(self.first_text_ms(), 95),
            "first_text_ms_p99": percentile(self.first_text_ms(), 99),
            "final_ms_p50": percentile(final, 50),
            "final_ms_p95": percentile(final, 95),
            "writes_per_reply": sum(self.writes) / max(len(self.writes), 1),
            "429s": self.limited,
            "complete": self.completed,
            "replies": len(self.seen),
            "tokens": self.tokens,
            "bot_cpu_s": self.bot_cpu,
            "cpu_ms_per_token": self.cpu_ms_per_token(),
            "peak_rss_mb": self.peak_rss_mb,
            "fakes_cpu_share": self.bench_cpu / self.wall if self.wall else float("nan"),
            "wall_s": self.wall,
            "startup_s": self.startup,
        }


def answer_for(tokens: int):  # type: ignore[no-untyped-def]
    base = token_pieces(BASE_TEXT, tokens)

    def answer(tag: str) -> list[str]:
        return [f"R{tag}", *base[1:]]

    return answer


async def _profiler(path: str | None, pid: int) -> asyncio.subprocess.Process | None:
    """``py-spy record`` on the bot (``pip install py-spy``), or None."""
    if not path:
        return None
    fmt = "speedscope" if path.endswith(".json") else "flamegraph" if path.endswith(".svg") else "raw"
    spy = await asyncio.create_subprocess_exec(
        shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
        "record", "--pid", str(pid), "--rate", "250", "--format", fmt, "--output", path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(0.5)
    return spy


async def run_load(spec: LoadSpec) -> LoadResult:
    provider = await ProviderDouble(answer_for(spec.tokens), ttft=spec.ttft, rate=spec.rate).start()
    driver = DRIVERS[spec.platform](limits=spec.limits)
    await driver.start(spec.channels)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        env = base_env(workdir, provider.base_url, **driver.env(), **spec.env)
        bot = await start_bot(env, workdir, module="bench.naive" if spec.naive else "bot")
        try:
            healthy = await bot.wait_healthy()
            await asyncio.wait_for(driver.connected(), 30)
            return await drive(spec, provider, driver, bot, healthy - bot.started)
        finally:
            await bot.stop()
            await driver.stop()
            await provider.stop()


async def drive(spec: LoadSpec, provider: ProviderDouble, driver, bot: BotProcess, startup: float) -> LoadResult:  # type: ignore[no-untyped-def]
    spy = await _profiler(spec.profile, bot.pid)
    cpu0, bench0, t0 = bot.cpu_seconds(), time.process_time(), time.monotonic()
    tags = {str(spec.first_tag + n) for n in range(spec.conversations)}
    for n in range(spec.conversations):
        if n and spec.spacing:
            await asyncio.sleep(spec.spacing)
        await driver.ask(str(spec.first_tag + n), n % spec.channels)
    expected_end = time.monotonic() + spec.ttft + spec.tokens / spec.rate
    while True:
        await asyncio.sleep(0.25)
        seen = {tag: s for tag, s in driver.outcome().items() if tag in tags}
        streams = {tag: s for tag, s in provider.by_tag().items() if tag in tags}
        done = [s.done_at for s in streams.values() if s.done_at]
        finished = all(
            tag in streams and streams[tag].done_at and seen[tag].text == streams[tag].text for tag in seen
        )
        if finished:
            break
        end = max([expected_end, *done]) if len(done) == len(seen) else max([expected_end, *done]) + 5
        if time.monotonic() > end + spec.grace:
            break
    wall = time.monotonic() - t0
    cpu = bot.cpu_seconds() - cpu0
    bench_cpu = time.process_time() - bench0
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        await spy.wait()
    return LoadResult(spec, seen, streams, cpu, bench_cpu, wall, bot.peak_rss_mb(), startup)
