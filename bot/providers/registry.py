"""Build provider clients from settings, by name, checking their parameters first."""

from __future__ import annotations

import httpx

from ..errors import ConfigError
from ..settings import ProviderConfig, Settings
from . import params
from .base import Provider, ProviderInfo, Sampling
from .cloudflare import CloudflareProvider
from .dataoorts import DataoortsProvider
from .http import Describe, Timeouts
from .openai_compat import OpenAICompatProvider

DISPLAY = {
    "aigateway": "AIGateway",
    "deepinfra": "DeepInfra",
    "dataoorts": "Dataoorts",
    "cloudflare": "Cloudflare Workers AI",
    "openai": "The OpenAI-compatible server",
}
KEY_ENV = {
    "aigateway": "AIGATEWAY_API_KEY",
    "deepinfra": "DEEPINFRA_TOKEN",
    "dataoorts": "DATAOORTS_API_KEY",
    "cloudflare": "CLOUDFLARE_AUTH_TOKEN",
    "openai": "OPENAI_API_KEY",
}


def provider_info(config: ProviderConfig) -> ProviderInfo:
    return ProviderInfo(
        name=config.name,
        display=DISPLAY[config.name],
        model=config.model,
        context_window=config.context_window,
        price_in=config.price_in,
        price_out=config.price_out,
        # Every one of them counts max_tokens inside the window (Cloudflare documents
        # it, DeepInfra and vLLM reject prompt + max_tokens > context length).
        window_includes_output=True,
    )


def describe(name: str) -> Describe:
    return Describe(DISPLAY[name], KEY_ENV[name], prefix=name.upper())


def timeouts(settings: Settings) -> Timeouts:
    return Timeouts(
        connect=settings.bot_connect_timeout,
        read=settings.bot_read_timeout,
        turn=settings.bot_turn_timeout,
        first_token=settings.bot_first_token_timeout,
    )


def sampling_of(settings: Settings) -> Sampling:
    return Sampling(
        temperature=settings.bot_temperature,
        top_p=settings.bot_top_p,
        top_k=settings.bot_top_k,
        min_p=settings.bot_min_p,
        seed=settings.bot_seed,
        stop=tuple(settings.bot_stop),
        presence_penalty=settings.bot_presence_penalty,
        frequency_penalty=settings.bot_frequency_penalty,
        repetition_penalty=settings.bot_repetition_penalty,
    )


def check_parameters(name: str, settings: Settings) -> None:
    """``ConfigError`` (naming the variable and the provider) for a value out of range."""
    params.check(name, DISPLAY[name], sampling_of(settings), settings.bot_max_tokens)


def check_base_url(name: str, url: str) -> None:
    """``ConfigError`` naming ``<NAME>_BASE_URL`` unless it is an http(s) URL with a host."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigError(f"{name.upper()}_BASE_URL={url!r} is not a valid URL") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"{name.upper()}_BASE_URL={url!r} must start with http:// or https://")


def build_provider(
    name: str, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> Provider:
    if name not in DISPLAY:
        raise ConfigError(f"unknown provider {name!r}; choose from {', '.join(DISPLAY)}")
    check_parameters(name, settings)
    config = settings.provider(name)
    check_base_url(name, config.base_url)
    info = provider_info(config)
    who = describe(name)
    limits = timeouts(settings)
    if name == "cloudflare":
        return CloudflareProvider(config, info, who, timeouts=limits, transport=transport)
    if name == "dataoorts":
        return DataoortsProvider(config, info, who, timeouts=limits, transport=transport)
    return OpenAICompatProvider(
        config,
        info,
        who,
        timeouts=limits,
        include_usage=name != "deepinfra",  # DeepInfra sends usage on the finish chunk anyway
        transport=transport,
    )
