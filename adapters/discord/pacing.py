"""Edit pacing for Discord: per-channel budgets and the rate-limit signals discord.py hides.

discord.py answers a 429 by sleeping ``retry_after`` and retrying, and waits
silently when a bucket's ``remaining`` reaches 0.  A streaming reply that
kept editing on its own clock would queue edits behind those waits and lag.
``RateMonitor`` is an ``aiohttp.TraceConfig`` on discord.py's own session: it
sees every response's status and ``X-RateLimit-*`` headers, per channel (or
per interaction token), and turns them into a hold.  The surfaces consult the
hold before an *interim* edit and raise ``PlatformRateLimited`` instead of
calling Discord, which makes ``ReplyStream`` pause the channel's budget and
lengthen its interval; final edits always go through.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from types import SimpleNamespace

import aiohttp

from bot.pacing import INTERIM, EditBudget
from bot.retry_after import retry_after

_CHANNEL = re.compile(r"/channels/(\d+)/messages")
_WEBHOOK = re.compile(r"/(?:webhooks/\d+|interactions/\d+)/([^/?]+)")
#: Channels and interaction tokens remembered (each interaction has its own token).
MAX_KEYS = 10_000
#: Grace added to a hold so the next edit lands after the bucket has reset.
SLACK = 0.05


def route_key(path: str) -> str | None:
    """The rate-limit key of a REST path: a channel's messages, or an interaction token."""
    if match := _CHANNEL.search(path):
        return f"channel:{match.group(1)}"
    if match := _WEBHOOK.search(path):
        return f"token:{match.group(1)}"
    return None


@dataclass(slots=True)
class Signal:
    limited: int = 0  # 429s seen so far
    hold_until: float = 0.0  # monotonic time before which an edit would wait or be refused


class RateMonitor:
    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self.max_keys = max_keys
        #: oldest first, so the keys of long-finished answers are dropped first
        self.signals: OrderedDict[str, Signal] = OrderedDict()
        self.trace = aiohttp.TraceConfig()
        self.trace.on_request_end.append(self._on_end)

    async def _on_end(
        self, session: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        key = route_key(params.url.path)
        if key is not None:
            self.observe(key, params.response.status, params.response.headers)

    def observe(self, key: str, status: int, headers: object) -> None:
        get = headers.get  # type: ignore[attr-defined]
        signal = self.signal(key)
        now = time.monotonic()
        if status == 429:
            signal.limited += 1
            reset = _number(get("X-RateLimit-Reset-After"))
            wait = reset or retry_after(headers) or 1.0  # type: ignore[arg-type]
            signal.hold_until = max(signal.hold_until, now + wait + SLACK)
        elif get("X-RateLimit-Remaining") == "0":
            wait = _number(get("X-RateLimit-Reset-After")) or 0.0
            signal.hold_until = max(signal.hold_until, now + wait + SLACK)

    def signal(self, key: str) -> Signal:
        signal = self.signals.get(key)
        if signal is None:
            signal = self.signals[key] = Signal()
            while len(self.signals) > self.max_keys:
                self.signals.popitem(last=False)
        else:
            self.signals.move_to_end(key)
        return signal


def _number(value: object) -> float | None:
    try:
        return float(value) if value is not None else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


class Watch:
    """One sink's view of a key: has a new 429 happened, or is an edit held right now?"""

    def __init__(self, monitor: RateMonitor, key: str) -> None:
        self.monitor = monitor
        self.key = key
        self._seen = monitor.signal(key).limited

    def wait_needed(self) -> float:
        """Seconds to hold an interim edit (0 when it can go now)."""
        signal = self.monitor.signal(self.key)
        held = max(0.0, signal.hold_until - time.monotonic())
        if signal.limited != self._seen:
            self._seen = signal.limited
            return max(held, SLACK)
        return held


#: Discord's message bucket per channel: 5 writes per 5 s (``X-RateLimit-Limit: 5``).
BUCKET = 5


class Budgets:
    """One ``EditBudget`` per Discord channel (threads are channels of their own): a token bucket
    of ``BUCKET`` writes refilled at ``per_minute``.  (A strict 5-in-any-5-s window was tried:
    a reply editing once a second then has no room left for its final edit, which waited
    ~0.25 s longer; discord.py and ``RateMonitor`` catch the rare burst past the bucket.)

    Interim edits leave room for the final writes of the replies streaming there (``reserve``,
    from interim edits only): with several answers in one channel the bucket is full when
    their messages end, instead of spent on interim edits of their first messages."""

    def __init__(self, per_minute: float) -> None:
        self.per_minute = per_minute
        self._budgets: dict[int, EditBudget] = {}

    def for_channel(self, channel_id: int) -> EditBudget:
        budget = self._budgets.get(channel_id)
        if budget is None:
            budget = self._budgets[channel_id] = EditBudget(
                self.per_minute, burst=BUCKET, reserve=True, keep_from=INTERIM
            )
        return budget
