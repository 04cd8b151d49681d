"""A fake Discord on 127.0.0.1: REST under ``/api/v10`` and the gateway websocket.

The real discord.py client talks to it over real sockets once
``discord.http.Route.BASE`` and ``DiscordWebSocket.DEFAULT_GATEWAY`` point
here (the adapter does that from DISCORD_API_URL / DISCORD_GATEWAY_URL).

* REST: every call is kept in ``calls`` with its JSON body and time; answers
  carry ``Content-Type: application/json`` exactly (discord.py compares the
  whole header).  Messages live per channel, so history, fetches, edits and
  reply references behave like Discord's; sent and edited messages are echoed
  on the gateway as MESSAGE_CREATE / MESSAGE_UPDATE, as Discord does.
* Faults: ``rate_limit(...)`` answers 429 with a ``Via`` header and a JSON
  ``retry_after`` (so discord.py retries); ``fail(...)`` answers an error code.
* Limits (off by default): ``FakeDiscord(write_limit=(5, 5.0))`` allows 5
  message creates/edits per 5 s per channel, with Discord's ``X-RateLimit-*``
  headers on every write and a proper 429 (``Via``, ``retry_after``) past it.
* Discord's own limits, always on (a regression against them fails a test): the bot
  token (``Authorization: Bot <token>``, else 401), ``content`` of at most 2,000
  characters on every create and edit (else 400 / 50035), and an interaction's
  first response within 3 s of its dispatch (else 404 / 10062 "Unknown
  interaction"); ``interaction_deadline`` changes that one for a test that needs to.
* Attachments: ``attach(name, data, content_type)`` hosts a file on the CDN of this fake
  (``tests.fakes.files``) and returns its attachment object; ``say(..., attachments=[...])``.
* Gateway (``discord_gateway``): a session per shard; READY and GUILD_CREATE for
  the shard's guilds, then whatever the test injects (``say``, ``interact``), each
  event on the session of its guild's shard (DMs on shard 0), as Discord does.
  ``add_guild`` adds a guild (with one text channel) on a chosen shard.
* Interactions: ``interact`` uses a slash command, ``use_menu`` a message context-menu command
  (``data.type`` 3, ``target_id``, ``resolved.messages``), each optionally through the user's
  own install of the app (``user_install``: ``authorizing_integration_owners`` names the user);
  such an interaction takes at most 5 followups (the 6th: 400 / 40094, as Discord answers);
  ``FOREIGN_CHANNEL_ID`` (a guild the bot is not in) and ``PRIVATE_CHANNEL_ID`` (a DM between
  two people) answer the bot's REST calls with 403, as Discord does.
* Controls: messages keep their ``components``; ``press`` clicks one of a message's buttons
  (a component INTERACTION_CREATE; ephemeral followups land in ``interaction_messages``),
  ``react`` adds a reaction (MESSAGE_REACTION_ADD), ``edit`` edits a person's message
  (MESSAGE_UPDATE).
  ``reject_privileged`` closes with 4014 when the message-content intent is asked for.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.discord_gateway import Gateway, Session
from tests.fakes.files import FileHost
from tests.fakes.discord_payloads import (
    ALICE,
    APP_ID,
    BOB,
    BOT_ID,
    CHANNEL_ID,
    DM_CHANNEL_ID,
    FOREIGN_CHANNEL_ID,
    FOREIGN_GUILD_ID,
    GUILD_ID,
    MESSAGE_CONTENT,
    PRIVATE_CHANNEL_ID,
    OTHER_BOT,
    OTHER_CHANNEL_ID,
    ROLE_ID,
    USERS,
    application,
    bot_user,
    component_interaction,
    dm_channel,
    interaction,
    message,
    message_command,
    now_iso,
    placed,
    reaction_add,
    shard_of,
    snowflake,
    text_channel,
    thread_channel,
)

__all__ = [
    "ALICE",
    "APP_ID",
    "BOB",
    "BOT_ID",
    "CHANNEL_ID",
    "DM_CHANNEL_ID",
    "FOREIGN_CHANNEL_ID",
    "GUILD_ID",
    "MESSAGE_CONTENT",
    "OTHER_BOT",
    "OTHER_CHANNEL_ID",
    "PRIVATE_CHANNEL_ID",
    "ROLE_ID",
    "USERS",
    "Call",
    "FakeDiscord",
    "Session",
    "shard_of",
]

JSON = "application/json"
TOKEN = "fake.token.value"
CONTENT_LIMIT = 2000  # characters of ``content``, on create and on edit (bots have no 4,000)
INTERACTION_DEADLINE = 3.0  # seconds to the first response of an interaction
UNAUTHORIZED = {"message": "401: Unauthorized", "code": 0}
UNKNOWN_INTERACTION = {"message": "Unknown interaction", "code": 10062}
#: Followups Discord accepts to an interaction used through a user's install alone (its docs,
#: "Create Followup Message"), and its answer to one more (JSON error code 40094).
USER_INSTALL_FOLLOWUPS = 5
TOO_MANY_FOLLOWUPS = {
    "code": 40094, "message": "This interaction has hit the maximum number of follow up messages"
}


def too_long() -> dict[str, Any]:
    """Discord's answer to a ``content`` over the limit."""
    error = {"code": "BASE_TYPE_MAX_LENGTH", "message": f"Must be {CONTENT_LIMIT} or fewer in length."}
    return {"code": 50035, "message": "Invalid Form Body", "errors": {"content": {"_errors": [error]}}}


@dataclass
class Call:
    method: str
    path: str  # without the /api/v10 prefix
    body: Any
    at: float
    status: int = 200
    query: dict[str, str] = field(default_factory=dict)
    message_id: int | None = None  # the message a successful create/edit wrote


@dataclass
class Rule:
    method: str
    pattern: re.Pattern[str]
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    times: int


_WRITE = re.compile(r"/channels/(\d+)/messages(?:/\d+)?")


class FakeDiscord(Gateway):
    def __init__(
        self,
        *,
        reject_privileged: bool = False,
        write_limit: tuple[int, float] | None = None,
        max_concurrency: int = 1,
        recommended_shards: int = 1,
        token: str = TOKEN,
        interaction_deadline: float = INTERACTION_DEADLINE,
    ) -> None:
        self.token = token
        self.interaction_deadline = interaction_deadline
        self._interactions: dict[str, float] = {}  # interaction id -> when it was dispatched
        #: tokens of interactions used through a user's install alone -> followups posted so far
        self._capped_followups: dict[str, int] = {}
        self.reject_privileged = reject_privileged
        self.max_concurrency = max_concurrency
        self.recommended_shards = recommended_shards
        #: (writes, seconds) per channel for message creates and edits; None: unlimited
        self.write_limit = write_limit
        self._windows: dict[int, tuple[float, int]] = {}  # channel -> (window start, writes)
        self.limited = 0  # 429s answered by ``write_limit``
        self.calls: list[Call] = []
        self.rules: list[Rule] = []
        #: headers for successful message writes, e.g. an exhausted bucket (``tight_bucket``)
        self.write_headers: dict[str, str] = {}
        self.messages: dict[int, dict[int, dict[str, Any]]] = {}  # channel -> id -> payload
        self.channels: dict[int, dict[str, Any]] = {}
        self.identifies: list[dict[str, Any]] = []
        self.closed_4014 = 0
        self.ready = asyncio.Event()
        self.guilds = [GUILD_ID]
        self.commands: list[dict[str, Any]] = []
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.files = FileHost()  # attachments' CDN (no token)
        self.roles = {ALICE: [ROLE_ID], BOB: []}
        for cid, name in ((CHANNEL_ID, "general"), (OTHER_CHANNEL_ID, "random")):
            self.channels[cid] = text_channel(cid, name)
        self.channels[DM_CHANNEL_ID] = dm_channel(DM_CHANNEL_ID, ALICE)
        # where only a user-installed app is used: the bot cannot read or write there (403)
        self.channels[FOREIGN_CHANNEL_ID] = text_channel(FOREIGN_CHANNEL_ID, "elsewhere", FOREIGN_GUILD_ID)
        self.channels[PRIVATE_CHANNEL_ID] = dm_channel(PRIVATE_CHANNEL_ID, BOB)
        self.closed = {FOREIGN_CHANNEL_ID, PRIVATE_CHANNEL_ID}
        self.open_gateway()

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/", self._gateway)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        self.files.install(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.files.base = f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        for ws in list(self.sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- scripting ------------------------------------------------------------------------

    def tight_bucket(self, reset_after: float) -> None:
        """Every message write empties its bucket: discord.py (and the bot) must wait ``reset_after``."""
        self.write_headers = {
            "X-RateLimit-Limit": "1",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset-After": str(reset_after),
            "X-RateLimit-Bucket": "tightbucket",
        }

    def rate_limit(self, method: str, pattern: str, *, retry_after: float = 0.3, times: int = 1) -> None:
        """The next ``times`` matching calls get a 429 that discord.py honours and retries."""
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
        headers = {
            "Via": "1.1 google",
            "Retry-After": str(max(1, round(retry_after))),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset-After": str(retry_after),
            "X-RateLimit-Bucket": "fakebucket",
            "X-RateLimit-Scope": "user",
        }
        self.rules.append(Rule(method, re.compile(pattern), 429, body, headers, times))

    def fail(
        self, method: str, pattern: str, status: int, code: int, message: str = "error", times: int = 1
    ) -> None:
        self.rules.append(
            Rule(method, re.compile(pattern), status, {"code": code, "message": message}, {}, times)
        )

    async def say(
        self,
        content: str,
        *,
        author: int = ALICE,
        channel: int = CHANNEL_ID,
        reply_to: int | None = None,
        mention_bot: bool = False,
        dm: bool = False,
        dispatch: bool = True,
        attachments: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A user posts a message: stored, then dispatched as MESSAGE_CREATE.

        ``dispatch=False`` keeps it off the gateway (posted while the bot was offline):
        the bot can only learn of it over REST.
        """
        if mention_bot:
            content = f"<@{BOT_ID}> {content}"
        if dm:
            channel = DM_CHANNEL_ID
        msg = self._message(channel, author, content, reply_to=reply_to)
        msg["attachments"] = list(attachments or [])
        if dispatch:
            await self.dispatch("MESSAGE_CREATE", msg)
        return msg

    def attach(
        self, name: str, data: bytes, content_type: str = "text/plain", *, status: int = 200, delay: float = 0.0
    ) -> dict[str, Any]:
        """A file on this fake's CDN, as a message's attachment object (``say(..., attachments=[...])``)."""
        fid, url = self.files.add(name, data, content_type, status=status, delay=delay)
        return {
            "id": str(snowflake()), "filename": name, "size": len(data), "content_type": content_type,
            "url": url, "proxy_url": url,
        }

    async def interact(
        self, name: str, options: dict[str, str], *, author: int = ALICE, channel: int = CHANNEL_ID,
        user_install: bool = False,
    ) -> dict[str, Any]:
        """``author`` uses ``/name``; ``user_install``: through their own install of the app."""
        payload = interaction(name, options, self.channels[channel], author, self.roles.get(author))
        placed(payload, self.channels[channel], author, user_install=user_install)
        self._dispatched(payload)
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    async def use_menu(
        self, name: str, msg: dict[str, Any], *, author: int = ALICE, user_install: bool = False
    ) -> dict[str, Any]:
        """``author`` uses the message command ``name`` (Apps > name) on the message ``msg``."""
        channel = self.channels[int(msg["channel_id"])]
        payload = message_command(name, msg, channel, author, self.roles.get(author), user_install=user_install)
        self._dispatched(payload)
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    def _dispatched(self, payload: dict[str, Any]) -> None:
        """Start an interaction's clocks and counts: its 3 s to the first response and, used through
        the user's install alone, its followup allowance."""
        self._interactions[str(payload["id"])] = time.monotonic()
        if set(payload.get("authorizing_integration_owners", {})) == {"1"}:
            self._capped_followups[payload["token"]] = 0

    async def autocomplete(
        self, name: str, option: str, typed: str, *, author: int = ALICE, channel: int = CHANNEL_ID
    ) -> dict[str, Any]:
        """``author`` types ``typed`` into ``option`` of ``/name`` (APPLICATION_COMMAND_AUTOCOMPLETE);
        the answer is the POST to ``/interactions/<id>/<token>/callback``."""
        payload = interaction(name, {option: typed}, self.channels[channel], author, self.roles.get(author))
        payload["type"] = 4
        payload["data"]["options"][0]["focused"] = True
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    def buttons(self, channel: int, mid: int) -> list[str]:
        """The ``custom_id``s of the buttons a message shows now."""
        msg = self.messages[channel][mid]
        return [c["custom_id"] for row in msg.get("components") or [] for c in row.get("components", [])]

    async def press(self, channel: int, mid: int, action: str, *, author: int = ALICE) -> dict[str, Any]:
        """``author`` clicks the button whose ``custom_id`` starts ``relay:<action>:`` on a message."""
        msg = self.messages[channel][mid]
        cid = next(c for c in self.buttons(channel, mid) if c.startswith(f"relay:{action}:"))
        payload = component_interaction(msg, cid, self.channels[channel], author, self.roles.get(author))
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    async def react(self, channel: int, mid: int, emoji: str = "🛑", *, author: int = ALICE) -> None:
        msg = self.messages[channel][mid]
        await self.dispatch("MESSAGE_REACTION_ADD", reaction_add(msg, emoji, author, self.roles.get(author)))

    async def edit(self, channel: int, mid: int, content: str) -> dict[str, Any]:
        """The author edits their message: stored, then dispatched as MESSAGE_UPDATE."""
        msg = self.messages[channel][mid]
        msg["content"] = content
        msg["edited_timestamp"] = now_iso()
        await self.dispatch("MESSAGE_UPDATE", msg)
        return msg

    # -- queries for assertions ---------------------------------------------------------

    def find(self, method: str, pattern: str) -> list[Call]:
        rx = re.compile(pattern)
        return [c for c in self.calls if c.method == method and rx.fullmatch(c.path)]

    def channel_messages(self, channel: int) -> list[dict[str, Any]]:
        return sorted(self.messages.get(channel, {}).values(), key=lambda m: int(m["id"]))

    def bot_messages(self, channel: int) -> list[dict[str, Any]]:
        return [m for m in self.channel_messages(channel) if int(m["author"]["id"]) == BOT_ID]

    def add_guild(self, shard: int, count: int) -> int:
        """A new guild whose events go to ``shard`` of ``count``, with one text channel: its id."""
        guild_id = max(self.guilds) + (1 << 22)
        while shard_of(guild_id, count) != shard:
            guild_id += 1 << 22
        self.guilds.append(guild_id)
        channel_id = max(c for c in self.channels if c > 0) + 1
        self.channels[channel_id] = text_channel(channel_id, f"general-{len(self.guilds)}", guild_id)
        return channel_id

    def threads(self) -> list[dict[str, Any]]:
        return [c for c in self.channels.values() if c["type"] == 11]

    # -- messages --------------------------------------------------------------------------

    def _message(
        self, channel: int, author: int, content: str, *, reply_to: int | None = None, mid: int | None = None
    ) -> dict[str, Any]:
        """Store (and return) a new message in ``channel``."""
        target = self.messages.get(channel, {}).get(reply_to) if reply_to is not None else None
        msg = message(
            self.channels[channel],
            author,
            content,
            roles=self.roles.get(author),
            reference=target,
            reference_id=reply_to,
            mid=mid,
        )
        self.messages.setdefault(channel, {})[int(msg["id"])] = msg
        return msg

    # -- REST -----------------------------------------------------------------------------

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            body = json.loads(raw) if raw and request.content_type == "application/json" else raw
        call = Call(request.method, path, body, time.monotonic(), query=dict(request.query))
        self.calls.append(call)
        refused = self._refusal(request, path, body, call.at)
        if refused is not None:
            call.status = refused[0]
            return self._json(refused[1], status=refused[0])
        limit_headers: dict[str, str] = {}
        if self.write_limit is not None and request.method in ("POST", "PATCH"):
            written = _WRITE.fullmatch(path)
            if written:
                limit_headers, over = self._take_write(int(written.group(1)), call.at)
                if over is not None:
                    call.status = 429
                    return self._json(over, status=429, headers=limit_headers)
        for rule in self.rules:
            if rule.times > 0 and rule.method == request.method and rule.pattern.fullmatch(path):
                rule.times -= 1
                call.status = rule.status
                return self._json(rule.body, status=rule.status, headers=rule.headers)
        try:
            status, payload, event = await self._route(request.method, path, body, request.query)
        except KeyError:
            status, payload, event = 404, {"code": 10008, "message": "Unknown Message"}, None
        call.status = status
        headers = self.write_headers if request.method in ("POST", "PATCH") and "/messages" in path else {}
        headers = {**headers, **limit_headers}
        if status == 200 and request.method in ("POST", "PATCH") and _WRITE.fullmatch(path):
            call.message_id = int(payload["id"])
        if payload is None:
            response = web.Response(status=status)
        else:
            response = self._json(payload, status=status, headers=headers)
        if event is not None:
            asyncio.get_running_loop().create_task(self.dispatch(*event))
        return response

    def _refusal(self, request: web.Request, path: str, body: Any, at: float) -> tuple[int, dict[str, Any]] | None:
        """Discord's own checks: the token, the length of ``content``, the interaction deadline."""
        token_in_url = path.startswith(("/webhooks/", "/interactions/"))  # no bot token needed there
        if not token_in_url and request.headers.get("Authorization") != f"Bot {self.token}":
            return 401, UNAUTHORIZED
        content = None
        if isinstance(body, dict):  # a message, or an interaction response's ``data``
            content = body.get("content") if "content" in body else (body.get("data") or {}).get("content")
        if request.method in ("POST", "PATCH") and isinstance(content, str) and len(content) > CONTENT_LIMIT:
            return 400, too_long()
        if path.startswith("/interactions/") and path.endswith("/callback"):
            dispatched = self._interactions.get(path.split("/")[2])
            if dispatched is not None and at - dispatched > self.interaction_deadline:
                return 404, UNKNOWN_INTERACTION
        return None

    def _take_write(self, channel: int, now: float) -> tuple[dict[str, str], dict[str, Any] | None]:
        """Count a write against the channel's window: its headers, and a 429 body when over."""
        assert self.write_limit is not None
        count, window = self.write_limit
        start, used = self._windows.get(channel, (now, 0))
        if now - start >= window:
            start, used = now, 0
        reset_after = max(start + window - now, 0.001)
        headers = {
            "X-RateLimit-Limit": str(count),
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Bucket": "fakemessages",
        }
        if used >= count:
            self.limited += 1
            headers.update(
                {"X-RateLimit-Remaining": "0", "X-RateLimit-Scope": "user", "Via": "1.1 google",
                 "Retry-After": str(max(1, round(reset_after)))}
            )
            body = {"message": "You are being rate limited.", "retry_after": round(reset_after, 3), "global": False}
            return headers, body
        self._windows[channel] = (start, used + 1)
        headers["X-RateLimit-Remaining"] = str(count - used - 1)
        return headers, None

    def _json(
        self, payload: Any, *, status: int = 200, headers: dict[str, str] | None = None
    ) -> web.Response:
        return web.Response(
            body=json.dumps(payload).encode(),
            status=status,
            headers={"Content-Type": JSON, **(headers or {})},
        )

    async def _route(self, method: str, path: str, body: Any, query: Any) -> tuple[int, Any, Any]:
        parts = path.strip("/").split("/")
        if path == "/users/@me":
            return 200, bot_user(), None
        if path == "/oauth2/applications/@me":
            return 200, application(), None
        if path == "/gateway/bot":
            return 200, self.bot_gateway(), None
        if parts[0] == "applications" and parts[-1] == "commands" and method == "PUT":
            self.commands = [  # Discord answers every command with a description ("" for a context menu)
                {"description": "", **c, "id": str(snowflake()), "application_id": str(APP_ID), "version": "1"}
                for c in body
            ]
            return 200, self.commands, None
        if parts[0] == "channels":
            return self._channel_route(method, parts[1:], body, query)
        if parts[0] == "interactions" and parts[-1] == "callback":
            return (
                200,
                {
                    "interaction": {"id": parts[1], "type": 2, "response_message_loading": True},
                    "resource": {"type": body.get("type", 5)},
                },
                None,
            )
        if parts[0] == "webhooks":
            return self._webhook_route(method, parts[1:], body)
        return 404, {"code": 0, "message": "404: Not Found"}, None

    def _channel_route(self, method: str, parts: list[str], body: Any, query: Any) -> tuple[int, Any, Any]:
        cid = int(parts[0])
        if cid not in self.channels:
            return 404, {"code": 10003, "message": "Unknown Channel"}, None
        if cid in self.closed:  # a guild the bot is not in, a DM it is not part of
            return 403, {"code": 50001, "message": "Missing Access"}, None
        rest = parts[1:]
        if not rest and method == "GET":
            return 200, self.channels[cid], None
        if rest == ["typing"]:
            return 204, None, None
        if rest == ["messages"] and method == "POST":
            reply_to = None
            ref = body.get("message_reference")
            if ref:
                reply_to = int(ref["message_id"])
                if reply_to not in self.messages.get(cid, {}) and ref.get("fail_if_not_exists", True):
                    return 400, {"code": 50035, "message": "Invalid Form Body"}, None
                if reply_to not in self.messages.get(cid, {}):
                    reply_to = None
            msg = self._message(cid, BOT_ID, body.get("content") or "", reply_to=reply_to)
            msg["allowed_mentions"] = body.get("allowed_mentions")
            msg["components"] = body.get("components") or []
            return 200, msg, ("MESSAGE_CREATE", msg)
        if rest == ["messages"] and method == "GET":
            limit = int(query.get("limit", 50))
            before = int(query["before"]) if "before" in query else None
            if "after" in query:  # the oldest ``limit`` after it, newest first (as Discord answers)
                after = [m for m in self.channel_messages(cid) if int(m["id"]) > int(query["after"])]
                return 200, list(reversed(after[:limit])), None
            msgs = [
                m for m in reversed(self.channel_messages(cid)) if before is None or int(m["id"]) < before
            ]
            return 200, msgs[:limit], None
        if len(rest) == 2 and rest[0] == "messages":
            mid = int(rest[1])
            msg = self.messages[cid][mid]
            if method == "GET":
                return 200, msg, None
            if method == "PATCH":
                if "content" in body:
                    msg["content"] = body["content"]
                if "components" in body:
                    msg["components"] = body["components"] or []
                msg["edited_timestamp"] = now_iso()
                return 200, msg, ("MESSAGE_UPDATE", msg)
            if method == "DELETE":
                del self.messages[cid][mid]
                return 204, None, None
        if len(rest) == 3 and rest[0] == "messages" and rest[2] == "threads" and method == "POST":
            mid = int(rest[1])
            if mid in self.channels:  # one thread per message, as on Discord
                exists = {"code": 160004, "message": "A thread has already been created for this message"}
                return 400, exists, None
            thread = thread_channel(
                mid,
                cid,
                body.get("name", "thread"),
                body.get("auto_archive_duration", 1440),
                self.channels[cid].get("guild_id", str(GUILD_ID)),
            )
            self.channels[mid] = thread
            return 201, thread, ("THREAD_CREATE", {**thread, "newly_created": True})
        return 404, {"code": 0, "message": "404: Not Found"}, None

    def _webhook_route(self, method: str, parts: list[str], body: Any) -> tuple[int, Any, Any]:
        token = parts[1]
        key = -abs(hash(token))  # a pseudo channel per interaction token
        self.channels.setdefault(key, {"id": str(CHANNEL_ID), "type": 0, "guild_id": str(GUILD_ID)})
        if len(parts) == 2 and method == "POST":
            if token in self._capped_followups:
                if self._capped_followups[token] >= USER_INSTALL_FOLLOWUPS:
                    return 400, TOO_MANY_FOLLOWUPS, None
                self._capped_followups[token] += 1
            msg = self._message(key, BOT_ID, body.get("content") or "")
            msg["channel_id"] = str(CHANNEL_ID)
            msg["flags"] = body.get("flags", 0)
            msg["components"] = body.get("components") or []
            return 200, msg, None
        if len(parts) == 4 and parts[2] == "messages" and method == "PATCH":
            if parts[3] == "@original":
                msg = self.messages.get(key, {}).get(0)
                if msg is None:
                    msg = self._message(key, BOT_ID, "", mid=None)
                    self.messages[key].pop(int(msg["id"]))
                    self.messages[key][0] = msg
            else:
                msg = self.messages[key][int(parts[3])]
            msg["content"] = body.get("content", msg["content"])
            if "components" in body:
                msg["components"] = body["components"] or []
            msg["channel_id"] = str(CHANNEL_ID)
            return 200, msg, None
        if len(parts) == 4 and parts[2] == "messages" and method == "DELETE":
            self.messages.get(key, {}).pop(0 if parts[3] == "@original" else int(parts[3]), None)
            return 204, None, None
        return 404, {"code": 10015, "message": "Unknown Webhook"}, None

    def interaction_messages(self, token: str) -> list[str]:
        """Texts of an interaction's messages: the original response first, then followups."""
        key = -abs(hash(token))
        msgs = self.messages.get(key, {})
        original = [msgs[0]["content"]] if 0 in msgs else []
        return original + [m["content"] for k, m in sorted(msgs.items()) if k != 0]
