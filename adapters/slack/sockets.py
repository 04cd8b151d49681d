"""Socket Mode: ``SLACK_SOCKET_CONNECTIONS`` websockets feeding one Bolt app.

Slack allows up to 10 Socket Mode connections per app and hands each event to
one of them; a retry of an event may arrive on another.  Each connection is a
slack-bolt ``AsyncSocketModeHandler`` on the same ``AsyncApp`` with its own
URL from ``apps.connections.open``, and slack_sdk reconnects each on its own.
Nothing here dedupes: the core claims the event id and the message's
channel+ts, so a redelivered event is answered once whichever connection it
came on.

A connection Slack refuses with ``too_many_websockets`` (more than 10 across
every process of the app) is closed for good, with an error naming the
setting, instead of reconnecting in a loop; the others keep serving.
"""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import ConfigError

from .api import wait_of

log = logging.getLogger(__name__)

#: attempts at ``apps.connections.open`` while it is rate limited
OPEN_TRIES = 5

REFUSED = "too_many_websockets"  # Slack's disconnect reason past 10 connections per app
TOO_MANY = (
    "slack: Slack refused a Socket Mode connection (too_many_websockets: at most 10 per app, "
    "counting every process); closed it and kept %d. Lower SLACK_SOCKET_CONNECTIONS so the sum "
    "over all processes is 10 or less."
)


class SocketPool:
    """``count`` Socket Mode connections of one app: ``open()``, ``live()``, ``disconnect()``, ``close()``."""

    def __init__(self, app: AsyncApp, app_token: str, client: AsyncWebClient, count: int) -> None:
        self.app = app
        self.app_token = app_token
        self.client = client
        self.count = count
        self.handlers: list[AsyncSocketModeHandler] = []
        self._retiring: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        """Open every connection, one after the other; a refused app token is a ``ConfigError``.
        If one cannot be opened, those already open are closed."""
        try:
            for _ in range(self.count):
                await self._open_one()
        except BaseException:  # none of the connections opened so far may stay open
            await self.close()
            raise

    async def _open_one(self) -> None:
        handler = AsyncSocketModeHandler(self.app, app_token=self.app_token, web_client=self.client)
        self.handlers.append(handler)

        async def check(message: aiohttp.WSMessage) -> None:
            if _refused(message):
                self._retire(handler)

        handler.client.on_message_listeners.append(check)
        # Ask for the websocket URL ourselves: slack_sdk's connect() would retry a bad token forever.
        handler.client.wss_uri = await self._url()
        await handler.connect_async()

    async def _url(self) -> str:
        """A fresh websocket URL; a rate limit (``apps.connections.open`` is Tier 1) waits its Retry-After."""
        for attempt in range(OPEN_TRIES):
            try:
                response = await self.client.apps_connections_open(app_token=self.app_token)
            except SlackApiError as exc:
                if not _limited(exc) or attempt == OPEN_TRIES - 1:
                    raise _refusal(exc) from exc
                log.info("slack: apps.connections.open rate limited; retrying in %.1fs", wait_of(exc))
                await asyncio.sleep(wait_of(exc))
            except (SlackClientError, aiohttp.ClientError, OSError) as exc:
                raise _refusal(exc) from exc
            else:
                return str(response["url"])
        raise AssertionError("unreachable")  # pragma: no cover

    def _retire(self, handler: AsyncSocketModeHandler) -> None:
        """Close a refused connection (in its own task: this runs inside the connection's reader)."""
        if handler not in self.handlers:
            return
        self.handlers.remove(handler)
        log.error(TOO_MANY, len(self.handlers))
        task = asyncio.create_task(handler.close_async(), name="slack-socket-retire")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def live(self) -> int:
        """How many connections are up right now."""
        states = [await handler.client.is_connected() for handler in self.handlers]
        return sum(states)

    async def disconnect(self) -> None:
        """Stop taking events on every connection (the sockets close; resources stay for ``close``).

        Reconnecting is switched off first: a socket that came back during the drain would
        be handed events that a stopping process acks and then drops.
        """
        for handler in self.handlers:
            handler.client.auto_reconnect_enabled = False
            await handler.disconnect_async()

    async def close(self) -> None:
        for handler in self.handlers:
            await handler.close_async()
        self.handlers = []
        if self._retiring:
            await asyncio.wait(set(self._retiring))


def _refused(message: aiohttp.WSMessage) -> bool:
    """Whether a websocket message is Slack's ``too_many_websockets`` disconnect."""
    if message.type != aiohttp.WSMsgType.TEXT or REFUSED not in message.data:
        return False
    try:
        data = json.loads(message.data)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("type") == "disconnect" and data.get("reason") == REFUSED


def _limited(exc: SlackApiError) -> bool:
    data = getattr(exc.response, "data", None)
    code = data.get("error") if isinstance(data, dict) else None
    return getattr(exc.response, "status_code", None) == 429 or code == "ratelimited"


def _refusal(exc: Exception) -> ConfigError:
    return ConfigError(
        f"SLACK_APP_TOKEN: cannot open Socket Mode ({_reason(exc)}); check the app-level token "
        "(xapp-, scope connections:write) and that Socket Mode is enabled for the app"
    )


def _reason(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        data = getattr(exc.response, "data", None)
        return str(data.get("error")) if isinstance(data, dict) else "Slack API error"
    return type(exc).__name__
