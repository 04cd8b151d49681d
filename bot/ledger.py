"""The usage and cost ledger: what one answer cost, recorded in the store and the metrics.

A provider call that is not an answer (a summary of the history, ``bot.summary``) is recorded
the same way (``record_call``): a row of its own, so it counts in usage reports and daily budgets.
"""

from __future__ import annotations

from . import tokens
from .metrics import Metrics
from .providers.base import ProviderInfo, Usage
from .providers.router import Routed
from .reply import ReplyOutcome
from .store import Store, UsageRecord


class Ledger:
    def __init__(self, store: Store, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics

    async def record(
        self,
        platform: str,
        user: str | None,
        channel: str,
        request_id: int | None,
        routed: Routed,
        outcome: ReplyOutcome,
        started: float,
    ) -> Usage:
        """Record the answer's usage (the provider's figures, else exact counts) and its metrics."""
        info, fitted = routed.provider, routed.fitted
        usage, cost = Usage(0, 0), 0.0
        if info is not None and fitted is not None:
            usage = outcome.usage or Usage(fitted.prompt_tokens, tokens.count(outcome.text) if outcome.text else 0)
            cost = await self._write(platform, user, channel, request_id, info, usage)
        self.metrics.observe(
            platform, outcome, info, started, usage.prompt_tokens, usage.completion_tokens, cost
        )
        return usage

    async def record_call(
        self, platform: str, user: str | None, channel: str, request_id: int | None, info: ProviderInfo, usage: Usage
    ) -> None:
        """Record a provider call made for an answer but not streamed to anyone (a summary)."""
        cost = await self._write(platform, user, channel, request_id, info, usage)
        self.metrics.tokens.labels(info.name, "in").inc(usage.prompt_tokens)
        self.metrics.tokens.labels(info.name, "out").inc(usage.completion_tokens)
        self.metrics.cost.labels(info.name).inc(cost)

    async def _write(
        self, platform: str, user: str | None, channel: str, request_id: int | None, info: ProviderInfo, usage: Usage
    ) -> float:
        """One row of the ledger; its cost."""
        cost = info.cost(usage)
        await self.store.record_usage(
            UsageRecord(
                platform=platform,
                provider=info.name,
                model=info.model,
                user_id=user,
                channel=channel,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cost_usd=cost,
                reply_id=request_id,
            )
        )
        return cost
