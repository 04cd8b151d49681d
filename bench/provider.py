"""A lean provider double for benchmarks: OpenAI-style SSE at a set TTFT and token rate.

``tests/fakes/llm.py`` is built for scripting faults; at 500 streams of 40
tokens/s (20,000 frames a second) its per-chunk ``asyncio.sleep`` and aiohttp
writes would eat the core the platform fakes need.  This double is a bare
``asyncio.Protocol`` HTTP/1.1 server (keep-alive, chunked SSE): one timer per
stream, frames written straight to the transport, every frame's JSON built
before the first one is due.  It keeps, per request, when the first and last
content frames went out, so a benchmark can measure from the provider's side.

Each request is matched to a conversation by a tag in its last user message
(``q17`` -> ``"17"``); ``answer(tag)`` gives the pieces to stream, one frame
each (one Llama 3 token per piece, see ``token_pieces``).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bot import tokens

TAG = re.compile(r"\bq(\d+)\b")
_HEAD_END = b"\r\n\r\n"
_RESPONSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def token_pieces(text: str, n: int) -> list[str]:
    """The first ``n`` Llama 3 tokens of ``text`` (ASCII), each decoded on its own."""
    ids = tokens.encode(text)
    if len(ids) < n:
        raise ValueError(f"text has {len(ids)} tokens, fewer than {n}")
    return [tokens.decode([i]) for i in ids[:n]]


@dataclass
class Stream:
    """One answered request, seen from the provider."""

    tag: str
    pieces: list[str]
    received: float
    first_at: float | None = None  # first content frame written
    last_at: float | None = None  # last content frame written
    done_at: float | None = None  # [DONE] written

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _frame(delta: dict[str, str], finish: str | None = None) -> bytes:
    body = {"id": "bench", "object": "chat.completion.chunk", "model": "bench",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return _chunk(b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n")


class _Connection(asyncio.Protocol):
    def __init__(self, double: ProviderDouble) -> None:
        self.double = double
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.double.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None
        self.double.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._try_request()

    def _try_request(self) -> None:
        end = self.buffer.find(_HEAD_END)
        if end < 0:
            return
        head = self.buffer[:end].decode("latin-1").lower()
        match = re.search(r"content-length:\s*(\d+)", head)
        length = int(match.group(1)) if match else 0
        if len(self.buffer) < end + 4 + length:
            return
        body = self.buffer[end + 4 : end + 4 + length]
        self.buffer = self.buffer[end + 4 + length :]
        if not head.startswith("post ") or not body:  # the bot's window probes (GET /props, /v1/models)
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            self._try_request()
            return
        self.busy = True
        self._answer(json.loads(body))

    def _answer(self, request: dict[str, object]) -> None:
        now = time.monotonic()
        messages = request.get("messages") or []
        last = messages[-1].get("content", "") if isinstance(messages, list) and messages else ""  # type: ignore[union-attr]
        found = TAG.search(str(last))
        tag = found.group(1) if found else "?"
        pieces = self.double.answer(tag)
        stream = Stream(tag, pieces, now)
        self.double.streams.append(stream)
        frames = [_frame({"role": "assistant", "content": ""})]
        frames += [_frame({"content": p}) for p in pieces]
        usage = {"prompt_tokens": 20, "completion_tokens": len(pieces), "total_tokens": 20 + len(pieces)}
        tail = (
            _frame({}, "stop")
            + _chunk(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n")
            + _chunk(b"data: [DONE]\n\n")
            + b"0\r\n\r\n"
        )
        assert self.transport is not None
        self.transport.write(_RESPONSE_HEAD)
        start = now + self.double.ttft
        self._send(stream, frames, tail, start, 0)

    def _send(self, stream: Stream, frames: list[bytes], tail: bytes, start: float, sent: int) -> None:
        """Write every frame that is due, then wait for the next one."""
        self.timer = None
        if self.transport is None or self.transport.is_closing():
            return
        now = time.monotonic()
        rate = self.double.rate
        # frames[0] (the role) goes with the first token; token k (from 0) is due at start + k/rate
        due = len(frames) if rate <= 0 else min(len(frames), int((now - start) * rate) + 2)
        if now >= start and due > sent:
            self.transport.write(b"".join(frames[sent:due]))
            if stream.first_at is None:
                stream.first_at = now
            stream.last_at = now
            sent = due
        if sent >= len(frames):
            self.transport.write(tail)
            stream.done_at = time.monotonic()
            self.busy = False
            if self.buffer:
                self._try_request()
            return
        at = start + (sent - 1) / rate if rate > 0 and sent else start
        loop = asyncio.get_running_loop()
        self.timer = loop.call_at(at, self._send, stream, frames, tail, start, sent)


@dataclass
class ProviderDouble:
    """``ttft`` seconds to the first token, then ``rate`` tokens a second (0: all at once)."""

    answer: Callable[[str], list[str]]
    ttft: float = 0.3
    rate: float = 40.0
    streams: list[Stream] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self.connections: set[_Connection] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> ProviderDouble:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                if conn.transport is not None:
                    conn.transport.close()
            await self._server.wait_closed()

    def by_tag(self) -> dict[str, Stream]:
        return {s.tag: s for s in self.streams}
