"""A circuit breaker per provider: one that fails stays benched, then one request probes it.

States, per provider::

    closed ──failure──► open (benched for a cooldown) ──cooldown over──► half-open
      ▲                   ▲                                                │
      └──── success ──────┼──────────── the probe answers ◄────────────────┤
                          └──────────── the probe fails (cooldown doubled) ◄┘

* **closed**: requests go to it in the configured order.
* **open**: the router tries it last (only when everything before it failed,
  or when it is the only provider).  The cooldown is ``cooldown`` seconds,
  doubled on every failure in a row up to ``max_cooldown``; at least
  ``long_cooldown`` after auth, quota and not-found errors (someone has to
  act); at least as long as a hint says (Cloudflare's daily quota: until
  00:00 UTC; a long ``Retry-After``).
* **half-open**: the cooldown is over.  The next request to reach it is
  admitted as the probe; other requests meanwhile treat it as open.  The
  probe's first token closes the breaker; a failure opens it again.  A probe
  that ends without a verdict (the request was cancelled, or the prompt was
  too long: the request's fault, not the provider's) frees the slot, and one
  never reported is forgotten after ``probe_timeout``.

A failure means the provider failed a request after the retries the router
allows; "the conversation is too long" is the request's fault and does not
count.  One success (the first token) closes the breaker.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import errors

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    cooldown: float = 30.0  # the first bench; a question 20 s later must not wait again
    max_cooldown: float = 600.0
    long_cooldown: float = 300.0  # auth, quota, not found: someone has to act
    probe_timeout: float = 300.0  # a probe never reported (its task vanished) is forgotten then


DEFAULT_POLICY = BreakerPolicy()


class Admission(enum.Enum):
    CLOSED = "closed"  # healthy: go ahead
    PROBE = "probe"  # half-open: this request is the one probe
    BENCHED = "benched"  # open, or another request is probing: use it only as a last resort


def counts(error: errors.ProviderError) -> bool:
    """Whether ``error`` is the provider's failure (the breaker counts it)."""
    return not isinstance(error, errors.ContextTooLong)


def _long(error: errors.ProviderError) -> bool:
    return isinstance(error, (errors.QuotaExceeded, errors.AuthFailed, errors.NotFound))


def _hint(error: errors.ProviderError) -> float:
    """Seconds the error itself says to stay away (daily quota, Retry-After), else 0."""
    hinted = error.cool_for if isinstance(error, errors.QuotaExceeded) else None
    if hinted is None and isinstance(error, errors.RateLimited):
        hinted = error.retry_after
    return float(hinted or 0.0)


class Breaker:
    """One provider's breaker; see the module docstring."""

    def __init__(
        self, name: str, policy: BreakerPolicy = DEFAULT_POLICY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self.policy = policy
        self._clock = clock
        self.failures = 0  # in a row
        self.open_until: float | None = None  # None: closed
        self._probe_since: float | None = None

    # -- reading ---------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        if self.open_until is None:
            return "closed"
        return "half-open" if self._clock() >= self.open_until else "open"

    def remaining(self) -> float:
        """Seconds until the cooldown is over (0 when closed or half-open)."""
        if self.open_until is None:
            return 0.0
        return max(0.0, self.open_until - self._clock())

    def ready(self) -> bool:
        """Whether a new request may go to it in its configured place (closed, or a probe is due)."""
        return self.state == "closed" or (self.state == "half-open" and not self._probing())

    def describe(self) -> str:
        """One phrase for logs and status output."""
        state = self.state
        if state == "open":
            return f"benched for {self.remaining():.0f} s after {self.failures} failure(s)"
        if state == "half-open":
            return "probing" if self._probing() else "half-open: the next request probes it"
        return "closed"

    # -- transitions -----------------------------------------------------------------------

    def admit(self) -> Admission:
        """Let a request in: as usual, as the probe, or (benched) only as a last resort."""
        state = self.state
        if state == "closed":
            return Admission.CLOSED
        if state == "half-open" and not self._probing():
            self._probe_since = self._clock()
            log.info("probing provider %s after its cooldown", self.name)
            return Admission.PROBE
        return Admission.BENCHED

    def succeeded(self) -> None:
        if self.open_until is not None:
            log.info("provider %s answers again: breaker closed", self.name)
        self.failures = 0
        self.open_until = None
        self._probe_since = None

    def failed(self, error: errors.ProviderError) -> bool:
        """Open (again) for a cooldown that grows with the failures in a row; False if not counted."""
        if not counts(error):
            return False
        self.failures += 1
        policy = self.policy
        seconds = min(policy.cooldown * 2 ** (self.failures - 1), policy.max_cooldown)
        if _long(error):
            seconds = max(seconds, policy.long_cooldown)
        seconds = max(seconds, _hint(error))
        self.open_until = self._clock() + seconds
        self._probe_since = None
        log.warning(
            "benching provider %s for %.0f s (failure %d in a row): %s",
            self.name, seconds, self.failures, error,
        )
        return True

    def release(self) -> None:
        """A probe ended without a verdict: the next request may probe."""
        self._probe_since = None

    def _probing(self) -> bool:
        since = self._probe_since
        return since is not None and self._clock() - since < self.policy.probe_timeout
