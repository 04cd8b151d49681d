"""The request/response driver every HTTP provider shares.

A subclass says where to POST (``path``), what to send (``body``) and how to
read a stream (``parse_stream``) or a whole JSON answer (``parse_whole``);
``HttpProvider.stream`` does the rest the same way for all of them: the
status check and error mapping, SSE versus JSON by ``Content-Type``, the
first-token and whole-turn deadlines (around the whole exchange, so a
server that accepts the connection and never sends its headers is bounded
too), cleaning the text and mapping transport errors (before
the first token they are retryable, after it an interruption).  A stream that
completes without any text is an error too (retryable): an empty answer
helps nobody.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping

import httpx
from httpx_aiohttp import AiohttpTransport

from .. import errors
from ..settings import ProviderConfig
from .base import ChatRequest, Delta, ProviderInfo, Usage
from .deadline import within
from .http import (
    DEFAULT_TIMEOUTS,
    Describe,
    JsonFrames,
    Timeouts,
    read_error_body,
    status_error,
    transport_error,
)

#: End-of-turn tokens some servers leak into the text (DeepInfra's ``</s>``).
LEAKED_TOKENS = ("</s>", "<|eot_id|>", "<|eom_id|>", "<|end_of_text|>")


class TextCleaner:
    """Drops leading whitespace of an answer and leaked end-of-turn tokens."""

    def __init__(self) -> None:
        self.seen_text = False

    def feed(self, text: str) -> str:
        for token in LEAKED_TOKENS:
            text = text.removesuffix(token)
        if not self.seen_text:
            text = text.lstrip()
            self.seen_text = bool(text)
        return text


#: One connection per answer streaming: httpx's default cap (100) made the 101st concurrent
#: answer wait for a free connection and fail with a pool timeout after 10 s (bench: 500 at once).
LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=100)
#: The same for aiohttp's connector under httpx: it reads "no cap" as its own default of 100, so
#: the transport is given 0, aiohttp's "no cap" (500 answers at once: 200 waited, then failed).
TRANSPORT_LIMITS = httpx.Limits(max_connections=0, max_keepalive_connections=100)


class HttpProvider:
    """Base of the HTTP providers; see the module docstring."""

    def __init__(
        self,
        config: ProviderConfig,
        info: ProviderInfo,
        who: Describe,
        *,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.info = info
        self.config = config
        self.who = who
        self.timeouts = timeouts
        headers = {"Accept": "text/event-stream, application/json"}
        if config.api_key is not None:
            headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
        self._client = httpx.AsyncClient(
            base_url=config.base_url,
            headers=headers,
            timeout=self.http_timeout(),
            # httpx's API over aiohttp's connections: about a third less CPU per streamed piece
            # than httpcore's (``python -m bench transport``)
            transport=transport or AiohttpTransport(limits=TRANSPORT_LIMITS),
            limits=LIMITS,
        )

    # -- what subclasses provide -------------------------------------------------------

    def http_timeout(self) -> httpx.Timeout:
        return self.timeouts.httpx()

    def first_token_timeout(self) -> float | None:
        """Seconds from sending a request to its first text (None: only the turn deadline)."""
        return self.timeouts.first_token

    def path(self, request: ChatRequest) -> str:
        raise NotImplementedError

    def model(self, request: ChatRequest) -> str:
        """The model id this request asks for: the channel's choice, else the provider's setting."""
        return request.model or self.info.model

    def body(self, request: ChatRequest) -> dict[str, object]:
        raise NotImplementedError

    def parse_stream(self, frames: JsonFrames, request: ChatRequest) -> AsyncIterator[Delta]:
        raise NotImplementedError

    def parse_whole(self, body: object, request: ChatRequest) -> AsyncIterator[Delta]:
        raise NotImplementedError

    def error_for(self, status: int, body: object, headers: Mapping[str, str]) -> errors.ProviderError:
        return status_error(self.who, status, body, headers)

    # -- the driver ------------------------------------------------------------------------

    async def aclose(self) -> None:
        await self._client.aclose()

    async def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        now = time.monotonic()
        deadline = request.deadline if request.deadline is not None else now + self.timeouts.turn
        wait = self.first_token_timeout()
        first = now + wait if wait is not None else None
        cleaner = TextCleaner()
        state = {"started": False}

        def started() -> bool:
            return state["started"]

        try:
            async for delta in within(self._exchange(request), deadline, self.who, started, first=first):
                if delta.text:
                    text = cleaner.feed(delta.text)
                    if text is not delta.text:
                        if not text and delta.finish_reason is None and delta.usage is None:
                            continue
                        delta = Delta(text, delta.finish_reason, delta.usage)
                state["started"] = state["started"] or bool(delta.text)
                if delta.finish_reason is not None and not state["started"]:
                    raise errors.ProviderUnavailable(
                        self.who.display, "empty answer", hint="it sent an empty answer; try again"
                    )
                yield delta
        except httpx.HTTPError as exc:
            raise transport_error(self.who, exc, started=state["started"]) from exc

    async def _exchange(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """The request and its response's deltas, as one iterator the deadlines can bound."""
        async with self._client.stream("POST", self.path(request), json=self.body(request)) as response:
            async for delta in self._deltas(response, request):
                yield delta

    def not_an_api(self, detail: str) -> errors.ProviderError:
        """A 2xx/3xx answer no API would give: the base URL points somewhere else."""
        return errors.NotFound(
            self.who.display, detail, hint=f"check {self.who.base_env}: it did not answer like the API"
        )

    async def _deltas(self, response: httpx.Response, request: ChatRequest) -> AsyncIterator[Delta]:
        if response.status_code >= 400:
            body = await read_error_body(response)
            raise self.error_for(response.status_code, body, response.headers)
        if response.status_code >= 300:
            raise self.not_an_api(f"redirected ({response.status_code})")
        kind = response.headers.get("content-type", "")
        if "text/event-stream" in kind:
            frames = JsonFrames(self.who, response)
            async for delta in self.parse_stream(frames, request):
                frames.started = frames.started or bool(delta.text)
                yield delta
            return
        body = await read_error_body(response)  # a JSON body where a stream was asked for
        if isinstance(body, str):
            raise self.not_an_api("neither SSE nor JSON")
        async for delta in self.parse_whole(body, request):
            yield delta


def usage_from(raw: object) -> Usage | None:
    """``Usage`` from an OpenAI/Cloudflare ``usage`` object (with DeepInfra's ``estimated_cost``)."""
    if not isinstance(raw, Mapping):
        return None
    try:
        prompt = int(raw.get("prompt_tokens") or 0)
        completion = int(raw.get("completion_tokens") or 0)
    except (TypeError, ValueError):
        return None
    cost = raw.get("estimated_cost")
    if isinstance(cost, bool) or not isinstance(cost, (int, float)):
        cost = None
    return Usage(prompt, completion, float(cost) if cost is not None else None)


def cut_by_limit(usage: Usage | None, max_tokens: int) -> bool:
    """No finish reason on the wire: the answer was cut when it used the whole budget."""
    return usage is not None and usage.completion_tokens >= max_tokens
