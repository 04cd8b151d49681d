"""Who may ask, and how much: block lists, admins, request rates and daily budgets.

``AccessPolicy.check`` runs before a request reaches a provider.  A blocked
caller is ignored silently; a caller over a quota gets a polite refusal that
says when to try again.  Admins are exempt from quotas.  Daily budgets are read
from the usage ledger (so they hold across restarts); request rates are kept
in memory per process.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from .errors import Blocked, QuotaReached
from .settings import Settings
from .store import Store


@dataclass(frozen=True, slots=True)
class Caller:
    platform: str
    user: str | None
    channel: str
    workspace: str | None = None  # Slack team id, Discord guild id
    roles: frozenset[str] = field(default_factory=frozenset)


def _wait_text(seconds: float) -> str:
    seconds = max(1, int(seconds + 0.999))
    if seconds < 90:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def seconds_to_midnight_utc(now: float) -> float:
    today = datetime.fromtimestamp(now, timezone.utc)
    midnight = (today + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.timestamp() - now


def start_of_day_utc(now: float) -> float:
    return now - (86400 - seconds_to_midnight_utc(now))


class AccessPolicy:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._recent: dict[str, deque[float]] = {}

    def is_admin(self, caller: Caller) -> bool:
        return caller.user is not None and caller.user in self.settings.bot_admins

    def blocked(self, caller: Caller) -> bool:
        s = self.settings
        return (
            (caller.user is not None and caller.user in s.bot_blocked_users)
            or caller.channel in s.bot_blocked_channels
            or (caller.workspace is not None and caller.workspace in s.bot_blocked_workspaces)
            or bool(caller.roles & set(s.bot_blocked_roles))
        )

    async def check(self, caller: Caller, now: float | None = None) -> None:
        """Raise ``Blocked`` or ``QuotaReached``; return when the request may go ahead."""
        now = time.time() if now is None else now
        if self.blocked(caller):
            raise Blocked("blocked")
        if self.is_admin(caller):
            return
        s = self.settings
        keys = [(f"channel:{caller.channel}", s.bot_channel_requests_per_minute, "This channel is")]
        if caller.user is not None:
            keys.insert(0, (f"user:{caller.user}", s.bot_user_requests_per_minute, "You are"))
        keys = [k for k in keys if k[1] > 0]  # only limited keys keep timestamps
        for key, per_minute, who in keys:
            self._rate(key, per_minute, now, who)
        # Counted before any await, so requests arriving together cannot all slip through.
        for key, _, _ in keys:
            self._recent.setdefault(key, deque()).append(now)
        try:
            if caller.user is not None:
                await self._daily("user", caller.user, s.bot_user_daily_tokens, s.bot_user_daily_cost, now, "your")
            await self._daily(
                "channel", caller.channel, s.bot_channel_daily_tokens, s.bot_channel_daily_cost, now, "this channel's"
            )
        except QuotaReached:
            for key, _, _ in keys:
                self._recent[key].remove(now)
            raise

    def _rate(self, key: str, per_minute: int, now: float, who: str) -> None:
        recent = self._recent.setdefault(key, deque())
        while recent and recent[0] <= now - 60:
            recent.popleft()
        if len(recent) >= per_minute:
            wait = recent[0] + 60 - now
            raise QuotaReached(
                f"{who} asking faster than {per_minute} questions a minute. Try again in {_wait_text(wait)}.",
                wait,
            )

    async def _daily(self, by: str, key: str, max_tokens: int, max_cost: float, now: float, whose: str) -> None:
        if max_tokens <= 0 and max_cost <= 0:
            return
        tokens, cost = await self.store.usage_of(by, key, since=start_of_day_utc(now))
        if (max_tokens > 0 and tokens >= max_tokens) or (max_cost > 0 and cost >= max_cost):
            wait = seconds_to_midnight_utc(now)
            raise QuotaReached(
                f"That is {whose} daily budget used up. It resets at 00:00 UTC, in {_wait_text(wait)}.", wait
            )
