"""Shared helpers for benchmarks: timing, percentiles, table rows."""

from __future__ import annotations

import resource
import statistics
import time
from dataclasses import asdict, dataclass, field


@dataclass
class Row:
    """One measured figure, with the naive baseline beside it when there is one."""

    scenario: str
    metric: str
    value: float
    unit: str
    baseline: float | None = None
    target: str = ""
    met: bool | None = None
    extra: dict[str, object] = field(default_factory=dict)
    higher_is_better: bool = False

    @property
    def ratio(self) -> str:
        """How many times better than the baseline (above 1: better)."""
        if self.baseline is None or not self.value or not self.baseline:
            return ""
        if self.value == float("inf") or self.baseline == float("inf"):
            if self.value == self.baseline:
                return ""
            return "∞" if (self.baseline == float("inf")) != self.higher_is_better else "0"
        better = self.value / self.baseline if self.higher_is_better else self.baseline / self.value
        return f"{better:.1f}x"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    if ordered[hi] == float("inf"):  # an unfinished reply counts as never
        return ordered[hi] if k > lo or ordered[lo] == ordered[hi] else ordered[lo]
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class CpuTimer:
    """Process CPU seconds (user + system) spent inside the block."""

    def __enter__(self) -> CpuTimer:
        self.start = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.process_time() - self.start


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fmt(value: float) -> str:
    if value != value:  # NaN
        return "–"
    if value == float("inf"):
        return "never"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def table(rows: list[Row]) -> str:
    lines = [
        "| scenario | metric | value | unit | naive baseline | ratio | target | met |",
        "| --- | --- | ---: | --- | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        base = fmt(r.baseline) if r.baseline is not None else ""
        lines.append(
            f"| {r.scenario} | {r.metric} | {fmt(r.value)} | {r.unit} | {base} | {r.ratio} | {r.target} | {met} |"
        )
    return "\n".join(lines)
