"""The Socket Mode side of the fake Slack: the websockets ``apps.connections.open`` hands out.

Each ``apps.connections.open`` gets its own ``ws://127.0.0.1:PORT/link/?ticket=tN``;
the live websockets are ``connections``, oldest first.  ``deliver`` sends an
envelope and waits for the app's ack (later than ``ACK_DEADLINE``, 3 s, fails, as
Slack would have retried it): on the newest connection by default, on
a random one (``via="random"``, drawn from the seeded ``rng``) or on a given
one.  ``redeliver`` is Slack's retry: the same body with ``retry_attempt`` one
higher, on another connection than its last delivery.  Past
``max_connections`` (10, as on Slack) a new websocket gets ``{"type":
"disconnect", "reason": "too_many_websockets"}`` and is closed (``refused``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

#: Slack waits this long for an envelope's ack, then retries it (``retry_reason: timeout``).
ACK_DEADLINE = 3.0
TOO_MANY = {"type": "disconnect", "reason": "too_many_websockets", "debug_info": {"host": "fake"}}


@dataclass
class Connection:
    """One Socket Mode websocket the app opened, and the envelopes delivered on it."""

    ticket: str
    ws: web.WebSocketResponse
    envelopes: list[dict[str, Any]] = field(default_factory=list)


class SocketMode:
    """Mixed into ``FakeSlack``, which sets ``port``, ``max_connections`` and ``_ids``."""

    port: int
    max_connections: int
    _ids: itertools.count[int]

    def open_socket_mode(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.connections: list[Connection] = []  # live, oldest first
        self.refused = 0  # websockets turned away with too_many_websockets
        self.acks: dict[str, dict[str, Any]] = {}
        self.ack_deadline = ACK_DEADLINE
        self._tickets = itertools.count(1)
        self._connected = asyncio.Event()
        self._ack_events: dict[str, asyncio.Event] = {}

    def next_link(self) -> str:
        """A fresh websocket URL, as ``apps.connections.open`` answers."""
        return f"ws://127.0.0.1:{self.port}/link/?ticket=t{next(self._tickets)}"

    async def close_connections(self) -> None:
        for connection in list(self.connections):
            await connection.ws.close()

    @property
    def _sockets(self) -> list[web.WebSocketResponse]:
        return [c.ws for c in self.connections]

    async def deliver(
        self,
        body: dict[str, Any],
        *,
        kind: str = "events_api",
        retry_attempt: int = 0,
        timeout: float = 10.0,
        wait: bool = True,
        via: Connection | str | None = None,
    ) -> dict[str, Any]:
        """Send an envelope over a websocket and wait for the app's ack (returned).

        ``via``: None for the newest connection, ``"random"`` for one picked by ``rng``,
        or a ``Connection``.  ``wait=False`` returns at once with ``{}`` (for envelopes
        an app may never ack).
        """
        await asyncio.wait_for(self._connected.wait(), timeout)
        connection = self._pick(via)
        envelope_id = f"env-{next(self._ids)}"
        done = self._ack_events[envelope_id] = asyncio.Event()
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
            "payload": body,
        }
        connection.envelopes.append(envelope)
        await connection.ws.send_str(json.dumps(envelope))
        if not wait:
            return {}
        sent = time.monotonic()
        await asyncio.wait_for(done.wait(), timeout)
        late = time.monotonic() - sent - self.ack_deadline
        if late > 0:
            raise AssertionError(f"{kind} envelope acked {late:.1f} s past Slack's {self.ack_deadline:.0f} s deadline")
        return self.acks[envelope_id]

    async def redeliver(self, body: dict[str, Any], *, timeout: float = 10.0) -> dict[str, Any]:
        """Slack's retry of ``body``: one more ``retry_attempt``, on another connection than
        the last delivery of it when there is one (picked by ``rng``)."""
        sent = [(c, e) for c in self.connections for e in c.envelopes if _same(e["payload"], body)]
        last, attempt = None, 0
        if sent:
            last, envelope = max(sent, key=lambda ce: int(ce[1]["envelope_id"].split("-")[1]))
            attempt = envelope["retry_attempt"] + 1
        others = [c for c in self.connections if c is not last] or self.connections
        return await self.deliver(body, retry_attempt=attempt, timeout=timeout, via=self.rng.choice(others))

    async def wait_connections(self, count: int, timeout: float = 10.0) -> None:
        """Until ``count`` websockets are live."""
        deadline = time.monotonic() + timeout
        while len(self.connections) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.connections)} of {count} Socket Mode connections")
            await asyncio.sleep(0.01)

    def _pick(self, via: Connection | str | None) -> Connection:
        if isinstance(via, Connection):
            return via
        if via == "random":
            return self.rng.choice(self.connections)
        return self.connections[-1]

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        if len(self.connections) >= self.max_connections:
            self.refused += 1
            await ws.send_str(json.dumps(TOO_MANY))
            await ws.close()
            return ws
        connection = Connection(request.query.get("ticket", ""), ws)
        self.connections.append(connection)
        hello = {"type": "hello", "num_connections": len(self.connections), "connection_info": {"app_id": "A1"}}
        await ws.send_str(json.dumps(hello))
        self._connected.set()
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                data = json.loads(msg.data)
                envelope_id = data.get("envelope_id")
                if envelope_id:
                    self.acks[envelope_id] = data
                    if envelope_id in self._ack_events:
                        self._ack_events[envelope_id].set()
        self.connections.remove(connection)
        if not self.connections:
            self._connected.clear()
        return ws


def _same(payload: dict[str, Any], body: dict[str, Any]) -> bool:
    """Whether an envelope carried ``body`` (the same event id, or the very object)."""
    event_id = body.get("event_id")
    return payload is body or (event_id is not None and payload.get("event_id") == event_id)
