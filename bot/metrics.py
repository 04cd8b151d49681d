"""Prometheus metrics of the service, in a registry of its own (no import-time globals).

Every sample carries a ``replica`` label (``BOT_REPLICA``, default the host
name), so the series of several replicas behind one scrape job stay apart.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .providers.base import ProviderInfo
from .reply import ReplyOutcome


class Metrics:
    def __init__(self, replica: str = "") -> None:
        self.registry = CollectorRegistry()
        self.exposed = CollectorRegistry()
        self.exposed.register(_WithReplica(self.registry, replica))
        r = self.registry
        self.replies = Counter("relay_replies", "Replies by final state", ["platform", "state"], registry=r)
        self.errors = Counter("relay_errors", "Reply errors by kind", ["kind"], registry=r)
        self.ttft = Histogram(
            "relay_provider_ttft_seconds",
            "Provider time to first token",
            ["provider"],
            buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32),
            registry=r,
        )
        self.tokens = Counter("relay_tokens", "Tokens by provider and direction", ["provider", "direction"], registry=r)
        self.cost = Counter("relay_cost_usd", "Cost in USD by provider", ["provider"], registry=r)
        self.edits = Counter("relay_platform_edits", "Platform posts and edits", ["platform"], registry=r)
        self.rate_limited = Counter("relay_platform_rate_limited", "Platform 429s", ["platform"], registry=r)
        self.refused = Counter("relay_refused", "Requests refused by quota", ["platform"], registry=r)
        self.summaries = Counter(
            "relay_history_summaries", "Summarised histories (BOT_HISTORY=summary) by how the summary came",
            ["result"], registry=r,
        )  # result: reused (no call), extended, new, failed
        self.feedback = Gauge(
            "relay_feedback_votes", "Feedback votes on answers by provider (stored totals)", ["provider", "vote"],
            registry=r,
        )

    def observe(
        self,
        platform: str,
        outcome: ReplyOutcome,
        provider: ProviderInfo | None,
        started: float,
        prompt_tokens: int,
        completion_tokens: int,
        cost: float,
    ) -> None:
        self.replies.labels(platform, outcome.state).inc()
        if outcome.error is not None:
            self.errors.labels(type(outcome.error).__name__).inc()
        self.edits.labels(platform).inc(outcome.edits)
        if outcome.rate_limited:
            self.rate_limited.labels(platform).inc(outcome.rate_limited)
        if provider is None:
            return
        if outcome.first_delta_at is not None:
            self.ttft.labels(provider.name).observe(max(0.0, outcome.first_delta_at - started))
        self.tokens.labels(provider.name, "in").inc(prompt_tokens)
        self.tokens.labels(provider.name, "out").inc(completion_tokens)
        self.cost.labels(provider.name).inc(cost)

    def render(self) -> bytes:
        return generate_latest(self.exposed)


class _WithReplica(Collector):
    """The samples of ``registry``, each with a ``replica`` label added."""

    def __init__(self, registry: CollectorRegistry, replica: str) -> None:
        self.registry = registry
        self.replica = replica

    def collect(self) -> Iterator[Metric]:
        for family in self.registry.collect():
            family.samples = [
                sample._replace(labels={"replica": self.replica, **sample.labels}) for sample in family.samples
            ]
            yield family
