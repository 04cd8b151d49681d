"""``serve`` starts the Discord adapter when DISCORD_TOKEN is set, and stops it on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket

import discord.gateway
import discord.http
import httpx

from bot.serve import serve
from tests.discord_harness import wait_for
from tests.fakes.discord import CHANNEL_ID, FakeDiscord


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_serve_runs_discord_until_sigterm(make_settings, fake_llm):
    fake_llm.reply("Served.")
    fake = FakeDiscord()
    await fake.start()
    settings = make_settings(
        discord_token="fake.token.value",
        discord_api_url=fake.api_url,
        discord_gateway_url=fake.gateway_url,
        bot_ops_port=free_port(),
    )
    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    task = asyncio.create_task(serve(settings))
    try:
        await wait_for(lambda: fake.ready.is_set() or task.done(), what="the gateway connection")
        health = f"http://127.0.0.1:{settings.bot_ops_port}/healthz"
        async with httpx.AsyncClient() as http:
            for _ in range(200):  # /healthz turns ready once on_ready has run
                response = await http.get(health)
                if response.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert response.status_code == 200
            assert response.json()["platforms"] == {"discord": True}
        await fake.say("are you served?", mention_bot=True)
        await wait_for(
            lambda: [m["content"] for m in fake.bot_messages(CHANNEL_ID)] == ["Served."], what="answer"
        )
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, timeout=20) == 0
    finally:
        if not task.done():
            task.cancel()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = base, gateway
        await fake.stop()
