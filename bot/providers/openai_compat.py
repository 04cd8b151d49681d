"""OpenAI-compatible chat completions over SSE (``POST {base}/chat/completions``).

Used for ``openai`` (vLLM, Ollama, llama.cpp, LiteLLM, ...), ``aigateway``
and ``deepinfra``.  Their quirks, all read by the one parser:

* AIGateway sends usage in a frame with no (or empty) ``choices``, and
  keep-alive comments every 15 s;
* DeepInfra puts usage (with ``estimated_cost``) on the finish chunk, needs
  no ``stream_options``, and may leak ``</s>`` as text;
* vLLM reports errors mid-stream as ``{"object": "error", ...}``; llama.cpp
  servers send ``: ping`` comments and no usage at all;
* the Cloudflare OpenAI route adds a trailing native ``{"response": "",
  "usage": ...}`` frame without ``choices``.

Which sampling parameters are sent is decided by ``params`` per provider.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import httpx

from .. import errors
from ..settings import ProviderConfig
from . import params, window
from .base import ChatRequest, Delta, ProviderInfo, Usage
from .http import DEFAULT_TIMEOUTS, Describe, JsonFrames, Timeouts, frame_error
from .streaming import HttpProvider, usage_from


class OpenAICompatProvider(HttpProvider):
    def __init__(
        self,
        config: ProviderConfig,
        info: ProviderInfo,
        who: Describe,
        *,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        include_usage: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(config, info, who, timeouts=timeouts, transport=transport)
        self.include_usage = include_usage

    def path(self, request: ChatRequest) -> str:
        return "/chat/completions"

    async def server_window(self) -> int | None:
        """The window a self-hosted server says it has (llama.cpp, vLLM, Ollama); hosted
        providers are not asked (their windows are documented)."""
        if self.info.name != "openai":
            return None
        return await window.server_window(self._client, self.info.model)

    def body(self, request: ChatRequest) -> dict[str, object]:
        body: dict[str, object] = {
            "model": self.model(request),
            "messages": request.messages(),
            "stream": True,
            "max_tokens": request.max_tokens,
        }
        if self.include_usage:
            body["stream_options"] = {"include_usage": True}
        body.update(params.select(self.info.name, request.sampling))
        return body

    async def parse_stream(self, frames: JsonFrames, request: ChatRequest) -> AsyncIterator[Delta]:
        started = False
        finish: str | None = None
        usage: Usage | None = None
        async for frame in frames:
            problem = frame_error(self.who, frame, started=started)
            if problem is not None:
                raise problem
            usage = usage_from(frame.get("usage")) or usage
            choice = _first_choice(frame)
            if choice is None:
                continue  # usage-only frames, Cloudflare's trailing native frame
            delta = choice.get("delta") or choice.get("message") or {}
            text = delta.get("content") if isinstance(delta, Mapping) else None
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

    async def parse_whole(self, body: object, request: ChatRequest) -> AsyncIterator[Delta]:
        """A JSON completion where a stream was asked for: the answer in one piece."""
        if not isinstance(body, Mapping):
            raise errors.ProviderUnavailable(self.who.display, "unexpected response body", hint="try again")
        problem = frame_error(self.who, body, started=False)
        if problem is not None:
            raise problem
        choice = _first_choice(body)
        if choice is None:
            raise errors.ProviderUnavailable(self.who.display, "response without choices", hint="try again")
        message = choice.get("message") or {}
        text = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(text, str) and text:
            yield Delta(text=text)
        yield Delta(finish_reason=str(choice.get("finish_reason") or "stop"), usage=usage_from(body.get("usage")))


def _first_choice(frame: Mapping[str, object]) -> Mapping[str, object] | None:
    choices = frame.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
        return choices[0]
    return None
