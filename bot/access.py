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
restarts; reservations are per process (a shared version for several
replicas belongs behind the store interface later).

The worst case is prompt + ``max_tokens``.  ``admit`` runs before the history
is read, so the caller reserves an estimate first (the output cap plus a
rough count of the question) and raises it with ``Admission.grow`` once the
fitted prompt is known (``RelayService`` does so right after routing).  An
answer admitted between those two moments is judged on the estimate; a cost
reservation is only as good as the configured prices (a provider that only
reports its cost afterwards reserves 0).

``settle`` (after the usage is in the ledger) and ``release`` (on any other
path) drop the reservation; both are idempotent, so a ``finally`` can always
call them.  The ledger is read before the decision and the decision and the
reservation happen with no ``await`` between them, so two admissions never see
the same room.  An answer that settles while the ledger is being read is
counted from its reservation (never missed, at worst counted twice for that
one decision).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
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
    direct: bool = False  # a direct message: channel allowlists do not apply


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
    today = datetime.fromtimestamp(now, timezone.utc)
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


class Admission:
    """A request let in.  It holds its worst case against its daily budgets until settled or released."""

    def __init__(
        self, held: dict[str, set[Admission]], keys: tuple[str, ...], tokens: int, cost: float
    ) -> None:
        self._held = held
        self.keys = keys
        self.tokens = max(0, tokens)
        self.cost = max(0.0, cost)
        self.done = False
        for key in keys:
            held.setdefault(key, set()).add(self)

    def grow(self, tokens: int, cost: float = 0.0) -> None:
        """Raise the reservation to at least ``tokens`` and ``cost``; never lowers it, never refuses."""
        if not self.done:
            self.tokens = max(self.tokens, tokens)
            self.cost = max(self.cost, cost)

    def settle(self) -> None:
        """The answer ended and its usage is in the ledger: the reservation is not needed any more."""
        self.release()

    def release(self) -> None:
        """Stop holding the reservation.  Idempotent: safe on every path (error, cancellation)."""
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
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._recent: dict[str, deque[float]] = {}
        #: daily key -> the admissions holding a reservation against it
        self._held: dict[str, set[Admission]] = {}

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

    def held(self, key: str) -> tuple[int, float]:
        """(tokens, cost) reserved against a daily key (``"user:U1"``) by answers in flight."""
        holders = self._held.get(key, ())
        return sum(a.tokens for a in holders), sum(a.cost for a in holders)

    async def check(self, caller: Caller, now: float | None = None) -> None:
        """Raise ``Blocked`` or ``QuotaReached``; return when a request may go ahead (nothing held)."""
        (await self.admit(caller, now=now)).release()

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
            return Admission(self._held, (), 0, 0.0)
        counted = self._count_request(caller, now)
        try:
            return await self._reserve(self._budgets(caller), reserve_tokens, reserve_cost, now)
        except QuotaReached:
            for key in counted:
                self._recent[key].remove(now)
            raise

    # -- request rates ----------------------------------------------------------------------

    def _count_request(self, caller: Caller, now: float) -> list[str]:
        """Check the per-minute rates and count this request (before any await); the keys counted."""
        s = self.settings
        keys = [(f"channel:{caller.channel}", s.bot_channel_requests_per_minute, "This channel is")]
        if caller.user is not None:
            keys.insert(0, (f"user:{caller.user}", s.bot_user_requests_per_minute, "You are"))
        keys = [k for k in keys if k[1] > 0]  # only limited keys keep timestamps
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
            wait = recent[0] + 60 - now
            raise QuotaReached(
                f"{who} asking faster than {per_minute} questions a minute. Try again in {_wait_text(wait)}.",
                wait,
            )

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
        # Who held what *before* the ledger read: one that settles during the read is not missed.
        before = {b.key: set(self._held.get(b.key, ())) for b in budgets}
        since = start_of_day_utc(now)
        used = [await self.store.usage_of(b.by, b.id, since=since) for b in budgets]
        # No await from here on: the decision and the reservation are one step.
        for budget, (used_tokens, used_cost) in zip(budgets, used, strict=True):
            holders = before[budget.key] | self._held.get(budget.key, set())
            self._judge(budget, used_tokens, used_cost, holders, now)
        return Admission(self._held, tuple(b.key for b in budgets), tokens, cost)

    @staticmethod
    def _judge(
        budget: _Budget, used_tokens: int, used_cost: float, holders: Iterable[Admission], now: float
    ) -> None:
        """Raise ``QuotaReached`` when the ledger, or the ledger plus what is in flight, reaches ``budget``."""
        if budget.reached(used_tokens, used_cost):
            wait = seconds_to_midnight_utc(now)
            raise QuotaReached(
                f"That is {budget.whose} daily budget used up. "
                f"It resets at 00:00 UTC, in {_wait_text(wait)}.",
                wait,
            )
        held = list(holders)
        if budget.reached(used_tokens + sum(a.tokens for a in held), used_cost + sum(a.cost for a in held)):
            raise QuotaReached(
                f"The rest of {budget.whose} daily budget is held by answers still being written. "
                "Try again when they are done.",
                IN_FLIGHT_RETRY,
            )


def _listed(value: str | None, allowlist: list[str]) -> bool:
    """On the allowlist, or the list is empty (everyone)."""
    return not allowlist or (value is not None and value in allowlist)
