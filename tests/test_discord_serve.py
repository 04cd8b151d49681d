"""``serve`` starts the Discord adapter when DISCORD_TOKEN is set, and stops it on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal

import discord.gateway
import discord.http

from bot.serve import serve
from tests.discord_harness import wait_for
from tests.fakes.discord import CHANNEL_ID, FakeDiscord


async def test_serve_runs_discord_until_sigterm(make_settings, fake_llm):
    fake_llm.reply("Served.")
    fake = FakeDiscord()
    await fake.start()
    settings = make_settings(
        discord_token="fake.token.value",
        discord_api_url=fake.api_url,
        discord_gateway_url=fake.gateway_url,
        bot_ops_port=0,
    )
    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    task = asyncio.create_task(serve(settings))
    try:
        await wait_for(lambda: fake.ready.is_set() or task.done(), what="the gateway connection")
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
