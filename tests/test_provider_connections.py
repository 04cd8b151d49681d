"""Many answers at once: each gets its own connection to the provider, with no pool cap.

A server that answers nothing until 120 requests are open: a client capped at 100 connections
(httpx's default, and aiohttp's under httpx-aiohttp) never gets there and every answer hangs.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from bot.providers.registry import build_provider
from bot.settings import Settings
from tests.fakes.local import serving
from tests.providers_support import collect

AT_ONCE = 120


async def test_more_answers_at_once_than_a_default_pool_holds(tmp_path):
    arrived = 0
    all_here = asyncio.Event()

    async def completions(request: web.Request) -> web.StreamResponse:
        nonlocal arrived
        arrived += 1
        if arrived == AT_ONCE:
            all_here.set()
        await all_here.wait()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunk = {"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]}
        await response.write(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode())
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    async with serving(app) as port:
        settings = Settings(
            _env_file=None, bot_database=tmp_path / "relay.db",
            openai_base_url=f"http://127.0.0.1:{port}/v1", openai_api_key="sk-test",
        )
        provider = build_provider("openai", settings)
        try:
            async with asyncio.timeout(30):
                answers = await asyncio.gather(*(collect(provider) for _ in range(AT_ONCE)))
        finally:
            await provider.aclose()
    assert arrived == AT_ONCE
    assert [a.text for a in answers] == ["ok"] * AT_ONCE
    assert all(a.error is None and a.finish == "stop" for a in answers)
