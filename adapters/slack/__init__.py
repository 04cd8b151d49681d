"""Slack front end: mentions, thread follow-ups, DMs, ``/ask`` and AI-app threads.

``run`` is what ``bot.serve`` calls: connect (Socket Mode when
``SLACK_APP_TOKEN`` is set, else the HTTP Events API), answer until ``stop``
is set, let replies in flight finish, disconnect.
"""

from __future__ import annotations

import asyncio

from bot.service import RelayService
from bot.settings import Settings

from .app import SlackBot

__all__ = ["SlackBot", "run"]

SHUTDOWN_GRACE = 30.0


async def run(service: RelayService, settings: Settings, stop: asyncio.Event) -> None:
    bot = SlackBot(service, settings)
    await bot.start()
    try:
        await stop.wait()
    finally:
        await bot.stop(SHUTDOWN_GRACE)
