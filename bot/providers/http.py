"""What every HTTP provider shares: timeouts, error mapping, SSE frames.

Third-party exceptions (httpx, JSON) are mapped to ``bot.errors`` here, at the
boundary, so provider modules only deal with their own wire format.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp
import httpx
from httpx_sse import EventSource, SSEError

from .. import errors
from ..errors import ProviderError
from ..retry_after import retry_after
from .window import window_in_error

#: Longest Retry-After we honour before giving up on this provider for now.
MAX_RETRY_AFTER = 60.0


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float = 10.0
    read: float = 60.0  # longest gap between chunks: above AIGateway's 15 s keep-alives
    turn: float = 300.0  # a whole answer
    first_token: float = 15.0  # request sent → first text, per try (headers and keep-alives included)

    def httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=30.0, pool=10.0)


DEFAULT_TIMEOUTS = Timeouts()


def error_message(body: object) -> tuple[str, object]:
    """(message, code) from any of the error shapes providers use."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or ""), err.get("code") or err.get("type")
        if isinstance(err, str):
            return err, None
        errs = body.get("errors")
        if isinstance(errs, list) and errs and isinstance(errs[0], dict):
            return str(errs[0].get("message") or ""), errs[0].get("code")
        if body.get("object") == "error":
            return str(body.get("message") or ""), body.get("code")
        if "detail" in body:
            return str(body["detail"]), None
        if "message" in body:
            return str(body["message"]), body.get("code")
    if isinstance(body, str):
        return body[:200], None
    return "", None


@dataclass(frozen=True, slots=True)
class Describe:
    """How to name a provider and its key in messages users read."""

    display: str
    key_env: str  # "DEEPINFRA_TOKEN"
    prefix: str = ""  # "DEEPINFRA": names <PREFIX>_BASE_URL and <PREFIX>_MODEL in hints

    @property
    def base_env(self) -> str:
        return f"{self.prefix}_BASE_URL" if self.prefix else "the base URL"

    @property
    def model_env(self) -> str:
        return f"{self.prefix}_MODEL" if self.prefix else "the model name"


def status_error(
    who: Describe, status: int, body: object, headers: Mapping[str, str]
) -> ProviderError:
    """Map an HTTP error status (and body) to a typed error with a helpful hint."""
    message, code = error_message(body)
    name = who.display
    lowered = message.lower()
    if status in (401, 403):
        return errors.AuthFailed(name, message, status=status, hint=f"check {who.key_env}")
    if status == 402:
        return errors.QuotaExceeded(name, message, status=status, hint="add credit to the account")
    if status == 404:
        return errors.NotFound(name, message, status=status, hint=f"check {who.base_env} and {who.model_env}")
    if status == 413 or code in TOO_LONG_CODES or _says_too_long(lowered):
        return too_long(who, message, body, status)
    if status == 429:
        wait = retry_after(headers)
        return errors.RateLimited(
            name, message, status=status, retry_after=wait, hint="try again in a minute"
        )
    if status in (408, 504):
        return errors.ProviderTimeout(name, message, status=status, hint="try again")
    if status == 409 or status >= 500:
        return errors.ProviderUnavailable(name, message, status=status, hint="try again shortly")
    return errors.BadRequest(name, message, status=status, hint="the request was not accepted")


#: Error codes (``code`` or ``type``) that mean "the prompt does not fit the window".
TOO_LONG_CODES = frozenset({"context_length_exceeded", "exceed_context_size_error"})


#: How servers say it in words (never "context deadline exceeded", a Go timeout).
TOO_LONG_WORDS = ("context length", "context size", "context window", "maximum context")


def _says_too_long(lowered: str) -> bool:
    return any(words in lowered for words in TOO_LONG_WORDS)


def too_long(who: Describe, message: str, body: object, status: int | None) -> errors.ContextTooLong:
    """The prompt does not fit: say which setting holds the window (the server's, when it says)."""
    window = window_in_error(body, message)
    name = f"{who.prefix}_CONTEXT_WINDOW" if who.prefix else "the context window setting"
    hint = f"start a new thread, or check {name}"
    if window is not None:
        hint += f" (the server's window is {window:,} tokens)"
    return errors.ContextTooLong(who.display, message, status=status, hint=hint, window=window)


async def read_error_body(response: httpx.Response) -> object:
    raw = await response.aread()
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def transport_error(who: Describe, exc: httpx.HTTPError, *, started: bool) -> ProviderError:
    """Map an httpx exception; after the first token it is an interruption."""
    if started:
        return errors.StreamInterrupted(who.display, str(exc), hint="the answer is incomplete")
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientError):  # the aiohttp transport maps some of its errors loosely
        if isinstance(cause, aiohttp.ClientConnectorError):
            return errors.ProviderUnavailable(who.display, str(exc), hint="could not connect")
        if isinstance(cause, aiohttp.ServerTimeoutError):
            return errors.ProviderTimeout(who.display, str(exc), hint="try again")
        return errors.ProviderUnavailable(who.display, str(exc), hint="the connection failed")
    if isinstance(exc, httpx.TimeoutException):
        return errors.ProviderTimeout(who.display, str(exc), hint="try again")
    if isinstance(exc, httpx.ConnectError):
        return errors.ProviderUnavailable(who.display, str(exc), hint="could not connect")
    return errors.ProviderUnavailable(who.display, str(exc), hint="the connection failed")


class JsonFrames:
    """Decoded JSON ``data:`` frames of an SSE response, until ``[DONE]``.

    SSE framing (CRLF, comments and keep-alives, frames split across reads,
    incremental UTF-8) is httpx-sse's job.  ``done`` tells afterwards whether
    ``[DONE]`` arrived (EOF without it may be a cut stream).  An ``event:
    error`` frame is passed on as ``{"error": ...}``; a frame that is not JSON
    is a typed error: retryable before the first token (``started``), an
    interruption after it.
    """

    def __init__(self, who: Describe, response: httpx.Response) -> None:
        self.who = who
        self.response = response
        self.done = False
        self.started = False  # set by the parser once text has been yielded
        response.encoding = "utf-8"  # SSE is always UTF-8, whatever the header says

    async def __aiter__(self) -> AsyncIterator[dict[str, object]]:
        try:
            async for event in EventSource(self.response).aiter_sse():
                data = event.data
                if not data:
                    continue
                if data.strip() == "[DONE]":
                    self.done = True
                    return
                try:
                    frame = json.loads(data)
                except ValueError as exc:
                    raise self.broken(f"bad frame: {data[:80]!r}") from exc
                if event.event == "error":
                    frame = {"error": frame.get("error", frame) if isinstance(frame, dict) else frame}
                if isinstance(frame, dict):
                    yield frame
        except SSEError as exc:
            raise errors.BadRequest(self.who.display, str(exc)) from exc

    def broken(self, detail: str) -> ProviderError:
        if self.started:
            return errors.StreamInterrupted(self.who.display, detail, hint="the answer is incomplete")
        return errors.ProviderUnavailable(self.who.display, detail, hint="it sent a broken stream; try again")


def frame_error(who: Describe, frame: Mapping[str, object], *, started: bool) -> ProviderError | None:
    """A mid-stream error frame (``error``, ``object: error``), if this is one."""
    if not frame.get("error") and frame.get("object") != "error":
        return None
    message, code = error_message(dict(frame))
    if not started and (code in TOO_LONG_CODES or _says_too_long(message.lower())):  # a refusal sent as a frame
        return too_long(who, message, dict(frame), None)
    if started:
        return errors.StreamInterrupted(who.display, message, hint="the answer is incomplete")
    return errors.ProviderUnavailable(who.display, message, hint="try again shortly")
