"""The gateway side of the fake Discord: sessions per shard, and which session an event goes to.

* HELLO, heartbeat ACKs, then IDENTIFY opens a ``Session`` for the shard it
  names (``shard: [id, count]``; none: shard 0 of 1, which gets everything).
  READY lists the guilds of that shard (with a 127.0.0.1 resume URL), then a
  GUILD_CREATE for each.  RESUME (op 6) takes the session over on the new socket.
* ``dispatch`` sends a guild's event only on the session of shard
  ``(guild_id >> 22) % count`` and anything without a guild (DMs) on shard 0,
  as Discord does; ``shard=`` forces a session (a misrouted event, for tests).
* ``GET /gateway/bot`` answers the URL, ``recommended_shards`` and a
  ``session_start_limit`` with ``max_concurrency``.
* ``reject_privileged`` closes with 4014 when the message-content intent is asked for.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.discord_payloads import MESSAGE_CONTENT, guild, ready, shard_of


@dataclass
class Session:
    """One gateway session: the shard it IDENTIFYed as, and the events sent on it."""

    shard: int
    count: int
    session_id: str
    ws: web.WebSocketResponse
    identified_at: float
    events: list[dict[str, Any]] = field(default_factory=list)

    def takes(self, data: dict[str, Any]) -> bool:
        """Whether Discord sends an event with this payload on this session."""
        guild_id = data.get("guild_id") if isinstance(data, dict) else None
        return self.shard == (shard_of(int(guild_id), self.count) if guild_id else 0)


class Gateway:
    """Mixed into ``FakeDiscord``, which holds the channels, guilds, roles and counters used here."""

    channels: dict[int, dict[str, Any]]
    guilds: list[int]
    roles: dict[int, list[int]]
    identifies: list[dict[str, Any]]
    reject_privileged: bool
    closed_4014: int
    ready: asyncio.Event
    _seq: int
    #: what ``GET /gateway/bot`` advises: total shards, and IDENTIFYs allowed per 5 s
    recommended_shards: int
    max_concurrency: int

    @property
    def gateway_url(self) -> str:
        raise NotImplementedError

    def open_gateway(self) -> None:
        self.sessions: list[Session] = []  # live, oldest first
        self._shards_of: dict[str, tuple[int, int]] = {}  # session id -> (shard, count), for resumes

    @property
    def sockets(self) -> list[web.WebSocketResponse]:
        return [s.ws for s in self.sessions]

    def session_of(self, shard: int) -> Session | None:
        """The live session of ``shard``, if any."""
        return next((s for s in reversed(self.sessions) if s.shard == shard), None)

    def bot_gateway(self) -> dict[str, Any]:
        """The body of ``GET /gateway/bot``."""
        return {
            "url": self.gateway_url,
            "shards": self.recommended_shards,
            "session_start_limit": {
                "total": 1000,
                "remaining": 1000 - len(self.identifies),
                "reset_after": 86_400_000,
                "max_concurrency": self.max_concurrency,
            },
        }

    async def dispatch(self, event: str, data: dict[str, Any], *, shard: int | None = None) -> None:
        """Send ``event`` on the session Discord would use (or on ``shard``'s)."""
        await self.ready.wait()
        for session in list(self.sessions):
            if session.shard == shard if shard is not None else session.takes(data):
                await self._send(session, event, data)

    async def _send(self, session: Session, event: str, data: dict[str, Any]) -> None:
        self._seq += 1
        session.events.append({"t": event, "d": data})
        await session.ws.send_str(json.dumps({"op": 0, "t": event, "s": self._seq, "d": data}))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        async for frame in ws:
            if frame.type != WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            op = message.get("op")
            if op == 1:
                await ws.send_str(json.dumps({"op": 11}))
            elif op == 2:
                self.identifies.append(message["d"])
                if self.reject_privileged and message["d"].get("intents", 0) & MESSAGE_CONTENT:
                    self.closed_4014 += 1
                    await ws.close(code=4014, message=b"Disallowed intent(s).")
                    break
                await self._identify(ws, message["d"])
            elif op == 6:
                await self._resume(ws, message["d"])
        self.sessions = [s for s in self.sessions if s.ws is not ws]
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        shard, count = data.get("shard") or (0, 1)
        session = Session(shard, count, f"fake-session-{len(self.identifies)}", ws, time.monotonic())
        self._shards_of[session.session_id] = (shard, count)
        mine = tuple(g for g in self.guilds if shard_of(g, count) == shard)
        await self._send(session, "READY", ready(self.gateway_url, mine, (shard, count), session.session_id))
        channels = list(self.channels.values())
        for guild_id in mine:
            await self._send(session, "GUILD_CREATE", guild(channels, self.roles, guild_id))
        self.sessions.append(session)
        self.ready.set()

    async def _resume(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        session_id = str(data.get("session_id"))
        shard, count = self._shards_of.get(session_id, (0, 1))
        session = Session(shard, count, session_id, ws, time.monotonic())
        await self._send(session, "RESUMED", {})
        self.sessions.append(session)
