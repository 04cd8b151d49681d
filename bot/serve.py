"""``serve``: run every configured platform on one event loop until SIGTERM/SIGINT.

Each platform adapter exposes ``async def run(service, settings, stop)``: it
finalises replies a crash left unfinished, connects, answers until ``stop`` is
set, stops taking events, waits for ``service.drain()`` (replies in flight get
``BOT_SHUTDOWN_GRACE`` seconds, the rest are finalised as interrupted) and
closes its connections.  Exit status 0 after a clean shutdown.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import signal

from .db_url import redact
from .errors import ConfigError, RelayError
from .ops import start_ops
from .runtime import open_service
from .settings import Settings

log = logging.getLogger(__name__)


def platforms(settings: Settings) -> list[str]:
    """Adapter modules to start, by which tokens are set."""
    chosen = []
    if settings.slack_bot_token is not None:
        chosen.append("adapters.slack")
    if settings.discord_token is not None:
        chosen.append("adapters.discord")
    return chosen


async def serve(settings: Settings) -> int:
    modules = platforms(settings)
    if not modules:
        raise ConfigError("no platform is configured: set SLACK_BOT_TOKEN and/or DISCORD_TOKEN")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with open_service(settings, exclusive=True, serving=True) as service:  # one serve per SQLite file
        for name in modules:  # not ready until each platform says so (listening, restart settled)
            service.report_health(name.split(".")[-1], False)
        for note in await service.window_notes():
            log.warning("%s", note)
        ops = None
        if settings.bot_ops_port:
            ops = await start_ops(service, settings.bot_ops_host, settings.bot_ops_port)
        try:
            runs = [
                asyncio.create_task(importlib.import_module(name).run(service, settings, stop), name=name)
                for name in modules
            ]
            names = ", ".join(m.split(".")[-1] for m in modules)
            log.info("serving %s (database %s)", names, redact(settings.bot_database))
            await asyncio.wait(runs, return_when=asyncio.FIRST_EXCEPTION)
            stop.set()  # one platform failing stops the others cleanly
            await asyncio.wait(runs)
            await service.drain()
        finally:
            if ops is not None:
                await ops.cleanup()
    failures = [exc for exc in (_failure(t) for t in runs) if exc is not None]
    if not failures:
        log.info("stopped cleanly")
        return 0
    first, *others = failures
    for exc in others:
        log.error("also stopped: %s", exc)
    if isinstance(first, RelayError):
        raise first  # the command line shows it as one line naming the setting or the platform
    log.error("stopped after a failure: %r", first)
    return 1


def _failure(task: asyncio.Task[None]) -> BaseException | None:
    return None if task.cancelled() else task.exception()
