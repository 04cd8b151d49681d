"""Who may ask, and how much: allowlists, block lists, admins, request rates and daily budgets.

``AccessPolicy.admit`` runs before a request reaches a platform or a provider.
A blocked caller is ignored silently (``Blocked``); a caller over a quota gets
a polite refusal that says when to try again (``QuotaReached``).  Admins are
exempt from quotas.  Request rates are kept in memory per process and counted
before any ``await``, so requests arriving together cannot all slip through.

Daily budgets hold under concurrency by *reservation*.  ``admit`` returns an
``Admission`` that holds the request's worst case (tokens and cost) in process
memory, per daily key (``user:U``, ``channel:C``), until ``settle()``.  A
request is refused while ``used today (the ledger) + held by answers in
flight`` already reaches a budget; its own reservation is not part of the
test, so the first question of the day goes through even when its worst case
alone exceeds the budget.  With reservations that cover each answer's real
usage, the ledger can end at most one answer beyond a budget, however many
questions arrive at once.  The ledger stays the source of truth across
restarts.

Replicas sharing a PostgreSQL database (``store.shared``) share the rates and
the reservations too: each admission is one transaction under the advisory
locks of its keys, which reads the rate hits of the last minute, the ledger
and every live reservation, decides by the same rules, and records its hit and
its reservation (``shared_limits``).  A reservation whose owner has stopped
heartbeating for ``LEASE`` seconds stops counting.  So the property above holds
across replicas.  On SQLite everything stays in this process's memory.

The worst case is prompt + ``max_tokens``.  ``admit`` runs before the history
is read, so the caller reserves an estimate first (the output cap plus a
rough count of the question) and raises it with ``Admission.grow`` once the
fitted prompt is known (``RelayService`` does so right after routing).  An
answer admitted between those two moments is judged on the estimate; a cost
reservation is only as good as the configured prices (a provider that only
reports its cost afterwards reserves 0).

``settle`` (after the usage is in the ledger) and ``release`` (on any other
path) drop the reservation; both are idempotent, so a ``finally`` can always
call them.  ``grow``, ``settle`` and ``release`` are coroutines (the shared
variant writes to the database; the in-process one returns at once).  The ledger is read before the decision and the decision and the
reservation happen with no ``await`` between them, so two admissions never see
the same room.  An answer that settles while the ledger is being read is
counted from its reservation (never missed, at worst counted twice for that
one decision).
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from . import shared_limits
from .errors import Blocked, QuotaReached
from .settings import Settings
from .shared_limits import Ask, QuotaReading, SharedAdmission
from .store import Store


@dataclass(frozen=True, slots=True)
class Caller:
    platform: str
    user: str | None
    channel: str
    workspace: str | None = None  # Slack team id, Discord guild id
    roles: frozenset[str] = field(default_factory=frozenset)
    direct: bool = False  # a direct message: channel allowlists do not apply


@dataclass(frozen=True, slots=True)
class DailyUsage:
    """A caller's usage since midnight UTC (the ledger), beside their own daily budget (0: none;
    admins have none)."""

    tokens: int
    cost: float
    max_tokens: int = 0
    max_cost: float = 0.0


#: Seconds a caller is told to wait when answers in flight hold the rest of a budget (a guess:
#: an answer takes seconds to a minute).
IN_FLIGHT_RETRY = 30.0


def _wait_text(seconds: float) -> str:
    seconds = max(1, int(seconds + 0.999))
    if seconds < 90:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def seconds_to_midnight_utc(now: float) -> float:
    today = datetime.fromtimestamp(now, UTC)
    midnight = (today + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.timestamp() - now


def start_of_day_utc(now: float) -> float:
    return now - (86400 - seconds_to_midnight_utc(now))


@dataclass(frozen=True, slots=True)
class _Budget:
    """One daily budget a request counts against."""

    key: str  # "user:U1", "channel:C1": where reservations are held
    by: str  # the ledger grouping: "user" or "channel"
    id: str
    max_tokens: int
    max_cost: float
    whose: str  # "your", "this channel's"

    def reached(self, tokens: float, cost: float) -> bool:
        by_tokens = self.max_tokens > 0 and tokens >= self.max_tokens
        return by_tokens or (self.max_cost > 0 and cost >= self.max_cost)


class Admission(Protocol):
    """A request let in.  It holds its worst case against its daily budgets until settled or released."""

    keys: tuple[str, ...]

    async def grow(self, tokens: int, cost: float = 0.0) -> None:
        """Raise the reservation to at least ``tokens`` and ``cost``; never lowers it, never refuses."""

    async def settle(self) -> None:
        """The answer ended and its usage is in the ledger: the reservation is not needed any more."""

    async def release(self) -> None:
        """Stop holding the reservation.  Idempotent: safe on every path (error, cancellation)."""


class LocalAdmission:
    """An ``Admission`` held in this process's memory (SQLite: one process)."""

    def __init__(
        self, held: dict[str, set[LocalAdmission]], keys: tuple[str, ...], tokens: int, cost: float
    ) -> None:
        self._held = held
        self.keys = keys
        self.tokens = max(0, tokens)
        self.cost = max(0.0, cost)
        self.done = False
        for key in keys:
            held.setdefault(key, set()).add(self)

    async def grow(self, tokens: int, cost: float = 0.0) -> None:
        if not self.done:
            self.tokens = max(self.tokens, tokens)
            self.cost = max(self.cost, cost)

    async def settle(self) -> None:
        self._drop()

    async def release(self) -> None:
        self._drop()

    def _drop(self) -> None:
        if self.done:
            return
        self.done = True
        for key in self.keys:
            holders = self._held.get(key)
            if holders is not None:
                holders.discard(self)
                if not holders:  # idle keys do not pile up
                    del self._held[key]


class AccessPolicy:
    def __init__(self, settings: Settings, store: Store, *, owner: str = "") -> None:
        self.settings = settings
        self.store = store
        #: the process reservations belong to (the service's ``owner``, which heartbeats)
        self.owner = owner or uuid.uuid4().hex
        #: the database replicas share rates and reservations in; None: this process keeps them
        self._shared = shared_limits.pooled(store) if store.shared else None
        self._recent: dict[str, deque[float]] = {}
        #: daily key -> the admissions holding a reservation against it
        self._held: dict[str, set[LocalAdmission]] = {}

    def is_admin(self, caller: Caller) -> bool:
        return caller.user is not None and caller.user in self.settings.bot_admins

    def admits(self, caller: Caller) -> bool:
        """Whether ``caller`` may ask at all: on the platform's allowlists and on no block list."""
        return self.allowed(caller) and not self.blocked(caller)

    def allowed(self, caller: Caller) -> bool:
        """The platform's allowlists (each empty: everyone, everywhere)."""
        s = self.settings
        if caller.platform == "slack":
            return _listed(caller.user, s.slack_allowed_users) and (
                caller.direct or _listed(caller.channel, s.slack_allowed_channels)
            )
        if caller.platform != "discord":
            return True
        if not _listed(caller.user, s.discord_allowed_users):
            return False
        if caller.direct:  # a DM: only the user list can let it in once any other list is set
            places = s.discord_allowed_guilds or s.discord_allowed_channels or s.discord_allowed_roles
            return not places or bool(s.discord_allowed_users)
        return (
            _listed(caller.workspace, s.discord_allowed_guilds)
            and _listed(caller.channel, s.discord_allowed_channels)
            and (not s.discord_allowed_roles or bool(caller.roles & set(s.discord_allowed_roles)))
        )

    def blocked(self, caller: Caller) -> bool:
        s = self.settings
        return (
            (caller.user is not None and caller.user in s.bot_blocked_users)
            or caller.channel in s.bot_blocked_channels
            or (caller.workspace is not None and caller.workspace in s.bot_blocked_workspaces)
            or bool(caller.roles & set(s.bot_blocked_roles))
        )

    async def held(self, key: str) -> tuple[int, float]:
        """(tokens, cost) reserved against a daily key (``"user:U1"``) by answers in flight (on a
        shared database: by every replica's)."""
        if self._shared is not None:
            return await shared_limits.held(self._shared, key)
        holders = self._held.get(key, ())
        return sum(a.tokens for a in holders), sum(a.cost for a in holders)

    async def usage_today(self, caller: Caller, now: float | None = None) -> DailyUsage:
        """What ``caller`` used today (answers settled in the ledger) and their own daily budget."""
        if caller.user is None:
            return DailyUsage(0, 0.0)
        since = start_of_day_utc(time.time() if now is None else now)
        tokens, cost = await self.store.usage_of("user", caller.user, since=since)
        if self.is_admin(caller):  # admins are exempt from quotas
            return DailyUsage(tokens, cost)
        return DailyUsage(tokens, cost, self.settings.bot_user_daily_tokens, self.settings.bot_user_daily_cost)

    async def check(self, caller: Caller, now: float | None = None) -> None:
        """Raise ``Blocked`` or ``QuotaReached``; return when a request may go ahead (nothing held)."""
        await (await self.admit(caller, now=now)).release()

    async def admit(
        self, caller: Caller, *, reserve_tokens: int = 0, reserve_cost: float = 0.0, now: float | None = None
    ) -> Admission:
        """Let ``caller`` in, holding ``reserve_tokens`` and ``reserve_cost``; else raise
        ``Blocked`` or ``QuotaReached``.

        Call ``settle()`` (or ``release()``) on the result when the answer is over.
        """
        now = time.time() if now is None else now
        if self.blocked(caller):
            raise Blocked("blocked")
        if self.is_admin(caller):
            return LocalAdmission(self._held, (), 0, 0.0)
        if self._shared is not None:
            return await self._admit_shared(caller, reserve_tokens, reserve_cost, now)
        counted = self._count_request(caller, now)
        try:
            return await self._reserve(self._budgets(caller), reserve_tokens, reserve_cost, now)
        except QuotaReached:
            for key in counted:
                self._recent[key].remove(now)
            raise

    # -- request rates ----------------------------------------------------------------------

    def _rates(self, caller: Caller) -> list[tuple[str, int, str]]:
        """The limited request rates ``caller`` counts against: (key, per minute, who)."""
        s = self.settings
        keys = [(f"channel:{caller.channel}", s.bot_channel_requests_per_minute, "This channel is")]
        if caller.user is not None:
            keys.insert(0, (f"user:{caller.user}", s.bot_user_requests_per_minute, "You are"))
        return [k for k in keys if k[1] > 0]  # only limited keys keep timestamps

    def _count_request(self, caller: Caller, now: float) -> list[str]:
        """Check the per-minute rates and count this request (before any await); the keys counted."""
        keys = self._rates(caller)
        for key, per_minute, who in keys:
            self._rate(key, per_minute, now, who)
        for key, _, _ in keys:
            self._recent.setdefault(key, deque()).append(now)
        return [key for key, _, _ in keys]

    def _rate(self, key: str, per_minute: int, now: float, who: str) -> None:
        recent = self._recent.setdefault(key, deque())
        while recent and recent[0] <= now - 60:
            recent.popleft()
        if len(recent) >= per_minute:
            raise _too_fast(who, per_minute, recent[0] + 60 - now)

    # -- daily budgets ----------------------------------------------------------------------

    def _budgets(self, caller: Caller) -> list[_Budget]:
        s = self.settings
        channel = caller.channel
        budgets = [
            _Budget(
                f"channel:{channel}", "channel", channel,
                s.bot_channel_daily_tokens, s.bot_channel_daily_cost, "this channel's",
            )
        ]
        if caller.user is not None:
            user = caller.user
            budgets.insert(
                0, _Budget(f"user:{user}", "user", user, s.bot_user_daily_tokens, s.bot_user_daily_cost, "your")
            )
        return [b for b in budgets if b.max_tokens > 0 or b.max_cost > 0]

    async def _reserve(self, budgets: list[_Budget], tokens: int, cost: float, now: float) -> Admission:
        if not budgets:  # no daily budget applies: nothing to read, nothing to hold
            return LocalAdmission(self._held, (), tokens, cost)
        # Who held what *before* the ledger read: one that settles during the read is not missed.
        before = {b.key: set(self._held.get(b.key, ())) for b in budgets}
        since = start_of_day_utc(now)
        used = [await self.store.usage_of(b.by, b.id, since=since) for b in budgets]
        # No await from here on: the decision and the reservation are one step.
        for budget, (used_tokens, used_cost) in zip(budgets, used, strict=True):
            holders = before[budget.key] | self._held.get(budget.key, set())
            held = (sum(a.tokens for a in holders), sum(a.cost for a in holders))
            self._judge(budget, used_tokens, used_cost, held, now)
        return LocalAdmission(self._held, tuple(b.key for b in budgets), tokens, cost)

    async def _admit_shared(self, caller: Caller, tokens: int, cost: float, now: float) -> Admission:
        """Count and reserve in the shared database: one transaction per admission (``shared_limits``)."""
        assert self._shared is not None
        rates, budgets = self._rates(caller), self._budgets(caller)
        if not rates and not budgets:
            return LocalAdmission(self._held, (), 0, 0.0)
        ask = Ask(
            rates=[key for key, _, _ in rates],
            budgets=[(b.key, b.by, b.id) for b in budgets],
            reservation=uuid.uuid4().hex,
            tokens=max(0, tokens),
            cost=max(0.0, cost),
        )

        def judge(reading: QuotaReading) -> None:
            for key, per_minute, who in rates:
                count, oldest = reading.hits.get(key, (0, now))
                if count >= per_minute:
                    raise _too_fast(who, per_minute, oldest + 60 - now)
            for budget in budgets:
                seen = reading.budgets[budget.key]
                self._judge(budget, seen.used_tokens, seen.used_cost, (seen.held_tokens, seen.held_cost), now)

        await shared_limits.admit(self._shared, self.owner, ask, since=start_of_day_utc(now), now=now, judge=judge)
        return SharedAdmission(self._shared, ask.reservation, tuple(b.key for b in budgets), ask.tokens, ask.cost)

    @staticmethod
    def _judge(budget: _Budget, used_tokens: int, used_cost: float, held: tuple[float, float], now: float) -> None:
        """Raise ``QuotaReached`` when the ledger, or the ledger plus ``held`` (tokens and cost of
        the answers in flight), reaches ``budget``."""
        if budget.reached(used_tokens, used_cost):
            wait = seconds_to_midnight_utc(now)
            raise QuotaReached(
                f"That is {budget.whose} daily budget used up. "
                f"It resets at 00:00 UTC, in {_wait_text(wait)}.",
                wait,
            )
        if budget.reached(used_tokens + held[0], used_cost + held[1]):
            raise QuotaReached(
                f"The rest of {budget.whose} daily budget is held by answers still being written. "
                "Try again when they are done.",
                IN_FLIGHT_RETRY,
            )


def _too_fast(who: str, per_minute: int, wait: float) -> QuotaReached:
    return QuotaReached(
        f"{who} asking faster than {per_minute} questions a minute. Try again in {_wait_text(wait)}.", wait
    )


def _listed(value: str | None, allowlist: list[str]) -> bool:
    """On the allowlist, or the list is empty (everyone)."""
    return not allowlist or (value is not None and value in allowlist)
