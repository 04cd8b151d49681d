"""OpenAI-compatible chat completions over SSE (``/chat/completions``).

Used for ``openai`` (vLLM, Ollama, llama.cpp, LiteLLM, ...), ``aigateway`` and
``deepinfra``; they differ only in their ``ProviderInfo``, key name and the
sampling parameters they accept.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping

import httpx

from .. import errors
from ..settings import ProviderConfig
from .base import ChatRequest, Delta, ProviderInfo, Usage
from .http import Describe, JsonFrames, Timeouts, frame_error, read_error_body, status_error, transport_error

OPENAI_PARAMS = frozenset({"temperature", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty"})
EXTRA_PARAMS = frozenset({"top_k", "min_p", "repetition_penalty"})


class OpenAICompatProvider:
    def __init__(
        self,
        config: ProviderConfig,
        info: ProviderInfo,
        *,
        key_env: str,
        accepts: frozenset[str] = OPENAI_PARAMS | EXTRA_PARAMS,
        timeouts: Timeouts = Timeouts(),
        include_usage: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.info = info
        self.config = config
        self.accepts = accepts
        self.timeouts = timeouts
        self.include_usage = include_usage
        self.who = Describe(info.display, key_env)
        headers = {"Accept": "text/event-stream"}
        if config.api_key is not None:
            headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        self._client = httpx.AsyncClient(
            base_url=config.base_url, headers=headers, timeout=timeouts.httpx(), transport=transport
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def body(self, request: ChatRequest) -> dict[str, object]:
        body: dict[str, object] = {
            "model": self.info.model,
            "messages": request.messages(),
            "stream": True,
            "max_tokens": request.max_tokens,
        }
        if self.include_usage:
            body["stream_options"] = {"include_usage": True}
        for name, value in request.sampling.given().items():
            if name in self.accepts:
                body[name] = value
        return body

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        deadline = time.monotonic() + self.timeouts.turn
        started = False
        try:
            async with self._client.stream("POST", "/chat/completions", json=self.body(request)) as response:
                if response.status_code >= 400:
                    body = await read_error_body(response)
                    raise status_error(self.who, response.status_code, body, response.headers)
                kind = response.headers.get("content-type", "")
                if "text/event-stream" not in kind:
                    async for delta in self._whole(response):
                        yield delta
                    return
                async for delta in self._parse(JsonFrames(self.who, response), deadline):
                    started = started or bool(delta.text)
                    yield delta
        except httpx.HTTPError as exc:
            raise transport_error(self.who, exc, started=started) from exc

    async def _parse(self, frames: JsonFrames, deadline: float) -> AsyncIterator[Delta]:
        started = False
        finish: str | None = None
        usage: Usage | None = None
        async for frame in frames:
            if time.monotonic() > deadline:
                raise errors.ProviderTimeout(self.who.display, "turn timeout", hint="the answer took too long")
            problem = frame_error(self.who, frame, started=started)
            if problem is not None:
                raise problem
            usage = _usage(frame.get("usage")) or usage
            choices = frame.get("choices")
            if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
                continue
            choice = choices[0]
            delta = choice.get("delta") or choice.get("message") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(text, str) and text:
                started = True
                yield Delta(text=text)
            if choice.get("finish_reason"):
                finish = str(choice["finish_reason"])
        # [DONE] or a finish reason means complete; EOF with neither is a cut stream.
        if finish is None and frames.done:
            finish = "stop"
        if finish is None:
            if not started:
                raise errors.ProviderUnavailable(self.who.display, "empty stream", hint="try again")
            raise errors.StreamInterrupted(self.who.display, "no finish reason", hint="the answer is incomplete")
        yield Delta(finish_reason=finish, usage=usage)

    async def _whole(self, response: httpx.Response) -> AsyncIterator[Delta]:
        """A JSON body where a stream was asked for: a complete answer in one piece."""
        raw = await response.aread()
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise errors.BadRequest(self.who.display, "unreadable response body") from exc
        problem = frame_error(self.who, body, started=False) if isinstance(body, dict) else None
        if problem is not None:
            raise problem
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list) or not choices:
            raise errors.BadRequest(self.who.display, "response without choices")
        message = choices[0].get("message") or {}
        text = message.get("content") or ""
        if text:
            yield Delta(text=text)
        yield Delta(finish_reason=choices[0].get("finish_reason") or "stop", usage=_usage(body.get("usage")))


def _usage(raw: object) -> Usage | None:
    if not isinstance(raw, Mapping):
        return None
    try:
        prompt = int(raw.get("prompt_tokens") or 0)
        completion = int(raw.get("completion_tokens") or 0)
    except (TypeError, ValueError):
        return None
    cost = raw.get("estimated_cost")
    return Usage(prompt, completion, float(cost) if isinstance(cost, (int, float)) else None)
