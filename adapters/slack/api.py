"""One door to the Slack Web API: every call goes through ``SlackApi.call``.

slack_sdk errors are mapped to ``bot.errors`` here (``raise ... from``):

* HTTP 429 / ``ratelimited`` -> ``PlatformRateLimited(retry_after)``;
* ``message_not_in_streaming_state`` -> ``StreamClosed`` (a ``MessageGone``);
* ``message_not_found`` / ``channel_not_found`` / ``thread_not_found`` ->
  ``MessageGone``;
* ``missing_scope`` / ``not_in_channel`` -> ``PlatformError`` after one clear
  log line naming the scope or the channel;
* ``internal_error``-like codes, HTTP 5xx and network errors ->
  ``PlatformUnavailable`` (the reply stream tries a final edit again);
* anything else -> ``PlatformError``.

Calls that are not paced by the reply stream (placeholders, history, user
names) can ask for ``retries``: a 429 then waits its Retry-After and tries again.

``chat.postMessage`` has a limit of its own, about one message a second per
channel (docs.slack.dev "Rate limits"), apart from the per-workspace method
tiers: ``ChannelPosts`` spaces each channel's posts ``POST_EVERY`` apart, and a
429 on one holds that channel's next posts for its Retry-After.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import MessageGone, PlatformError, PlatformRateLimited, PlatformUnavailable, StreamClosed
from bot.retry_after import retry_after

log = logging.getLogger(__name__)

GONE = frozenset({"message_not_found", "channel_not_found", "thread_not_found", "cant_update_message"})
MAX_RETRY_AFTER = 60.0


def wait_of(error: SlackApiError) -> float:
    """Seconds a rate-limited call should wait: its Retry-After (capped), else 1 s."""
    wait = retry_after(getattr(error.response, "headers", None))
    return 1.0 if wait is None else min(wait, MAX_RETRY_AFTER)


#: Slack error codes that say "try again" (https://docs.slack.dev/reference/methods/chat.update).
TRANSIENT = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})


def error_code(error: SlackApiError) -> str:
    """Slack's ``error`` code of a failed call ("" when the body has none)."""
    data = getattr(error.response, "data", None)
    return str(data.get("error", "")) if isinstance(data, dict) else ""


def map_error(method: str, params: dict[str, Any], error: SlackApiError) -> PlatformError:
    """The ``bot.errors`` error for a failed Slack call (logging the ones an operator must fix)."""
    status = getattr(error.response, "status_code", None)
    data = getattr(error.response, "data", None)
    code = error_code(error)
    if status == 429 or code == "ratelimited":
        return PlatformRateLimited(f"slack {method}: rate limited", retry_after=wait_of(error))
    if code == "message_not_in_streaming_state":
        return StreamClosed(f"slack {method}: the stream has ended")
    if code in GONE:
        log.warning("slack %s: %s (channel %s)", method, code, params.get("channel", "?"))
        return MessageGone(f"slack {method}: {code}")
    if code == "missing_scope":
        needed = data.get("needed", "?") if isinstance(data, dict) else "?"
        log.error("slack %s failed: the app lacks the scope %r; add it and reinstall the app", method, needed)
        return PlatformError(f"slack {method}: missing scope {needed}")
    if code == "not_in_channel":
        log.error(
            "slack %s failed: the bot is not in channel %s; invite it with /invite",
            method,
            params.get("channel"),
        )
        return PlatformError(f"slack {method}: not in channel {params.get('channel')}")
    if code in TRANSIENT or (status is not None and status >= 500):
        return PlatformUnavailable(f"slack {method}: {code or f'HTTP {status}'}")
    return PlatformError(f"slack {method}: {code or f'HTTP {status}'}")


#: Seconds between two posts to one channel (Slack: "1 message per second per channel"), with
#: room for the calls' jitter on the way (at 1.0 s, 2 in 10 loads of a busy benchmark got a 429).
POST_EVERY = 1.1
#: Channels whose next post time is remembered (the oldest past ones are forgotten first).
MAX_CHANNELS = 10_000


class ChannelPosts:
    """Each channel's ``chat.postMessage`` calls, one every ``every`` seconds, in the order asked."""

    def __init__(self, every: float = POST_EVERY) -> None:
        self.every = every
        self._next: dict[str, float] = {}  # channel -> monotonic time its next post may go

    async def turn(self, channel: str) -> None:
        """Wait for this channel's next free slot (and take it)."""
        now = time.monotonic()
        at = max(now, self._next.get(channel, 0.0))
        self._next[channel] = at + self.every
        if len(self._next) > MAX_CHANNELS:
            self._next = {c: t for c, t in self._next.items() if t > now}
        if at > now:
            await asyncio.sleep(at - now)

    def hold(self, channel: str, seconds: float) -> None:
        """Slack said 429 for a post there: nothing more before ``seconds`` from now."""
        self._next[channel] = max(self._next.get(channel, 0.0), time.monotonic() + seconds)


class SlackApi:
    def __init__(self, client: AsyncWebClient, *, post_every: float = POST_EVERY) -> None:
        self.client = client
        self.calls = 0
        self.posts = ChannelPosts(post_every)
        #: methods Slack refused for a missing scope: optional calls (the :eyes: mark) skip them
        self.unscoped: set[str] = set()

    async def call(self, method: str, *, retries: int = 0, **params: Any) -> dict[str, Any]:
        """Call ``method``; a JSON body for the chat.*, assistant.*, agents.* and views.* methods (they
        take lists and objects), form data otherwise."""
        params = {k: v for k, v in params.items() if v is not None}
        for attempt in range(retries + 1):
            try:
                return await self._once(method, params)
            except PlatformRateLimited as exc:
                if attempt == retries:
                    raise
                log.info("slack %s rate limited; retrying in %.1fs", method, exc.retry_after)
                await asyncio.sleep(exc.retry_after)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel", "")) if method == "chat.postMessage" else ""
        if channel:
            await self.posts.turn(channel)
        self.calls += 1
        try:
            if method.startswith(("chat.", "assistant.", "agents.", "views.")):  # JSON bodies (views: nested objects)
                response = await self.client.api_call(method, json=params)
            else:
                response = await self.client.api_call(method, params=params)
        except SlackApiError as exc:
            error = map_error(method, params, exc)
            if error_code(exc) == "missing_scope":
                self.unscoped.add(method)
            if channel and isinstance(error, PlatformRateLimited):
                self.posts.hold(channel, error.retry_after)
            raise error from exc
        except (TimeoutError, SlackClientError, aiohttp.ClientError) as exc:
            raise PlatformUnavailable(f"slack {method}: {type(exc).__name__}") from exc
        data = response.data
        return data if isinstance(data, dict) else {}
