"""A scriptable OpenAI-compatible model server on 127.0.0.1, for tests and benchmarks.

It speaks ``POST /v1/chat/completions`` with real SSE over real HTTP.  Queue
behaviours with ``reply``, ``fail``, ``cut`` ...; when the queue is empty it
answers ``default_text``; a request whose system message starts with a prefix given to
``when_system`` gets that behaviour instead, every time (the bot's summary calls).  Every request body is kept in ``requests``; ``sent`` counts the
content chunks each streamed request got, and ``hung_up`` the streams the client closed before
their end (a stopped answer).

A small local server: ``FakeLLM(window=512)`` refuses a prompt that does not fit
its window as llama.cpp's server does (HTTP 400, ``exceed_context_size_error``
with ``n_ctx``; counted with the Llama 3 template), and says its window where
``tells`` puts it: ``"llama.cpp"`` (``GET /props``), ``"vllm"`` (``GET
/v1/models``, ``max_model_len``), ``"ollama"`` (``POST /api/show``) or None
(it does not say; every such look-up is a 404 then, as on a plain server).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import deque
from dataclasses import dataclass, field

from aiohttp import web

_WORDS = re.compile(r"\s*\S+\s*|\s+")


def chunks_of(text: str) -> list[str]:
    """Split like a tokenizer-ish stream: one word (with its spaces) per chunk."""
    return _WORDS.findall(text) or [text]


@dataclass
class Behaviour:
    text: str = "Hello from the fake model."
    status: int = 200
    body: object = None  # error body for status >= 400, or a JSON completion when json_body
    headers: dict[str, str] = field(default_factory=dict)
    ttft: float = 0.0  # seconds before the first chunk
    delay: float = 0.0  # seconds between chunks
    cut_after: int | None = None  # close the stream after this many content chunks (no finish, no [DONE])
    error_after: int | None = None  # send an error frame after this many chunks
    stall_after: int | None = None  # stop sending (but keep the connection) after this many chunks
    json_body: bool = False  # answer with a whole JSON completion instead of SSE
    finish_reason: str = "stop"
    usage: dict[str, int] | None = None
    crlf: bool = False
    keepalive: bool = False  # a ": keep-alive" comment line between chunks


class FakeLLM:
    def __init__(
        self, default_text: str = "Hello from the fake model.", *, window: int | None = None, tells: str | None = None
    ) -> None:
        self.window = window
        self.tells = tells
        self.refused = 0  # prompts refused as too long for ``window``
        self.default_text = default_text
        self.default = Behaviour(text=default_text)
        self.queue: deque[Behaviour] = deque()
        self.by_system: dict[str, Behaviour] = {}  # system-message prefix -> behaviour, not queued
        self.requests: list[dict[str, object]] = []
        self.headers: list[dict[str, str]] = []
        self.sent: list[int] = []  # content chunks sent, per streamed request
        self.hung_up = 0  # streams the client closed before their end
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- scripting ---------------------------------------------------------------------

    def push(self, behaviour: Behaviour) -> None:
        self.queue.append(behaviour)

    def reply(self, text: str, **kwargs: object) -> None:
        self.push(Behaviour(text=text, **kwargs))  # type: ignore[arg-type]

    def fail(self, status: int, body: object = None, headers: dict[str, str] | None = None, times: int = 1) -> None:
        if body is None:
            body = {"error": {"message": f"fake error {status}", "type": "fake", "code": status}}
        for _ in range(times):
            self.push(Behaviour(status=status, body=body, headers=headers or {}))

    def cut(self, text: str, after: int) -> None:
        self.push(Behaviour(text=text, cut_after=after))

    def when_system(self, prefix: str, behaviour: Behaviour) -> None:
        """Answer every request whose system message starts with ``prefix`` with ``behaviour``."""
        self.by_system[prefix] = behaviour

    def _behaviour(self, body: dict[str, object]) -> Behaviour:
        messages = body.get("messages") or []
        first = messages[0] if isinstance(messages, list) and messages else {}
        system = str(first.get("content") or "") if isinstance(first, dict) and first.get("role") == "system" else None
        for prefix, behaviour in self.by_system.items():
            if system is not None and system.startswith(prefix):
                return behaviour
        return self.queue.popleft() if self.queue else Behaviour(text=self.default_text)

    # -- server ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_get("/props", self._props)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/api/show", self._show)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        too_long = self._over_window(body)
        if too_long is not None:
            return too_long
        b = self._behaviour(body)
        if b.status >= 400:
            return web.json_response(b.body, status=b.status, headers=b.headers)
        if b.json_body or not body.get("stream"):
            return web.json_response(b.body or _completion(b.text, b.finish_reason, b.usage))
        try:
            return await self._stream(request, b)
        except ConnectionResetError:  # the client hung up mid-stream (cancelled on purpose)
            self.hung_up += 1
            return web.Response(status=499)

    def _over_window(self, body: dict[str, object]) -> web.Response | None:
        """llama.cpp's refusal of a prompt that does not fit ``n_ctx`` (the answer then stops at
        the window, so ``max_tokens`` is not counted)."""
        if self.window is None:
            return None
        from bot.tokens import prompt_tokens

        messages = body.get("messages") or []
        contents = [str(m.get("content") or "") for m in messages if isinstance(m, dict)]
        has_system = any(isinstance(m, dict) and m.get("role") == "system" for m in messages)
        used = prompt_tokens(contents, has_system=has_system)
        if used < self.window:
            return None
        self.refused += 1
        message = f"request ({used} tokens) exceeds the available context size ({self.window} tokens), try increasing it"
        error = {"code": 400, "message": message, "type": "exceed_context_size_error",
                 "n_prompt_tokens": used, "n_ctx": self.window}
        return web.json_response({"error": error}, status=400)

    async def _props(self, request: web.Request) -> web.Response:
        if self.tells != "llama.cpp" or self.window is None:
            raise web.HTTPNotFound()
        return web.json_response({"default_generation_settings": {"n_ctx": self.window}, "total_slots": 1})

    async def _models(self, request: web.Request) -> web.Response:
        if self.tells != "vllm" or self.window is None:
            raise web.HTTPNotFound()
        model = {"id": "meta-llama/Llama-3.1-70B-Instruct", "object": "model", "max_model_len": self.window}
        return web.json_response({"object": "list", "data": [model]})

    async def _show(self, request: web.Request) -> web.Response:
        if self.tells != "ollama" or self.window is None:
            raise web.HTTPNotFound()
        return web.json_response(
            {"parameters": f"num_ctx                        {self.window}\nstop \"<|eot_id|>\"",
             "model_info": {"llama.context_length": 131072}}
        )

    async def _stream(self, request: web.Request, b: Behaviour) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        end = "\r\n" if b.crlf else "\n"

        async def send(payload: str) -> None:
            await response.write(f"data: {payload}{end}{end}".encode())

        if b.ttft:
            await asyncio.sleep(b.ttft)
        await send(json.dumps(_chunk({"role": "assistant", "content": ""})))
        index = len(self.sent)
        self.sent.append(0)
        for n, piece in enumerate(chunks_of(b.text)):
            if b.cut_after is not None and n >= b.cut_after:
                return response  # clean EOF: no finish_reason, no [DONE]
            if b.error_after is not None and n >= b.error_after:
                await send(json.dumps({"error": {"message": "fake mid-stream failure", "code": 500}}))
                return response
            if b.stall_after is not None and n >= b.stall_after:
                await asyncio.sleep(3600)
            if n and b.delay:
                await asyncio.sleep(b.delay)
            if b.keepalive:
                await response.write(f": keep-alive{end}{end}".encode())
            await send(json.dumps(_chunk({"content": piece})))
            self.sent[index] += 1
        await send(json.dumps(_chunk({}, b.finish_reason)))
        usage = b.usage or {"prompt_tokens": 10, "completion_tokens": len(chunks_of(b.text))}
        await send(json.dumps({"choices": [], "usage": usage}))
        await send("[DONE]")
        return response


def _chunk(delta: dict[str, object], finish: str | None = None) -> dict[str, object]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _completion(text: str, finish: str, usage: dict[str, int] | None) -> dict[str, object]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": usage or {"prompt_tokens": 10, "completion_tokens": len(chunks_of(text))},
    }
