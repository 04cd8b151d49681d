"""The Bolt ``AsyncApp`` and its listeners, and the connection that feeds it.

Listeners only hand over to ``SlackRelay`` (Bolt acks events itself before
they run; ``/ask``, the message shortcut and its form ack first thing).
``SlackBot`` owns the connection: Socket Mode when an app token is set (``SLACK_SOCKET_CONNECTIONS`` websockets,
``sockets.SocketPool``), else the HTTP Events API on ``SLACK_PORT`` (all
interfaces) at ``/slack/events`` with Bolt's signature check.  Every Web API
call goes through one ``aiohttp`` session, opened by ``start()`` and closed by
``stop()``, so its connections are kept (slack_sdk would otherwise open a new
session, and connection, for each call).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.async_app import AsyncApp, AsyncAssistant
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import ConfigError, PlatformError, os_reason
from bot.incoming import Core
from bot.settings import Settings

from .api import SlackApi
from .http_guard import guard
from .relay import SlackRelay
from .shortcuts import CALLBACK, VIEW
from .sockets import SocketPool

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_EVERY = 5.0


class _NoTokenNotice(logging.Filter):
    """Bolt warns that SLACK_BOT_TOKEN (read from the environment) is unused next to ``client``: it is by design."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("As you gave `client` as well")


def build_app(relay: SlackRelay, client: AsyncWebClient, signing_secret: str | None) -> AsyncApp:
    bolt_log = logging.getLogger("slack_bolt.llama_relay")
    if not any(isinstance(f, _NoTokenNotice) for f in bolt_log.filters):
        bolt_log.addFilter(_NoTokenNotice())
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret or "",
        request_verification_enabled=True,
        name="llama-relay",
        logger=bolt_log,
    )
    assistant = AsyncAssistant()

    @assistant.thread_started
    async def thread_started(payload: dict[str, Any]) -> None:
        await relay.on_thread_started(payload)

    @assistant.user_message
    async def user_message(body: dict[str, Any], payload: dict[str, Any]) -> None:
        await relay.on_message(body, payload, assistant=True)

    app.use(assistant)

    @app.event("app_mention")
    async def on_mention(body: dict[str, Any], event: dict[str, Any]) -> None:
        await relay.on_message(body, event)

    @app.event("message")
    async def on_message(body: dict[str, Any], event: dict[str, Any]) -> None:
        await relay.on_message(body, event)

    @app.action(re.compile(r"^relay_"))
    async def on_control(ack: Any, body: dict[str, Any], respond: Any) -> None:
        await ack()  # first: Slack's 3 s are for the ack; the press is handled after it
        relay.controls.on_action(body, respond)

    @app.event("reaction_added")
    async def on_reaction(event: dict[str, Any]) -> None:
        relay.controls.on_reaction(event)

    @app.event("agent_session_stopped")  # Slack's stop button on an agent session
    async def on_session_stopped(event: dict[str, Any]) -> None:
        relay.controls.on_session_stopped(event)

    @app.event("app_home_opened")  # the Home tab, or (agent view) the DM opened
    async def on_home_opened(body: dict[str, Any], event: dict[str, Any]) -> None:
        await relay.on_home_opened(body, event)

    @app.command("/relay")
    async def on_relay(ack: Any, command: dict[str, Any], respond: Any) -> None:
        await ack()
        await respond(text=await relay.commands.relay_command(command), response_type="ephemeral")

    @app.shortcut(CALLBACK)
    async def on_shortcut(ack: Any, body: dict[str, Any]) -> None:
        await ack()  # then the form, while the trigger id is valid (3 s)
        await relay.shortcut.open(body)

    @app.view(VIEW)
    async def on_question(ack: Any, view: dict[str, Any]) -> None:
        errors = relay.shortcut.errors(view)
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()  # closes the form; the answer comes in the message's thread
        relay.shortcut.submit(view)

    @app.command("/ask")
    async def on_ask(ack: Any, command: dict[str, Any], respond: Any) -> None:
        if not str(command.get("text") or "").strip():
            await ack("Ask me something: `/ask how do I undo a git commit?`")
            return
        await ack()
        await relay.commands.ask(command, respond)

    return app


class SlackBot:
    """A connected bot: ``start()``, answer, ``stop()``."""

    def __init__(self, service: Core, settings: Settings, *, host: str = "0.0.0.0") -> None:
        token = settings.slack_bot_token
        if token is None:
            raise ConfigError("SLACK_BOT_TOKEN is not set")
        self.settings = settings
        self.service = service
        self.client = AsyncWebClient(token=token.get_secret_value(), base_url=settings.slack_api_url)
        self.api = SlackApi(self.client)
        self.relay = SlackRelay(service, settings, self.api)
        secret = settings.slack_signing_secret
        if settings.slack_app_token is None and secret is None:
            raise ConfigError(
                "SLACK_SIGNING_SECRET is required for the HTTP Events API (or set SLACK_APP_TOKEN for Socket Mode)"
            )
        self.app = build_app(self.relay, self.client, secret.get_secret_value() if secret else None)
        self._sockets: SocketPool | None = None
        self._runner: web.AppRunner | None = None
        self._watch: asyncio.Task[None] | None = None
        self.connected = False
        self.host = host
        self.port = settings.slack_port

    @property
    def mode(self) -> str:
        return "socket" if self.settings.slack_app_token is not None else "http"

    async def start(self) -> None:
        if self.client.session is None or self.client.session.closed:
            self.client.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.client.timeout))
        try:
            await self._start()
        except BaseException:
            await self._close_session()
            raise

    async def _close_session(self) -> None:
        if self.client.session is not None:
            await self.client.session.close()
            self.client.session = None

    async def _start(self) -> None:
        try:
            await self.relay.identify()
        except PlatformError as exc:
            raise ConfigError(
                f"SLACK_BOT_TOKEN: auth.test failed ({exc}); check the token and SLACK_API_URL"
            ) from exc
        recovered = await self.service.recover(self.relay)
        if recovered:
            log.info("slack: settled %d requests left open by a restart", recovered)
        if self.settings.slack_app_token is not None:
            await self._connect_sockets(self.settings.slack_app_token.get_secret_value())
            return
        web_app = self.app.web_app(path=EVENTS_PATH, port=self.port)
        secret = self.settings.slack_signing_secret
        if secret is not None:  # always set in HTTP mode (checked in __init__)
            web_app.middlewares.append(guard(secret.get_secret_value()))
        self._runner = web.AppRunner(web_app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise ConfigError(
                f"SLACK_HOST/SLACK_PORT: cannot listen on {self.host}:{self.port} ({os_reason(exc)})"
            ) from None
        if self._runner.addresses:  # SLACK_PORT=0: the port the system chose
            self.port = self._runner.addresses[0][1]
        self.service.report_health("slack", True)
        log.info("slack: Events API on http://%s:%d%s", self.host, self.port, EVENTS_PATH)

    async def _connect_sockets(self, app_token: str) -> None:
        count = self.settings.slack_socket_connections
        self._sockets = SocketPool(self.app, app_token, self.client, count)
        try:
            await self._sockets.open()
        except ConfigError:
            self._sockets = None
            raise
        self.connected = True
        self.service.report_health("slack", True)
        self._watch = asyncio.create_task(self._watch_sockets(self._sockets), name="slack-health")
        log.info("slack: connected in Socket Mode (%d connection%s)", count, "" if count == 1 else "s")

    async def _watch_sockets(self, sockets: SocketPool) -> None:
        """Keep the reported health current (up while any connection is) as slack_sdk reconnects."""
        live = sockets.count
        while True:
            await asyncio.sleep(HEALTH_EVERY)
            now = await sockets.live()
            if now != live:
                log.warning("slack: %d of %d Socket Mode connection(s) up", now, sockets.count)
            live = now
            self.connected = now > 0
            self.service.report_health("slack", self.connected)

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking events, let replies in flight finish (``service.drain``), close the connection."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self.service.report_health("slack", False)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._sockets is not None:
            await self._sockets.disconnect()
        await self.service.drain(grace)
        if self._sockets is not None:
            await self._sockets.close()
            self._sockets = None
        await self._close_session()

