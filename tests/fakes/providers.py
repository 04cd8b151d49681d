"""Loopback fakes of every provider's wire format, on 127.0.0.1 (aiohttp).

One server, one route per provider, each speaking exactly the format of the
seeds and ``reference/providers.md``:

* ``aigateway``  ``POST /aigateway/v1/chat/completions``: OpenAI chunks, a
  usage frame with no ``choices``, ``: keep-alive`` comments, ``[DONE]``;
* ``deepinfra``  ``POST /deepinfra/v1/openai/chat/completions``: the seed's
  chunks (leading-space content, a leaked ``</s>``), usage and
  ``estimated_cost`` on the finish chunk;
* ``openai``     ``POST /openai/v1/chat/completions``: a llama.cpp-style
  server, ``: ping`` comments, no usage;
* ``cloudflare`` ``POST /cloudflare/client/v4/accounts/{id}/ai/run/@cf/meta/llama-3.1-70b-instruct``:
  ``{"response", "p"}`` frames, a usage frame, ``[DONE]``; v4 error envelope;
* ``dataoorts``  ``POST /dataoorts/api/v1``: one JSON envelope.

A test queues ``Script``s per provider (``answer``, ``fail``, ``raw`` ...);
with none queued a provider answers ``"Hello from <name>."``.  A script is
the exact bytes to write, in parts (so frames and UTF-8 characters can be
split across reads), with optional pauses, a stall or a dropped connection.
``hang`` queues a response that never comes (the request is read, then
nothing is sent, not even the status line); ``closed_url`` is a base URL on
a port nobody listens on (connection refused).  Every request is recorded
in ``requests[name]``.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import web

NAMES = ("aigateway", "deepinfra", "openai", "cloudflare", "dataoorts")
ACCOUNT = "acc123"
CF_MODEL = "@cf/meta/llama-3.1-70b-instruct"
SSE = "text/event-stream; charset=utf-8"
JSON = "application/json"

_WORDS = re.compile(r"\s*\S+\s*|\s+")


def words(text: str) -> list[str]:
    return _WORDS.findall(text) or [text]


# -- wire builders (pure: text in, bytes out) -------------------------------------------------


def sse(payloads: Sequence[object], *, crlf: bool = False, comment: str | None = None) -> bytes:
    """``data:`` frames; ``comment`` (e.g. ``: keep-alive``) goes before each frame."""
    end = "\r\n" if crlf else "\n"
    out = []
    for payload in payloads:
        if comment is not None:
            out.append(f"{comment}{end}{end}")
        data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        out.append(f"data: {data}{end}{end}")
    return "".join(out).encode("utf-8")


def _chunk(delta: dict[str, object], finish: str | None = None, **extra: object) -> dict[str, object]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1694623354,
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


def usage(prompt: int, completion: int, **extra: object) -> dict[str, object]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion, **extra}


def aigateway_frames(text: str, *, finish: str = "stop", prompt: int = 24, done: bool = True) -> list[object]:
    frames: list[object] = [_chunk({"role": "assistant"})]
    frames += [_chunk({"content": w}) for w in words(text)]
    frames.append(_chunk({}, finish))
    frames.append({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "usage": usage(prompt, len(words(text)))})
    if done:
        frames.append("[DONE]")
    return frames


def deepinfra_frames(text: str, *, finish: str = "stop", prompt: int = 15, cost: float = 0.0000268) -> list[object]:
    first, *rest = words(text)
    frames: list[object] = [_chunk({"role": "assistant", "content": " "})]
    frames.append(_chunk({"role": "assistant", "content": " " + first}))
    frames += [_chunk({"role": "assistant", "content": w}) for w in rest]
    frames.append(_chunk({"role": "assistant", "content": ""}))
    frames.append(_chunk({"role": "assistant", "content": "</s>"}))
    n = len(words(text))
    frames.append(_chunk({}, finish, usage=usage(prompt, n, estimated_cost=cost)))
    frames.append("[DONE]")
    return frames


def openai_frames(text: str, *, finish: str = "stop") -> list[object]:
    frames: list[object] = [_chunk({"role": "assistant"})]
    frames += [_chunk({"content": w}) for w in words(text)]
    frames.append(_chunk({}, finish))
    frames.append("[DONE]")
    return frames


def cloudflare_frames(text: str, *, prompt: int = 30, completion: int | None = None, done: bool = True) -> list[object]:
    frames: list[object] = [{"response": w, "p": "abcdefgh"[: 1 + n % 8]} for n, w in enumerate(words(text))]
    frames.append({"response": "", "usage": usage(prompt, len(words(text)) if completion is None else completion)})
    if done:
        frames.append("[DONE]")
    return frames


def cloudflare_error_body(code: int, message: str) -> dict[str, object]:
    return {"result": None, "success": False, "errors": [{"code": code, "message": message}], "messages": []}


def dataoorts_body(text: str, *, prompt: int = 27, completion: int | None = None) -> dict[str, object]:
    n = len(words(text)) if completion is None else completion
    return {"errors": [], "messages": [], "result": {"response": text, "usage": usage(prompt, n)}, "success": True}


def split_every(data: bytes, size: int) -> list[bytes]:
    """Cut bytes in fixed pieces, regardless of frames or UTF-8 characters."""
    return [data[i : i + size] for i in range(0, len(data), size)]


FRAMES = {
    "aigateway": aigateway_frames,
    "deepinfra": deepinfra_frames,
    "openai": openai_frames,
    "cloudflare": cloudflare_frames,
}
COMMENTS = {"aigateway": ": keep-alive", "openai": ": ping"}


@dataclass
class Script:
    """One response: status, headers and the body's bytes, written part by part."""

    status: int = 200
    parts: list[bytes] = field(default_factory=list)
    content_type: str = SSE
    headers: dict[str, str] = field(default_factory=dict)
    gap: float = 0.0  # pause between parts
    ttft: float = 0.0  # pause before the first part
    stall_after: int | None = None  # stop writing (connection kept open) after this many parts
    drop_after: int | None = None  # drop the TCP connection after this many parts
    hang: bool = False  # read the request, then send nothing at all (not even the headers)


class FakeProviders:
    def __init__(self) -> None:
        self.queues: dict[str, deque[Script]] = defaultdict(deque)
        self.requests: dict[str, list[dict[str, object]]] = defaultdict(list)
        self.headers: dict[str, list[dict[str, str]]] = defaultdict(list)
        self.paths: dict[str, list[str]] = defaultdict(list)
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.port = 0

    # -- scripting ---------------------------------------------------------------------------

    def push(self, name: str, script: Script) -> None:
        self.queues[name].append(script)

    def answer(self, name: str, text: str, *, parts: int | None = None, crlf: bool = False, **kw: object) -> None:
        """A normal answer in ``name``'s own format (``parts``: split the bytes that finely)."""
        self.push(name, normal(name, text, crlf=crlf, split=parts, **kw))

    def fail(self, name: str, status: int, body: object, headers: dict[str, str] | None = None, times: int = 1) -> None:
        for _ in range(times):
            self.push(name, Script(status, [json.dumps(body).encode()], JSON, headers or {}))

    def hang(self, name: str, times: int = 1) -> None:
        """The next ``times`` requests are accepted and never answered."""
        for _ in range(times):
            self.push(name, Script(hang=True))

    def raw(self, name: str, payloads: Sequence[object], **kw: object) -> None:
        """SSE frames exactly as given (``sse`` options: ``crlf``, ``comment``)."""
        crlf = bool(kw.pop("crlf", False))
        comment = kw.pop("comment", None)
        self.push(name, Script(parts=[sse(payloads, crlf=crlf, comment=comment)], **kw))  # type: ignore[arg-type]

    # -- server ------------------------------------------------------------------------------

    def base_url(self, name: str) -> str:
        root = f"http://127.0.0.1:{self.port}"
        return {
            "aigateway": f"{root}/aigateway/v1",
            "deepinfra": f"{root}/deepinfra/v1/openai",
            "openai": f"{root}/openai/v1",
            "cloudflare": f"{root}/cloudflare/client/v4",
            "dataoorts": f"{root}/dataoorts/api/v1",
        }[name]

    def closed_url(self, name: str) -> str:
        """``name``'s base URL on a loopback port nobody listens on: connections are refused."""
        return self.base_url(name).replace(f":{self.port}/", f":{closed_port()}/", 1)

    def settings(self, name: str) -> dict[str, object]:
        """Settings keyword arguments pointing ``name`` at this server, with a dummy key."""
        key = {"deepinfra": "deepinfra_token", "cloudflare": "cloudflare_auth_token"}.get(name, f"{name}_api_key")
        values: dict[str, object] = {f"{name}_base_url": self.base_url(name), key: f"fake-{name}-key"}
        if name == "cloudflare":
            values["cloudflare_account_id"] = ACCOUNT
        return values

    def env(self, name: str) -> dict[str, str]:
        return {k.upper(): str(v) for k, v in self.settings(name).items()}

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/aigateway/v1/chat/completions", self._handler("aigateway"))
        app.router.add_post("/deepinfra/v1/openai/chat/completions", self._handler("deepinfra"))
        app.router.add_post("/openai/v1/chat/completions", self._handler("openai"))
        app.router.add_post(
            "/cloudflare/client/v4/accounts/{account}/ai/run/{model:.+}", self._handler("cloudflare")
        )
        app.router.add_post("/dataoorts/api/v1", self._handler("dataoorts"))
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def _handler(self, name: str):  # type: ignore[no-untyped-def]
        async def handle(request: web.Request) -> web.StreamResponse:
            self.requests[name].append(await request.json())
            self.headers[name].append(dict(request.headers))
            self.paths[name].append(request.path)
            queue = self.queues[name]
            script = queue.popleft() if queue else normal(name, f"Hello from {name}.")
            return await self._play(request, script)

        return handle

    async def _play(self, request: web.Request, script: Script) -> web.StreamResponse:
        if script.hang:
            await self._stall()  # until the server stops (or 60 s): the client gives up first
            return web.Response(status=503)
        response = web.StreamResponse(
            status=script.status, headers={"Content-Type": script.content_type, **script.headers}
        )
        await response.prepare(request)
        if script.ttft:
            await asyncio.sleep(script.ttft)
        for n, part in enumerate(script.parts):
            if script.stall_after is not None and n >= script.stall_after:
                await self._stall()
                return response
            if script.drop_after is not None and n >= script.drop_after:
                assert request.transport is not None
                request.transport.abort()
                return response
            if n and script.gap:
                await asyncio.sleep(script.gap)
            await response.write(part)
        if script.stall_after is not None and script.stall_after >= len(script.parts):
            await self._stall()
        await response.write_eof()
        return response

    async def _stall(self) -> None:
        try:
            await asyncio.wait_for(self._closing.wait(), 60)
        except TimeoutError:
            pass


def closed_port() -> int:
    """A loopback port that was free a moment ago: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def normal(name: str, text: str, *, crlf: bool = False, split: int | None = None, **kw: object) -> Script:
    """``text`` as ``name`` sends a complete answer."""
    if name == "dataoorts":
        body = json.dumps(dataoorts_body(text, **kw)).encode()  # type: ignore[arg-type]
        return Script(parts=split_every(body, split) if split else [body], content_type=JSON)
    data = sse(FRAMES[name](text, **kw), crlf=crlf, comment=COMMENTS.get(name))  # type: ignore[operator]
    return Script(parts=split_every(data, split) if split else [data])
