"""Slack front end: mentions, thread follow-ups, DMs, ``/ask`` and AI-app threads.

``run`` is what ``bot.serve`` calls: connect (Socket Mode when
``SLACK_APP_TOKEN`` is set, else the HTTP Events API) after the core settled
what a restart left open, answer until ``stop`` is set, stop taking events, let
replies in flight finish (``service.drain``), disconnect.
"""

from __future__ import annotations

import asyncio

from bot.incoming import Core
from bot.settings import Settings

from .app import SlackBot

__all__ = ["SlackBot", "run"]


async def run(service: Core, settings: Settings, stop: asyncio.Event) -> None:
    bot = SlackBot(service, settings, host=settings.slack_host)
    await bot.start()
    try:
        await stop.wait()
    finally:
        await bot.stop()
