"""The operations endpoint during ``serve``: ``/healthz`` (readiness), ``/livez``, ``/metrics``.

Adapters report whether their platform connection is up in ``service.health``;
``/healthz`` answers 200 only while the service takes work, the database answers
a round trip (``"database": "ok"``, else ``"unreachable"``) and every platform is
connected, else 503 with the reason in JSON.
"""

from __future__ import annotations

import asyncio
import sqlite3

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from .errors import ConfigError, StoreUnavailable, os_reason
from .service import RelayService

PING_TIMEOUT = 3.0  # seconds the database gets to answer (the Docker health check waits 4)


async def database_answers(service: RelayService) -> bool:
    """One round trip to the database within ``PING_TIMEOUT``."""
    try:
        async with asyncio.timeout(PING_TIMEOUT):
            return await service.store.ping()
    except (TimeoutError, StoreUnavailable, sqlite3.Error, ValueError):  # ValueError: a closed connection
        return False


async def readiness(service: RelayService) -> tuple[bool, dict[str, object]]:
    database_ok = await database_answers(service)
    platforms = dict(service.health)
    ready = service.accepting and database_ok and all(platforms.values())
    return ready, {
        "status": "ok" if ready else "unavailable",
        "accepting": service.accepting,
        "database": "ok" if database_ok else "unreachable",
        "platforms": platforms,
        "in_flight": service.in_flight,
    }


def ops_app(service: RelayService) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        ready, body = await readiness(service)
        return web.json_response(body, status=200 if ready else 503)

    async def livez(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=service.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", healthz)
    app.router.add_get("/livez", livez)
    app.router.add_get("/metrics", metrics)
    return app


async def start_ops(service: RelayService, host: str, port: int) -> web.AppRunner:
    """Listen on ``host:port``; a port in use or an address that is not this host's is a
    ``ConfigError`` naming the settings."""
    runner = web.AppRunner(ops_app(service), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"BOT_OPS_HOST/BOT_OPS_PORT: cannot listen on {host}:{port} ({os_reason(exc)}); "
            "choose another port, or 0 to turn /healthz and /metrics off"
        ) from None
    return runner
