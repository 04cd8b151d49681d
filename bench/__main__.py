"""``python -m bench [scenario ...] [--json FILE]``: run benchmarks, print a markdown table."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys

from . import core
from .common import Row, table

SCENARIOS = {
    "parsing": core.bench_parsing,
    "reply": core.bench_reply,
    "trim": core.bench_trim,
    "tokenizer": core.bench_tokenizer,
}


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


async def run(names: list[str]) -> list[Row]:
    rows: list[Row] = []
    for name in names:
        print(f"running {name}…", file=sys.stderr, flush=True)
        result = SCENARIOS[name]()
        if asyncio.iscoroutine(result):
            result = await result
        rows.extend(result)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, []], help="default: all")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    names = args.scenarios or list(SCENARIOS)
    rows = asyncio.run(run(names))
    print(f"Machine: {machine()}\n")
    print(table(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"machine": machine(), "rows": [r.as_dict() for r in rows]}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
