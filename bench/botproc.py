"""The bot as an operator runs it: ``python -m bot serve`` in its own process, set up by env vars.

Running the bot in a separate process keeps its cost apart from the fakes'
(which run in the benchmark process): CPU seconds are read from
``/proc/<pid>/stat`` (user + system) and the peak RSS from ``VmHWM`` in
``/proc/<pid>/status``.  ``module`` picks what runs: ``bot`` (the product) or
``bench.naive`` (the naive baseline).  ``BENCH_BOT_ROOT`` runs the bot from
another checkout (the fakes stay this one's): how a before/after table is made.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

TICKS = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(workdir: Path, provider_url: str, **extra: str) -> dict[str, str]:
    """What every benchmark bot gets: the provider double, a fresh database, an ops port."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(workdir),
        # BENCH_BOT_ROOT: run the bot from another checkout (e.g. main, for a before/after table)
        "PYTHONPATH": os.environ.get("BENCH_BOT_ROOT") or str(ROOT),
        "OPENAI_BASE_URL": provider_url,
        "OPENAI_API_KEY": "sk-bench",
        "BOT_DATABASE": str(workdir / "bot.db"),
        "BOT_OPS_HOST": "127.0.0.1",
        "BOT_OPS_PORT": str(free_port()),
        "BOT_LOG_LEVEL": "INFO",
        "BOT_SHUTDOWN_GRACE": "2",
        **extra,
    }


@dataclass
class BotProcess:
    proc: asyncio.subprocess.Process
    started: float  # monotonic, just before the exec
    ops_port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU the bot has used so far."""
        with open(f"/proc/{self.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)

    def _status(self, key: str) -> float:
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024  # kB -> MB
        return float("nan")

    def peak_rss_mb(self) -> float:
        return self._status("VmHWM")

    def rss_mb(self) -> float:
        return self._status("VmRSS")

    async def wait_healthy(self, timeout: float = 60.0) -> float:
        """Poll ``/healthz`` until every platform is connected; returns when (monotonic)."""
        url = f"http://127.0.0.1:{self.ops_port}/healthz"
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"the bot exited ({self.proc.returncode}); see {self.log}")
                try:
                    if (await http.get(url, timeout=1.0)).status_code == 200:
                        return time.monotonic()
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.01)
        raise RuntimeError(f"the bot was not healthy within {timeout} s; see {self.log}")

    async def stop(self, timeout: float = 30.0) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode if self.proc.returncode is not None else -1


async def start_bot(env: dict[str, str], workdir: Path, module: str = "bot") -> BotProcess:
    log = workdir / "bot.log"
    handle = log.open("ab")
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, "serve", env=env, cwd=workdir, stdout=handle, stderr=handle
    )
    handle.close()
    return BotProcess(proc, started, int(env["BOT_OPS_PORT"]), log)
