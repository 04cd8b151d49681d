"""The Docker image definition (no Docker engine here): its promises, and its HEALTHCHECK run for real."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import sys
from pathlib import Path

from bot.ops import start_ops
from bot.settings import Settings, load_settings

ROOT = Path(__file__).parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
EXAMPLE = (ROOT / "config" / ".env.example").read_text()


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


def _image_env() -> dict[str, str]:
    """The ``ENV`` of the runtime stage (the last ``FROM``), as ``docker run`` starts with it."""
    runtime = DOCKERFILE.rsplit("\nFROM ", 1)[1].replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.+)$", runtime, re.M):
        env.update(pair.split("=", 1) for pair in shlex.split(line))
    return env


def _docker_env_file(text: str) -> dict[str, str]:
    """What ``docker run --env-file`` does with a file: ``#`` lines and blank lines skipped, every
    ``NAME=value`` taken literally (no quote removal, no expansion)."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        env[name] = value
    return env


def _settings_in(env: dict[str, str], monkeypatch) -> tuple[Settings, dict[str, object]]:
    """The settings a process with exactly ``env`` (for our names) loads, and the defaults."""
    for name in list(os.environ):
        if name.upper() in {f.upper() for f in Settings.model_fields}:
            monkeypatch.delenv(name)
    defaults = Settings(_env_file=None).model_dump()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(_env_file=None), defaults


def test_the_example_env_file_under_docker_keeps_the_images_defaults(monkeypatch):
    """README: copy config/.env.example to .env, then ``docker run --env-file .env -v …:/data -p 8080:8080``."""
    image = _image_env()
    given = _docker_env_file(EXAMPLE)
    assert not image.keys() & {name for name, value in given.items()}  # not even empty: that would erase it
    quoted = [name for name, value in given.items() if value[:1] in "\"'" and value]
    assert quoted == []  # --env-file would keep the quotes in the value
    settings, defaults = _settings_in({**image, **given}, monkeypatch)
    assert settings.bot_database.startswith("/data/")  # on the volume: kept across containers
    assert settings.bot_ops_host == "0.0.0.0" and settings.bot_ops_port == 8080  # reachable through -p 8080:8080
    assert "EXPOSE 3000 8080" in DOCKERFILE
    changed = {k for k, v in settings.model_dump().items() if v != defaults[k]}
    assert changed == {"bot_database", "bot_ops_host"}  # the image's; the rest as without a .env


def test_the_defaults_the_example_shows_are_the_real_ones(monkeypatch):
    """Every commented-out ``# NAME=value`` line, uncommented, changes nothing."""
    shown = dict(re.findall(r"^# ([A-Z][A-Z0-9_]*)=(.*)$", EXAMPLE, re.M))
    assert len(shown) > 40
    settings, defaults = _settings_in(shown, monkeypatch)
    assert settings.model_dump() == defaults
