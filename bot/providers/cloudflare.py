"""Cloudflare Workers AI, native endpoint: ``POST {base}/accounts/{id}/ai/run/{model}``.

Wire format (``reference/providers.md``, model schema ``llama-3.1-70b-instruct.json``):

* request: ``{"messages": [...], "stream": true, "max_tokens": N, ...}`` and
  nothing else: validation is strict (an unknown field is error 5006).
  ``max_tokens`` is always sent, because its default is 256;
* stream: ``data: {"response": "…", "p": "…"}`` frames (``p`` is padding),
  a final ``{"response": "", "usage": {...}}`` frame, then ``data: [DONE]``.
  There is no finish reason: an answer that used all of ``max_tokens`` was
  cut by the limit, and a stream without ``[DONE]`` was interrupted;
* errors: the v4 envelope ``{"result": null, "success": false, "errors":
  [{"code": N, "message": "…"}], "messages": []}``, mapped by code
  (``cloudflare_error``), falling back to the HTTP status;
* the 24,000-token window counts ``max_tokens`` (the router budgets that).

``cloudflare_error`` and ``parse_native_stream`` are shared with Dataoorts,
which serves the same catalogue behind the same envelope.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping

import httpx

from .. import errors
from ..retry_after import retry_after
from ..settings import ProviderConfig
from . import params
from .base import ChatRequest, Delta, ProviderInfo, Usage
from .http import DEFAULT_TIMEOUTS, Describe, JsonFrames, Timeouts, error_message, status_error
from .streaming import HttpProvider, cut_by_limit, usage_from

CAPACITY = 3040
DAILY_QUOTA = 3036
AUTH = 10000
CONTEXT_EXCEEDED = (5021, 3010)
TOO_LARGE = 3006
TIMEOUTS = (3007, 3008)
SCHEMA = 5006
BAD_MODEL = (5007, 3042)


def seconds_to_midnight_utc(now: dt.datetime | None = None) -> float:
    """The daily free allocation resets at 00:00 UTC."""
    now = now or dt.datetime.now(dt.UTC)
    midnight = (now + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - now).total_seconds()


def error_code(body: object) -> int | None:
    """The numeric code of a v4 envelope's first error (or of an ``error`` object)."""
    _, code = error_message(body)
    try:
        return int(code) if code is not None else None  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def cloudflare_error(
    who: Describe, status: int | None, body: object, headers: Mapping[str, str]
) -> errors.ProviderError:
    """Map a Workers AI error (HTTP status and envelope code) to a typed error."""
    message, _ = error_message(body)
    code = error_code(body)
    name = who.display
    if code == AUTH:
        account = " and CLOUDFLARE_ACCOUNT_ID" if who.prefix == "CLOUDFLARE" else ""
        return errors.AuthFailed(name, message, status=status, hint=f"check {who.key_env}{account}")
    if code == DAILY_QUOTA:
        return errors.QuotaExceeded(
            name,
            message,
            status=status,
            hint="the daily free allocation is used up until 00:00 UTC",
            cool_for=seconds_to_midnight_utc(),
        )
    if code == CAPACITY:
        return errors.RateLimited(
            name, message, status=status, retry_after=retry_after(headers), hint="it is out of capacity; try again shortly"
        )
    if code in CONTEXT_EXCEEDED or code == TOO_LARGE:
        return errors.ContextTooLong(name, message, status=status, hint="start a new thread")
    if code in TIMEOUTS:
        return errors.ProviderTimeout(name, message, status=status, hint="try again")
    if code == SCHEMA:
        return errors.BadRequest(name, message, status=status, hint="it refused a request field; check the BOT_* sampling settings")
    if code in BAD_MODEL:
        return errors.NotFound(name, message, status=status, hint=f"check {who.model_env}")
    if status is None or status < 400:
        return errors.ProviderUnavailable(name, message, status=None, hint="try again shortly")
    return status_error(who, status, body, headers)


async def parse_native_stream(
    who: Describe, frames: JsonFrames, max_tokens: int
) -> AsyncIterator[Delta]:
    """Deltas from Workers AI's native SSE (see the module docstring)."""
    started = False
    usage: Usage | None = None
    finish: str | None = None
    async for frame in frames:
        if frame.get("errors") or frame.get("error") or frame.get("success") is False:
            if started:
                message, _ = error_message(dict(frame))
                raise errors.StreamInterrupted(who.display, message, hint="the answer is incomplete")
            raise cloudflare_error(who, None, dict(frame), {})
        usage = usage_from(frame.get("usage")) or usage
        text = frame.get("response")
        if isinstance(text, str) and text:
            started = True
            yield Delta(text=text)
        if frame.get("finish_reason"):
            finish = str(frame["finish_reason"])
    if not frames.done and finish is None:
        if not started:
            raise errors.ProviderUnavailable(who.display, "empty stream", hint="try again")
        raise errors.StreamInterrupted(who.display, "stream ended without [DONE]", hint="the answer is incomplete")
    if finish is None:
        finish = "length" if cut_by_limit(usage, max_tokens) else "stop"
    yield Delta(finish_reason=finish, usage=usage)


async def parse_envelope(who: Describe, body: object, max_tokens: int) -> AsyncIterator[Delta]:
    """A whole answer in the v4 envelope: ``{"result": {"response", "usage"}, "success": true}``."""
    if not isinstance(body, Mapping):
        raise errors.ProviderUnavailable(who.display, "unexpected response body", hint="try again")
    result = body.get("result")
    if body.get("success") is False or body.get("errors") or not isinstance(result, Mapping):
        raise cloudflare_error(who, None, dict(body), {})
    text = result.get("response")
    usage = usage_from(result.get("usage"))
    if isinstance(text, str) and text:
        yield Delta(text=text)
    elif text is not None and not isinstance(text, str):
        raise errors.ProviderUnavailable(who.display, "the answer is not text", hint="try again")
    finish = "length" if cut_by_limit(usage, max_tokens) else "stop"
    yield Delta(finish_reason=finish, usage=usage)


class WorkersEnvelope:
    """Errors and replies in the Cloudflare v4 envelope (Workers AI, and Dataoorts which mirrors it)."""

    who: Describe

    def error_for(self, status: int, body: object, headers: Mapping[str, str]) -> errors.ProviderError:
        return cloudflare_error(self.who, status, body, headers)

    def parse_stream(self, frames: JsonFrames, request: ChatRequest) -> AsyncIterator[Delta]:
        return parse_native_stream(self.who, frames, request.max_tokens)

    def parse_whole(self, body: object, request: ChatRequest) -> AsyncIterator[Delta]:
        return parse_envelope(self.who, body, request.max_tokens)


class CloudflareProvider(WorkersEnvelope, HttpProvider):
    def __init__(
        self,
        config: ProviderConfig,
        info: ProviderInfo,
        who: Describe,
        *,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(config, info, who, timeouts=timeouts, transport=transport)
        if not config.account_id:
            raise errors.ConfigError("CLOUDFLARE_ACCOUNT_ID is not set")
        self.account_id = config.account_id

    def path(self, request: ChatRequest) -> str:
        return f"/accounts/{self.account_id}/ai/run/{self.model(request)}"

    def body(self, request: ChatRequest) -> dict[str, object]:
        body: dict[str, object] = {
            "messages": [{"role": m["role"], "content": m["content"] or ""} for m in request.messages()],
            "stream": True,
            "max_tokens": request.max_tokens,
        }
        body.update(params.select(self.info.name, request.sampling))
        return body
