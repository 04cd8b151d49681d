"""``python -m bench [scenario ...] [--quick] [--platform P] [--json FILE]``: run benchmarks, print a table."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from functools import partial

from . import busy, concurrency, core, e2e, replicas, startup, transport
from .common import Row, table

Scenario = Callable[..., "list[Row] | Awaitable[list[Row]]"]


def scenarios(quick: bool, platforms: tuple[str, ...]) -> dict[str, Scenario]:
    return {
        "parsing": core.bench_parsing,
        "reply": partial(core.bench_reply, quick=quick),
        "e2e": partial(e2e.bench_e2e, quick=quick, platforms=platforms),
        "concurrency": partial(concurrency.bench_concurrency, quick=quick, platforms=platforms),
        "busy": partial(busy.bench_busy, quick=quick, platforms=platforms),
        "trim": partial(core.bench_trim, quick=quick),
        "tokenizer": core.bench_tokenizer,
        "startup": partial(startup.bench_startup, quick=quick),
        "transport": partial(transport.bench_transport, quick=quick),
        "replicas": partial(replicas.bench_replicas, quick=quick),
    }


NAMES = list(scenarios(False, ()))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


async def run(names: list[str], quick: bool, platforms: tuple[str, ...]) -> list[Row]:
    chosen = scenarios(quick, platforms)
    rows: list[Row] = []
    for name in names:
        started = time.monotonic()
        print(f"running {name}…", file=sys.stderr, flush=True)
        result = chosen[name]()
        if asyncio.iscoroutine(result):
            result = await result
        rows.extend(result)  # type: ignore[arg-type]
        print(f"  {name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenarios", nargs="*", metavar="scenario", help=f"any of {', '.join(NAMES)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run of a minute or two")
    parser.add_argument("--platform", choices=["discord", "slack"], action="append",
                        help="only this platform for e2e/concurrency/busy (repeatable; default both)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    unknown = [n for n in args.scenarios if n not in NAMES]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(NAMES)}")
    names = args.scenarios or NAMES
    platforms = tuple(args.platform or ("discord", "slack"))
    started = time.monotonic()
    rows = asyncio.run(run(names, args.quick, platforms))
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"Machine: {machine()}  \nDate: {when}; {'quick' if args.quick else 'full'} run, "
          f"{time.monotonic() - started:.0f} s\n")
    print(table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "date": when, "quick": args.quick,
                       "rows": [r.as_dict() for r in rows]}, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
