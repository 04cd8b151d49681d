"""Ordered failover across providers, with retries before the first token only.

For each request the router fits the conversation to each candidate's window
(a provider whose window holds the whole history is preferred over one that
would have to trim harder), then tries candidates in order.  A provider that
fails before its first token is retried when the error is transient
(Retry-After honoured, else exponential backoff with jitter), otherwise the
request moves on to the next provider.  With another provider behind, the
retries are cut short so failover is quick: at most one more try after a
wait of at most a second, and none after a timeout (a provider that hangs
costs one first-token deadline, ``BOT_FIRST_TOKEN_TIMEOUT``, not three read
timeouts).  Each provider has a circuit breaker (``breaker``): one that
failed is benched and tried last, for a cooldown that grows while it keeps
failing (longer after auth/quota errors, until 00:00 UTC after Cloudflare's
daily quota); then one request probes it.  Once text has flowed, errors go
to the caller.  For windows that count ``max_tokens`` (Cloudflare's 24k) the
``max_tokens`` asked for is what is left after the prompt.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from .. import errors
from ..conversation import Fitted, Turn, fit
from ..tokens import TokenCounter
from . import models, params, window
from .base import ChatRequest, Delta, Provider, ProviderInfo, Sampling, Usage
from .breaker import DEFAULT_POLICY, Admission, Breaker, BreakerPolicy
from .http import MAX_RETRY_AFTER

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = MAX_RETRY_AFTER
    #: With another provider to fall over to: tries here, and the longest wait worth taking.
    attempts_with_fallback: int = 2
    max_wait_with_fallback: float = 1.0

    def delay(self, attempt: int, error: errors.ProviderError, *, fallback: bool = False) -> float | None:
        """Seconds before try ``attempt + 1``; None when retrying is pointless."""
        attempts = self.attempts_with_fallback if fallback else self.attempts
        if not error.retryable or attempt + 1 >= attempts:
            return None
        if fallback and isinstance(error, errors.ProviderTimeout):
            return None  # it hung: the next provider answers sooner than another try here
        wait = getattr(error, "retry_after", None)
        if wait is None:
            wait = min(self.base_delay * 2**attempt, self.max_delay) * random.uniform(0.75, 1.0)
        limit = self.max_wait_with_fallback if fallback else self.max_retry_after
        return wait if wait <= limit else None


@dataclass(slots=True)
class Plan:
    provider: Provider
    fitted: Fitted
    max_tokens: int  # what to ask for: within the window left after the prompt
    model: str | None = None  # the channel's model, as this provider names it (None: its setting)

    @property
    def trimmed(self) -> bool:
        return self.fitted.dropped > 0 or self.fitted.cut_tokens > 0


class Routed:
    """One routed answer: iterate it for deltas; ``provider`` and ``fitted`` say who served it."""

    def __init__(
        self, router: Router, plans: list[Plan], sampling: Sampling, counter: TokenCounter | None = None
    ) -> None:
        self._router = router
        self._plans = plans
        self._sampling = sampling
        self._counter = counter
        self.provider: ProviderInfo | None = None
        self.fitted: Fitted | None = plans[0].fitted if plans else None
        self.failures: list[errors.ProviderError] = []
        #: what the answer learnt on the way (a provider's real window), for the operator and the user
        self.learnt: list[str] = []

    def __aiter__(self) -> AsyncIterator[Delta]:
        return self._run()

    @property
    def first(self) -> Plan | None:
        """The plan tried first (the provider expected to answer)."""
        return self._plans[0] if self._plans else None

    def replace_first(self, plan: Plan) -> None:
        """Try ``plan`` first instead (the same provider, its history summarised: ``bot.summary``)."""
        self._plans[0] = plan
        self.fitted = plan.fitted

    def worst_case(self) -> tuple[int, float]:
        """The most any plan may use: (prompt + max_tokens, that usage's cost at its provider's prices)."""
        usages = [(p.provider.info, Usage(p.fitted.prompt_tokens, p.max_tokens)) for p in self._plans]
        return (
            max((u.prompt_tokens + u.completion_tokens for _, u in usages), default=0),
            max((info.cost(u) for info, u in usages), default=0.0),
        )

    @property
    def notes(self) -> list[str]:
        """Notes for the history actually sent: read after the stream (failover may change it)."""
        fitted = self.fitted.notes if self.fitted is not None else []
        return [*fitted, *(f"({note})" for note in self.learnt)]

    async def _run(self) -> AsyncIterator[Delta]:
        last: errors.ProviderError | None = None
        plans = list(self._plans)
        timeout = self._router.turn_timeout
        deadline = time.monotonic() + timeout if timeout is not None else None
        deferred: set[int] = set()
        retried: set[int] = set()  # plans that are already the trimmed retry
        n = 0
        while n < len(plans):
            plan = plans[n]
            n += 1
            admission = self._router.breaker(plan.provider.info.name).admit()
            if admission is Admission.BENCHED and n < len(plans) and id(plan) not in deferred:
                deferred.add(id(plan))  # benched (or another request is probing it):
                plans.append(plan)  # only after the others, as a last resort
                continue
            request = ChatRequest(plan.fitted.turns, plan.max_tokens, self._sampling, deadline, plan.model)
            fallback = n < len(plans)
            probe = admission is Admission.PROBE
            try:
                tries = self._router.attempt(plan.provider, request, fallback=fallback, probe=probe)
                async for delta in tries:
                    if self.provider is None:
                        info = plan.provider.info
                        self.provider = replace(info, model=plan.model) if plan.model else info
                        self.fitted = plan.fitted
                    yield delta
                return
            except errors.ProviderError as exc:
                if self.provider is not None:
                    raise  # text already flowed: no failover mid-answer
                self.failures.append(exc)
                last = exc
                log.warning("provider %s failed before its first token: %s", plan.provider.info.name, exc)
                if isinstance(exc, errors.ContextTooLong) and id(plan) not in retried:
                    smaller = self._smaller(plan, exc)
                    if smaller is not None:  # its real window is smaller than configured:
                        retried.add(id(smaller))  # once more, trimmed, after the untrimmed others
                        plans.append(smaller)
        assert last is not None
        raise last

    def _smaller(self, plan: Plan, exc: errors.ContextTooLong) -> Plan | None:
        """``plan`` trimmed to the window the error names (learnt for later answers too), or to
        ``SAFE_WINDOW``; None when neither is smaller than what was sent."""
        info = plan.provider.info
        if exc.window is not None and exc.window < info.context_window:
            self.learnt.append(window.mismatch(info.name, info.context_window, exc.window))
            self._router.learn_window(plan.provider, exc.window)
            return shrink(plan, self._counter, exc.window)
        return shrink(plan, self._counter)


#: The smallest window any of the providers documents (Cloudflare's, prompt + output).
SAFE_WINDOW = 24_000


def shrink(plan: Plan, counter: TokenCounter | None, limit: int = SAFE_WINDOW) -> Plan | None:
    """``plan`` fitted to a ``limit`` window, after a provider said the prompt was too long.

    AIGateway documents 131k but serves Cloudflare's model, whose window is
    24k; a provider that says "too long" for a prompt above 24k gets one more
    try with the history trimmed to that.  A server that names its window
    (llama.cpp, vLLM) gets one more try fitted to it.  None when the prompt
    already fits.
    """
    if plan.fitted.prompt_tokens + plan.max_tokens <= limit:
        return None
    info = plan.provider.info
    reserve = min(plan.max_tokens, limit // 2)
    try:
        again = fit(plan.fitted.turns, limit, reserve, counter, date_preamble=info.date_preamble)
    except errors.WindowTooSmall:
        return None
    fitted = Fitted(
        turns=again.turns,
        dropped=plan.fitted.dropped + again.dropped,
        cut_tokens=plan.fitted.cut_tokens + again.cut_tokens,
        prompt_tokens=again.prompt_tokens,
        summarised=plan.fitted.summarised,
    )
    return Plan(plan.provider, fitted, max(1, min(plan.max_tokens, limit - again.prompt_tokens)), plan.model)


#: Every sampling parameter left at the provider's default.
DEFAULT_SAMPLING = Sampling()


class Router:
    def __init__(
        self,
        providers: Sequence[Provider],
        *,
        retry: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        turn_timeout: float | None = None,
        breaker: BreakerPolicy = DEFAULT_POLICY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not providers:
            raise errors.NoProviderConfigured()
        self.providers = list(providers)
        self.retry = retry
        #: one deadline for a whole answer, across retries and failover (BOT_TURN_TIMEOUT)
        self.turn_timeout = turn_timeout
        self._sleep = sleep
        #: one circuit breaker per provider (``clock`` is for tests: it drives the cooldowns)
        self.breakers = {p.info.name: Breaker(p.info.name, breaker, clock) for p in self.providers}
        self._window_check = asyncio.Lock()
        #: whether self-hosted servers are asked their window (``check_windows``); tests against a
        #: server that applies scripted faults to every path turn it off
        self.ask_windows = True
        self._windows_checked = False

    def by_name(self, name: str) -> Provider:
        for provider in self.providers:
            if provider.info.name == name:
                return provider
        raise errors.ConfigError(f"provider {name!r} is not configured")

    def plan(
        self,
        turns: Sequence[Turn],
        max_tokens: int,
        counter: TokenCounter,
        only: str | None = None,
        order: Sequence[str] | None = None,
        model: str | None = None,
    ) -> list[Plan]:
        """Candidates in the order to try them, each with the conversation fitted to its window.

        ``only`` forces one provider; ``order`` (a channel's setting) picks and orders them;
        ``model`` (a channel's setting, ``bot.providers.models``) leaves out the providers that do
        not serve it.
        """
        if only:
            candidates = [self.by_name(only)]
        elif order:
            known = {p.info.name: p for p in self.providers}
            candidates = [known[n] for n in order if n in known] or self.providers
        else:
            candidates = self.providers
        plans: list[Plan] = []
        for provider in candidates:
            info = provider.info
            chosen = models.model_for(info.name, model, info.model) if model else None
            if model and chosen is None:
                log.info("%s does not serve this channel's model %s: left out", info.name, model)
                continue
            reserve = min(max_tokens, info.context_window // 2)
            try:
                fitted = fit(turns, info.context_window, reserve, counter, date_preamble=info.date_preamble)
            except errors.WindowTooSmall:
                continue
            asked = min(max_tokens, params.output_limit(info.name))  # a channel may ask for more
            if info.window_includes_output:  # prompt + max_tokens must fit (Cloudflare: 24k)
                asked = max(1, min(asked, info.context_window - fitted.prompt_tokens))
            plans.append(Plan(provider, fitted, asked, chosen))
        if not plans and model:
            raise errors.BadChannelSetting(f"no configured provider serves this channel's model `{model}`")
        if not plans:
            raise errors.ContextTooLong("Every provider", "window too small", hint="shorten the question")
        # Stable sort: benched providers last, then those that would have to
        # trim the history (a 128k provider beats a 24k one that drops turns).
        plans.sort(key=lambda p: (not self.breaker(p.provider.info.name).ready(), p.trimmed))
        return plans

    def breaker(self, name: str) -> Breaker:
        return self.breakers[name]

    def learn_window(self, provider: Provider, real: int) -> None:
        """``provider``'s server has a smaller window than configured: fit later answers to it."""
        info = provider.info
        if real < info.context_window:
            log.warning("%s", window.mismatch(info.name, info.context_window, real))
            provider.info = replace(info, context_window=real)

    async def check_windows(self) -> list[str]:
        """Once per process: ask each provider that can tell its real window; one smaller than
        configured is used from now on.  The sentences to show the operator (none the next time)."""
        async with self._window_check:
            if self._windows_checked or not self.ask_windows:
                return []
            self._windows_checked = True
            said = []
            for provider in self.providers:
                look_up = getattr(provider, "server_window", None)
                real = await look_up() if look_up is not None else None
                if real is not None and real < provider.info.context_window:
                    said.append(window.mismatch(provider.info.name, provider.info.context_window, real))
                    provider.info = replace(provider.info, context_window=real)
            return said

    def room_notes(self, max_tokens: int, system_tokens: int) -> list[str]:
        """Windows where ``max_tokens`` leaves the conversation no room (say so at start)."""
        notes = (
            window.no_room(p.info.name, p.info.context_window, max_tokens, system_tokens) for p in self.providers
        )
        return [note for note in notes if note is not None]

    def cooling(self, name: str) -> float:
        """Seconds until ``name`` is out of its cooldown (0 when it is not benched)."""
        return self.breakers[name].remaining()

    def answer(
        self,
        turns: Sequence[Turn],
        max_tokens: int,
        counter: TokenCounter,
        sampling: Sampling = DEFAULT_SAMPLING,
        only: str | None = None,
        order: Sequence[str] | None = None,
        model: str | None = None,
    ) -> Routed:
        return Routed(self, self.plan(turns, max_tokens, counter, only, order, model), sampling, counter)

    async def attempt(
        self, provider: Provider, request: ChatRequest, *, fallback: bool = False, probe: bool = False
    ) -> AsyncIterator[Delta]:
        """One provider, retried before its first token while the error is transient.

        With a ``fallback`` provider behind this one, retries are cut short (see
        ``RetryPolicy``).  The first token closes the provider's breaker; a
        final failure opens it.  A ``probe`` that ends with neither frees the
        half-open slot for the next request.
        """
        breaker = self.breaker(provider.info.name)
        verdict = False
        try:
            for attempt in range(max(self.retry.attempts, self.retry.attempts_with_fallback)):
                started = False
                try:
                    async for delta in provider.stream(request):
                        if not started:
                            started = verdict = True
                            breaker.succeeded()
                        yield delta
                    return
                except errors.ProviderError as exc:
                    if started:
                        raise
                    wait = self.retry.delay(attempt, exc, fallback=fallback)
                    if wait is None:
                        verdict = breaker.failed(exc)  # the request's own fault (too long) does not count
                        raise
                    log.info("retrying %s in %.2fs after: %s", provider.info.name, wait, exc)
                    await self._sleep(wait)
        finally:
            if probe and not verdict:
                breaker.release()

    async def aclose(self) -> None:
        for provider in self.providers:
            await provider.aclose()
