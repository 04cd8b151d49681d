"""Which sampling parameters each provider takes, and their documented ranges.

One table per wire format, from the providers' own documentation:

* OpenAI-style (``openai``, ``aigateway``): temperature 0–2, top_p 0–1,
  penalties -2–2; the generic server also takes vLLM/llama.cpp's extras.
* DeepInfra (seed ``002``): adds min_p, top_k (0–999), repetition_penalty
  (0.01–5), up to 16 stop sequences.
* Cloudflare Workers AI (model schema ``llama-3.1-70b-instruct.json``) and
  Dataoorts (seed ``003``, the same catalogue): temperature 0–5, top_p 0–2,
  top_k 1–50, seed 1–9,999,999,999, penalties 0–2; no min_p, no stop.

``check`` turns a value out of range into a ``ConfigError`` naming the
variable (``BOT_TEMPERATURE``) and the provider; ``select`` keeps only the
parameters a provider takes, so nothing it would reject is ever sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import ConfigError
from .base import Sampling


@dataclass(frozen=True, slots=True)
class Range:
    """Inclusive bounds unless ``open_low`` / ``open_high``; ``None`` is unbounded."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    integer: bool = False

    def holds(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.open_high else value > self.high))

    def describe(self) -> str:
        low = "" if self.low is None else f"{_num(self.low)} {'<' if self.open_low else '≤'} "
        high = "" if self.high is None else f" {'<' if self.open_high else '≤'} {_num(self.high)}"
        return f"{low}value{high}"


@dataclass(frozen=True, slots=True)
class ParamTable:
    """Accepted parameters (wire name -> range); ``max_stop`` caps the stop list."""

    ranges: Mapping[str, Range]
    max_stop: int = 0  # 0: stop sequences are not accepted
    max_tokens: int = 131_072

    def accepts(self, name: str) -> bool:
        return (name == "stop" and self.max_stop > 0) or name in self.ranges


OPENAI = ParamTable(
    {
        "temperature": Range(0, 2),
        "top_p": Range(0, 1),
        "seed": Range(integer=True),
        "presence_penalty": Range(-2, 2),
        "frequency_penalty": Range(-2, 2),
    },
    max_stop=4,
)

#: vLLM, llama.cpp, LiteLLM ... take the OpenAI set plus the common extras.
GENERIC = ParamTable(
    {
        **OPENAI.ranges,
        "top_k": Range(-1, integer=True),  # -1 (vLLM) or 0 (llama.cpp) switch it off
        "min_p": Range(0, 1),
        "repetition_penalty": Range(0, open_low=True),
    },
    max_stop=16,
)

AIGATEWAY = ParamTable(OPENAI.ranges, max_stop=4, max_tokens=8_192)

DEEPINFRA = ParamTable(
    {
        "temperature": Range(0, 2),
        "top_p": Range(0, 1, open_low=True),
        "min_p": Range(0, 1),
        "top_k": Range(0, 1000, open_high=True, integer=True),
        "seed": Range(0, 9_223_372_036_854_775_807, integer=True),
        "presence_penalty": Range(-2, 2),
        "frequency_penalty": Range(-2, 2),
        "repetition_penalty": Range(0.01, 5),
    },
    max_stop=16,
    max_tokens=1_000_000,
)

CLOUDFLARE = ParamTable(
    {
        "temperature": Range(0, 5),
        "top_p": Range(0, 2),
        "top_k": Range(1, 50, integer=True),
        "seed": Range(1, 9_999_999_999, integer=True),
        "repetition_penalty": Range(0, 2),
        "frequency_penalty": Range(0, 2),
        "presence_penalty": Range(0, 2),
    }
)

DATAOORTS = CLOUDFLARE

TABLES: dict[str, ParamTable] = {
    "openai": GENERIC,
    "aigateway": AIGATEWAY,
    "deepinfra": DEEPINFRA,
    "cloudflare": CLOUDFLARE,
    "dataoorts": DATAOORTS,
}


def env_name(param: str) -> str:
    return f"BOT_{param.upper()}"


def check(provider: str, display: str, sampling: Sampling, max_tokens: int) -> None:
    """Raise ``ConfigError`` for the first value ``provider`` documents as out of range."""
    table = TABLES[provider]
    if max_tokens > table.max_tokens:
        raise ConfigError(
            f"BOT_MAX_TOKENS={max_tokens} is above {display}'s output limit of {table.max_tokens}"
        )
    for name, value in sampling.given().items():
        if name == "stop":
            if table.max_stop and len(value) > table.max_stop:  # type: ignore[arg-type]
                raise ConfigError(
                    f"BOT_STOP has {len(value)} sequences; {display} takes at most {table.max_stop}"  # type: ignore[arg-type]
                )
            continue
        bounds = table.ranges.get(name)
        if bounds is None:
            continue  # not sent to this provider (see ``select``)
        if not bounds.holds(float(value)):  # type: ignore[arg-type]
            raise ConfigError(
                f"{env_name(name)}={_num(value)} is out of range for {display}: "  # type: ignore[arg-type]
                f"it takes {bounds.describe().replace('value', name)}"
            )


def output_limit(provider: str) -> int:
    """The most ``max_tokens`` a provider takes (AIGateway documents 8,192)."""
    table = TABLES.get(provider)
    return table.max_tokens if table is not None else 131_072


def select(provider: str, sampling: Sampling) -> dict[str, object]:
    """The parameters ``provider`` takes, by wire name; the others are left out."""
    table = TABLES[provider]
    return {name: value for name, value in sampling.given().items() if table.accepts(name)}


def ignored(provider: str, sampling: Sampling) -> list[str]:
    """Variables that are set but that ``provider`` does not take (for ``doctor``)."""
    table = TABLES[provider]
    return [env_name(name) for name in sampling.given() if not table.accepts(name)]


def _num(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
