"""The Docker image definition (no Docker engine here): its promises, and its HEALTHCHECK run for real."""

from __future__ import annotations

import asyncio
import re
import shlex
import sys
from pathlib import Path

from bot.ops import start_ops

ROOT = Path(__file__).parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_slim_non_root_runtime_only_with_a_data_volume():
    assert re.search(r"^FROM python:3\.11-slim\b", DOCKERFILE, re.M)
    user = re.findall(r"^USER (\S+)", DOCKERFILE, re.M)
    assert user and user[-1] not in ("root", "0")
    assert 'VOLUME ["/data"]' in DOCKERFILE and "BOT_DATABASE=/data/" in DOCKERFILE
    assert "[test]" not in DOCKERFILE  # runtime dependencies only
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".git", "tests", "*.db"} <= set(ignored)


async def test_the_healthcheck_command_asks_whether_the_process_lives(service):
    command = re.search(r"HEALTHCHECK .*?CMD (.+)$", DOCKERFILE, re.S | re.M).group(1).replace("\\\n", " ")
    argv = shlex.split(command)
    assert argv[0] == "python"
    runner = await start_ops(service, "127.0.0.1", 0)
    port = str(runner.addresses[0][1])

    async def check() -> int:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *argv[1:], env={"BOT_OPS_PORT": port},
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        return await asyncio.wait_for(proc.wait(), 30)

    try:
        service.health["slack"] = True
        assert await check() == 0
        service.health["slack"] = False  # a platform reconnecting: not ready, but alive and healthy
        assert await check() == 0
    finally:
        await runner.cleanup()
    assert await check() != 0  # nothing answers: unhealthy
