"""The provider interface: a request goes in, text deltas come out.

A provider knows one wire format.  ``stream`` yields ``Delta`` objects: text as
it arrives and, last, the finish reason and usage.  Errors are the typed ones
of ``bot.errors``.  ``ProviderInfo`` is what the router and the budget need to
know about a provider without talking to it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..conversation import Turn


@dataclass(frozen=True, slots=True)
class Sampling:
    """Sampling parameters.  ``None`` means: leave the provider's default."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None

    def given(self) -> dict[str, object]:
        """The parameters that were set, by wire name."""
        out: dict[str, object] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value is not None and value != ():
                out[name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True, slots=True)
class ChatRequest:
    turns: Sequence[Turn]
    max_tokens: int
    sampling: Sampling = field(default_factory=Sampling)
    #: monotonic time by which the whole answer must be done, shared by retries and failover
    deadline: float | None = None
    #: the model to ask for, when a channel chose one (the provider's own id; None: its setting)
    model: str | None = None

    def messages(self) -> list[dict[str, str]]:
        return [t.as_message() for t in self.turns]


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None = None  # when the provider reports it (DeepInfra's estimated_cost)


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of the answer.  The last delta of a stream carries ``finish_reason``."""

    text: str = ""
    finish_reason: str | None = None  # "stop", "length", ...
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    name: str  # "deepinfra"
    display: str  # "DeepInfra"
    model: str
    context_window: int
    price_in: float  # USD per million prompt tokens
    price_out: float  # USD per million completion tokens
    #: Cloudflare-style windows count max_tokens inside the window.
    window_includes_output: bool = True
    #: Whether the provider's template adds the 20-token date preamble.
    date_preamble: bool = True

    def cost(self, usage: Usage) -> float:
        if usage.cost_usd is not None:
            return usage.cost_usd
        return (usage.prompt_tokens * self.price_in + usage.completion_tokens * self.price_out) / 1e6


class Provider(Protocol):
    info: ProviderInfo

    def stream(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Stream the answer; raise ``bot.errors.ProviderError`` subclasses on failure."""
        ...

    async def aclose(self) -> None: ...
