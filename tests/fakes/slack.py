"""A fake Slack on 127.0.0.1: the Web API and the Socket Mode websocket it hands out.

* ``POST /api/{method}`` (JSON or form bodies) records every call with its
  params in ``calls`` and keeps channels' messages, so ``conversations.replies``
  / ``conversations.history`` (paginated) return what the bot posted and what
  tests "said".  Streams (``chat.startStream/appendStream/stopStream``) expire
  after ``stream_lifetime`` seconds like Slack's (``message_not_in_streaming_state``).
* Rate limits: ``limit(method, count, window)`` allows ``count`` calls per
  ``window`` seconds per workspace (token), ``per="channel"`` per channel; over it
  the answer is HTTP 429 with ``Retry-After``.  ``slack_limits()`` sets Slack's
  published ones (docs.slack.dev "Rate limits"): ``chat.update`` Tier 3
  (50 a minute per workspace), ``chat.startStream``/``stopStream`` Tier 2 (20),
  ``chat.appendStream`` Tier 4 (100), ``chat.postMessage`` about one a second per
  channel (a burst of 3 in 3 s tolerated), ``reactions.add`` Tier 3 and ``reactions.remove``
  Tier 2 (the bot's own reactions are kept on the message: ``reactions(channel, ts)``).  ``early_retries`` counts calls for the same message that came
  back before their Retry-After was over (a client that does not honour it).
* Failures: ``fail(method, error, status=..., calls=N | seconds=S, retry_after=R)``
  makes ``method`` answer ``{"ok": false, "error": error}`` with HTTP ``status``
  (and ``Retry-After: R``) for its next N calls, or for S seconds from the first
  call it fails.  ``errors`` (one error body per call, HTTP 200) still works.
* Socket Mode (``slack_socket``): each ``apps.connections.open`` hands out its own
  websocket URL; ``deliver`` sends an envelope over one (the newest, a random one, or
  a given one) and waits for the ack; ``redeliver`` retries it on another; past
  ``max_connections`` a websocket is refused with ``too_many_websockets``.
* Files: ``file(name, data, mimetype)`` hosts a file and returns its Slack file object (pass it
  in ``say(..., files=[...])``); its ``url_private_download`` answers the bot token only
  (``tests.fakes.files``), and ``files.downloads`` records each download.
* ``sign`` builds the headers of a correctly signed HTTP Events API request.
* Assistant threads, agent sessions and the App Home (``slack_agent``): statuses, suggested
  prompts, sessions and published Home tabs are kept; ``app_opened`` and ``stop_session`` build
  the ``app_home_opened`` and ``agent_session_stopped`` events.
* Controls: messages keep their ``blocks`` (a ``chat.update`` without ``blocks`` keeps them, an
  empty list removes them, as on Slack); ``press`` builds the ``block_actions`` payload of a
  click on one of a message's buttons (deliver it with ``kind="interactive"``), ``react`` the
  ``reaction_added`` event and ``edit`` the ``message_changed`` event of a person's edit.
  ``response_url`` calls land as the method ``respond``.
* Message shortcuts and forms (``slack_views``): ``shortcut`` builds a ``message_action``,
  ``views.open`` keeps the form in ``views``, ``submit`` builds its ``view_submission``.
* Slack's own limits, always on (a regression against them fails a test): every
  call needs the bot token (``apps.connections.open`` the app token), else
  ``invalid_auth`` / ``not_allowed_token_type``; ``text`` of at most 40,000
  characters and ``markdown_text`` of at most 12,000 per call, else ``msg_too_long``;
  an envelope acked later than ``ACK_DEADLINE`` (3 s) fails ``deliver``, as Slack
  would have retried it (``slack_socket``).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.files import FileHost
from tests.fakes.slack_agent import AgentSurfaces
from tests.fakes.slack_socket import Connection, SocketMode
from tests.fakes.slack_views import Views

__all__ = ["BOT_USER", "BOT_ID", "TEAM", "Call", "Connection", "FakeSlack"]

BOT_USER, BOT_ID, TEAM = "UBOT", "BBOT", "T1"
BOT_TOKEN, APP_TOKEN = "xoxb-fake", "xapp-fake"
TEXT_LIMIT = 40_000  # characters of ``text``: Slack truncates or refuses past it
MARKDOWN_LIMIT = 12_000  # characters of ``markdown_text`` per call (postMessage, update, streams)


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    token: str
    at: float
    status: int = 200
    error: str | None = None  # the error code Slack answered, if any


@dataclass
class Stream:
    started: float
    open: bool = True


@dataclass
class Failure:
    """A method failing on purpose (``FakeSlack.fail``)."""

    error: str
    status: int
    calls: int | None  # calls still to fail; None: no count limit
    seconds: float | None  # how long it fails from the first failed call; None: no time limit
    retry_after: int | None
    started: float | None = None

    def take(self, now: float) -> bool:
        """Whether this call fails (and count it)."""
        if self.calls is not None and self.calls <= 0:
            return False
        if self.started is None:
            self.started = now
        elif self.seconds is not None and now - self.started >= self.seconds:
            return False
        if self.calls is not None:
            self.calls -= 1
        return True


@dataclass
class FakeSlack(SocketMode, AgentSurfaces, Views):
    names: dict[str, str] = field(default_factory=dict)
    seed: int = 0  # of ``rng``: which connection a random delivery takes
    max_connections: int = 10  # Slack's limit of Socket Mode connections per app
    stream_lifetime: float = 300.0
    #: epoch seconds of the first ``ts`` handed out (one second more for each); fixed by default,
    #: ``time.time()`` when a test needs messages that are recent (an edit window)
    ts_base: int = 1_700_000_000
    calls: list[Call] = field(default_factory=list)
    messages: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    #: method -> errors to return next, each an error code or a whole error body
    errors: dict[str, list[str | dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    rate_limited: int = 0
    early_retries: int = 0
    bot_token: str = BOT_TOKEN
    app_token: str = APP_TOKEN
    #: client addresses the Web API was called from (one per connection)
    peers: set[Any] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self.open_socket_mode(self.seed)
        self.open_agent_surfaces()
        self.open_views()
        self._limits: dict[str, tuple[int, float, str]] = {}
        self._windows: dict[tuple[str, ...], tuple[float, int]] = {}
        self._penalty: dict[tuple[str, str], float] = {}
        self._streams: dict[tuple[str, str], Stream] = {}
        self._failures: dict[str, Failure] = {}
        self.files = FileHost(token=self.bot_token)

    # -- server ----------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    async def start(self) -> FakeSlack:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/link/", self._link)
        self.files.install(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.files.base = f"http://127.0.0.1:{self.port}"
        return self

    async def stop(self) -> None:
        await self.close_connections()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- scripting -------------------------------------------------------------------------------

    def limit(self, method: str, count: int, window: float, *, per: str = "workspace") -> None:
        """Allow ``count`` calls of ``method`` per ``window`` seconds, per ``workspace`` or ``channel``."""
        if per not in ("workspace", "channel"):
            raise ValueError(f"per must be 'workspace' or 'channel', not {per!r}")
        self._limits[method] = (count, window, per)

    def unlimit(self) -> None:
        """No rate limits from now on (and forget the windows counted so far)."""
        self._limits.clear()
        self._windows.clear()

    def slack_limits(self) -> None:
        """Slack's published limits for the methods a streaming reply uses (see the module docstring)."""
        self.limit("chat.update", 50, 60.0)
        self.limit("chat.startStream", 20, 60.0)
        self.limit("chat.stopStream", 20, 60.0)
        self.limit("chat.appendStream", 100, 60.0)
        self.limit("chat.postMessage", 3, 3.0, per="channel")
        self.limit("reactions.add", 50, 60.0)  # Tier 3
        self.limit("reactions.remove", 20, 60.0)  # Tier 2

    def fail(
        self,
        method: str,
        error: str = "internal_error",
        *,
        status: int = 200,
        calls: int | None = None,
        seconds: float | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Make ``method`` fail with ``error`` (HTTP ``status``, ``Retry-After`` if given) for its
        next ``calls`` calls, or for ``seconds`` from the first call it fails; one call by default."""
        if calls is None and seconds is None:
            calls = 1
        self._failures[method] = Failure(error, status, calls, seconds, retry_after)

    def failed(self, method: str) -> list[Call]:
        """Calls of ``method`` that were answered with an error."""
        return [c for c in self.calls if c.method == method and (c.status != 200 or c.error is not None)]

    def next_ts(self) -> str:
        n = next(self._ts)
        return f"{self.ts_base + n}.{n:06d}"

    def say(
        self, text: str, *, channel: str = "C1", user: str = "U1", thread_ts: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        """A person posts ``text``: it is stored, and its ``message`` event returned."""
        ts = self.next_ts()
        message: dict[str, Any] = {"type": "message", "user": user, "text": text, "ts": ts, **extra}
        if thread_ts:
            message["thread_ts"] = thread_ts
        self._store(channel, message)
        kind = "im" if channel.startswith("D") else "channel"
        return {**message, "channel": channel, "channel_type": kind, "team": TEAM, "event_ts": ts}

    def file(
        self, name: str, data: bytes, mimetype: str = "text/plain", *, status: int = 200, delay: float = 0.0
    ) -> dict[str, Any]:
        """A file a person shares (pass it in ``say(..., files=[...])``): served at its
        ``url_private_download`` to the bot token only; ``status``/``delay`` make the download fail."""
        fid, url = self.files.add(name, data, mimetype, status=status, delay=delay)
        return {
            "id": fid, "name": name, "title": name, "mimetype": mimetype, "filetype": name.rsplit(".", 1)[-1],
            "size": len(data), "mode": "hosted", "url_private": url, "url_private_download": url + "?download=1",
        }

    def callback(self, event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
        """The ``event_callback`` body Slack sends for ``event``."""
        return {
            "type": "event_callback",
            "token": "verification-token",
            "team_id": TEAM,
            "api_app_id": "A1",
            "event_id": event_id or f"Ev{next(self._ids):06d}",
            "event_time": int(time.time()),
            "event": event,
            "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
        }

    def buttons(self, channel: str, ts: str) -> list[str]:
        """The action ids of the buttons a message shows now."""
        message = self.messages[channel][ts]
        return [
            e["action_id"] for b in message.get("blocks") or [] if b.get("type") == "actions" for e in b["elements"]
        ]

    def streaming(self, channel: str, ts: str) -> bool:
        """Whether the message at ``ts`` is a native stream still open."""
        stream = self._streams.get((channel, ts))
        return stream is not None and stream.open and time.monotonic() - stream.started <= self.stream_lifetime

    def press(self, channel: str, ts: str, action_id: str, *, user: str = "U1") -> dict[str, Any]:
        """The ``block_actions`` payload of ``user`` clicking ``action_id`` on the message at ``ts``."""
        message = self.messages[channel][ts]
        element = next(
            e for b in message.get("blocks") or [] if b.get("type") == "actions" for e in b["elements"]
            if e["action_id"] == action_id
        )
        container = {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False}
        return {
            "type": "block_actions",
            "user": {"id": user, "username": self.names.get(user, user).lower(), "name": user.lower(), "team_id": TEAM},
            "api_app_id": "A1",
            "token": "verification-token",
            "container": container,
            "trigger_id": f"trig-{next(self._ids)}",
            "team": {"id": TEAM, "domain": "test"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": "general"},
            "message": dict(message),
            "state": {"values": {}},
            "response_url": f"{self.api_url}respond",
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "relay_controls",
                    "text": element["text"],
                    "value": element["value"],
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }

    def react(self, channel: str, ts: str, reaction: str = "octagonal_sign", *, user: str = "U1") -> dict[str, Any]:
        """The ``reaction_added`` event of ``user`` adding ``reaction`` to the message at ``ts``."""
        item_user = self.messages[channel].get(ts, {}).get("user")
        return {
            "type": "reaction_added",
            "user": user,
            "reaction": reaction,
            "item_user": item_user,
            "item": {"type": "message", "channel": channel, "ts": ts},
            "event_ts": self.next_ts(),
        }

    def edit(self, channel: str, ts: str, text: str) -> dict[str, Any]:
        """A person edits their message at ``ts``: stored, and its ``message_changed`` event returned."""
        message = self.messages[channel][ts]
        previous = dict(message)
        message["text"] = text
        message["edited"] = {"user": message.get("user"), "ts": self.next_ts()}
        kind = "im" if channel.startswith("D") else "channel"
        return {
            "type": "message",
            "subtype": "message_changed",
            "hidden": True,
            "channel": channel,
            "channel_type": kind,
            "ts": message["edited"]["ts"],
            "event_ts": message["edited"]["ts"],
            "message": dict(message),
            "previous_message": previous,
        }

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """Messages of a thread, parent first."""
        msgs = [
            m
            for m in self.messages[channel].values()
            if m.get("thread_ts") == thread_ts or m["ts"] == thread_ts
        ]
        return sorted(msgs, key=lambda m: float(m["ts"]))

    def bot_messages(self, channel: str) -> list[dict[str, Any]]:
        return sorted(
            (m for m in self.messages[channel].values() if m.get("bot_id") == BOT_ID),
            key=lambda m: float(m["ts"]),
        )

    def called(self, method: str) -> list[Call]:
        """Successful calls of ``method``."""
        return [c for c in self.calls if c.method == method and c.status == 200 and c.error is None]

    # -- HTTP mode -------------------------------------------------------------------------------

    @staticmethod
    def sign(body: str, secret: str, timestamp: int | None = None) -> dict[str, str]:
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
        return {
            "X-Slack-Request-Timestamp": stamp,
            "X-Slack-Signature": f"v0={digest}",
            "Content-Type": "application/json",
        }

    # -- the Web API -----------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = dict(request.query)
        raw = await request.text()
        if raw:
            if request.content_type == "application/json":
                params.update(json.loads(raw))
            else:
                params.update(dict(parse_qsl(raw, keep_blank_values=True)))
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if request.transport is not None:
            self.peers.add(request.transport.get_extra_info("peername"))
        call = Call(method, params, token, time.monotonic())
        self.calls.append(call)
        refused = self._refusal(method, token, params)
        if refused is not None:
            call.error = refused
            return web.json_response({"ok": False, "error": refused})
        limited = self._over_limit(method, token, params)
        if limited:
            call.status = 429
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers=limited)
        failure = self._failures.get(method)
        if failure is not None and failure.take(call.at):
            call.status, call.error = failure.status, failure.error
            headers: dict[str, str] = {}
            if failure.retry_after is not None:
                headers["Retry-After"] = str(failure.retry_after)
                self._penalty[_target(params)] = call.at + failure.retry_after - 0.05
            if failure.status == 429:
                self.rate_limited += 1
            body = {"ok": False, "error": failure.error}
            return web.json_response(body, status=failure.status, headers=headers)
        if self.errors.get(method):
            error = self.errors[method].pop(0)
            data = {"ok": False, **(error if isinstance(error, dict) else {"error": error})}
        else:
            handler = getattr(self, "_" + method.replace(".", "_"), None)
            data = handler(params) if handler else {"ok": True}
        call.error = None if data.get("ok") else str(data.get("error"))
        return web.json_response(data)

    def _refusal(self, method: str, token: str, params: dict[str, Any]) -> str | None:
        """Slack's own checks: the right token for the method, the length of the text."""
        wanted = self.app_token if method == "apps.connections.open" else self.bot_token
        if method != "respond" and token != wanted:  # a response_url carries its own authority
            return "not_allowed_token_type" if token in (self.bot_token, self.app_token) else "invalid_auth"
        text, markdown = params.get("text"), params.get("markdown_text")
        if isinstance(text, str) and len(text) > TEXT_LIMIT:
            return "msg_too_long"
        if isinstance(markdown, str) and len(markdown) > MARKDOWN_LIMIT:
            return "msg_too_long"
        return None

    def _over_limit(self, method: str, token: str, params: dict[str, Any]) -> dict[str, str] | None:
        now = time.monotonic()
        target = _target(params)
        if now < self._penalty.get(target, 0.0):
            self.early_retries += 1
        if method not in self._limits:
            return None
        count, window, per = self._limits[method]
        key = (method, token, str(params.get("channel"))) if per == "channel" else (method, token)
        start, used = self._windows.get(key, (now, 0))
        if now - start >= window:
            start, used = now, 0
        if used >= count:
            wait = max(1, math.ceil(start + window - now))
            self._penalty[target] = now + wait - 0.05
            self.rate_limited += 1
            return {"Retry-After": str(wait)}
        self._windows[key] = (start, used + 1)
        return None

    def _store(self, channel: str, message: dict[str, Any]) -> None:
        self.messages[channel][message["ts"]] = message

    def _bot_message(self, params: dict[str, Any], text: str) -> dict[str, Any]:
        ts = self.next_ts()
        message: dict[str, Any] = {
            "type": "message",
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "text": text,
            "ts": ts,
        }
        if params.get("thread_ts"):
            message["thread_ts"] = params["thread_ts"]
        if params.get("metadata"):
            message["metadata"] = _json(params["metadata"])
        if params.get("blocks"):
            message["blocks"] = _json(params["blocks"])
        self._store(params["channel"], message)
        return message

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
            "team_id": TEAM,
            "user": "relaybot",
            "team": "Test",
        }

    def _apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": self.next_link()}

    def _chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._bot_message(params, params.get("text") or params.get("markdown_text") or "")
        return {"ok": True, "channel": params["channel"], "ts": message["ts"], "message": message}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self.messages[params["channel"]].get(params["ts"])
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        message["text"] = params.get("text") or params.get("markdown_text") or ""
        if params.get("metadata"):
            message["metadata"] = _json(params["metadata"])
        if "blocks" in params:  # as on Slack: blocks left out are kept, an empty list removes them
            message["blocks"] = _json(params["blocks"])
            if not message["blocks"]:
                message.pop("blocks")
        self._streams.pop((params["channel"], params["ts"]), None)
        return {"ok": True, "channel": params["channel"], "ts": params["ts"], "text": message["text"]}

    def _chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.messages[params["channel"]].pop(params["ts"], None) is None:
            return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": params["channel"], "ts": params["ts"]}

    def _reactions_add(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._react(params, add=True)

    def _reactions_remove(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._react(params, add=False)

    def _react(self, params: dict[str, Any], *, add: bool) -> dict[str, Any]:
        """The bot's own reaction on a message, kept in its ``reactions[]`` as Slack shows them."""
        message = self.messages[params["channel"]].get(params["timestamp"])
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        users = {r["name"]: r["users"] for r in message.get("reactions", [])}
        mine = users.setdefault(params["name"], [])
        if add == (BOT_USER in mine):
            return {"ok": False, "error": "already_reacted" if add else "no_reaction"}
        if add:
            mine.append(BOT_USER)
        else:
            mine.remove(BOT_USER)
        message["reactions"] = [{"name": n, "users": u, "count": len(u)} for n, u in users.items() if u]
        return {"ok": True}

    def reactions(self, channel: str, ts: str) -> dict[str, list[str]]:
        """Who reacted what to a message now: ``{"eyes": ["UBOT"]}``."""
        message = self.messages[channel].get(ts) or {}
        return {r["name"]: list(r["users"]) for r in message.get("reactions", []) if r["users"]}

    def _chat_startStream(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("thread_ts"):
            return {"ok": False, "error": "invalid_arguments"}
        if not params["channel"].startswith("D") and not params.get("recipient_user_id"):
            return {"ok": False, "error": "missing_recipient_user_id"}
        message = self._bot_message(params, params.get("markdown_text") or "")
        self._streams[(params["channel"], message["ts"])] = Stream(time.monotonic())
        return {"ok": True, "channel": params["channel"], "ts": message["ts"]}

    def _stream(self, params: dict[str, Any]) -> dict[str, Any] | None:
        stream = self._streams.get((params["channel"], params["ts"]))
        if stream is None or not stream.open or time.monotonic() - stream.started > self.stream_lifetime:
            return None
        return self.messages[params["channel"]][params["ts"]]

    def _chat_appendStream(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._stream(params)
        if message is None:
            return {"ok": False, "error": "message_not_in_streaming_state"}
        message["text"] += params.get("markdown_text") or ""
        return {"ok": True, "channel": params["channel"], "ts": params["ts"]}

    def _chat_stopStream(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self._stream(params)
        if message is None:
            return {"ok": False, "error": "message_not_in_streaming_state"}
        message["text"] += params.get("markdown_text") or ""
        if params.get("metadata"):
            message["metadata"] = _json(params["metadata"])
        if params.get("blocks"):
            message["blocks"] = _json(params["blocks"])
        self._streams[(params["channel"], params["ts"])].open = False
        return {"ok": True, "channel": params["channel"], "ts": params["ts"]}

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        return _page(_window(self.thread(params["channel"], params["ts"]), params), params)

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        msgs = [m for m in self.messages[params["channel"]].values() if m.get("thread_ts") in (None, m["ts"])]
        return _page(sorted(_window(msgs, params), key=lambda m: -float(m["ts"])), params)

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        uid = params["user"]
        name = self.names.get(uid, uid.lower())
        return {"ok": True, "user": {"id": uid, "name": name.lower(), "profile": {"display_name": name}}}


def _target(params: dict[str, Any]) -> tuple[str, str]:
    """The message a call is about (for counting retries that come back before their Retry-After)."""
    return str(params.get("channel")), str(params.get("ts") or params.get("thread_ts") or "")


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _window(msgs: list[dict[str, Any]], params: dict[str, Any]) -> list[dict[str, Any]]:
    """``oldest`` / ``latest`` filters (inclusive)."""
    if params.get("latest"):
        msgs = [m for m in msgs if float(m["ts"]) <= float(params["latest"])]
    if params.get("oldest"):
        msgs = [m for m in msgs if float(m["ts"]) >= float(params["oldest"])]
    return msgs


def _page(msgs: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    start = int(params.get("cursor") or 0)
    size = int(params.get("limit") or 100)
    page = msgs[start : start + size]
    more = start + size < len(msgs)
    return {
        "ok": True,
        "messages": [dict(m) for m in page],
        "has_more": more,
        "response_metadata": {"next_cursor": str(start + size) if more else ""},
    }
