"""Build provider clients from settings, by name."""

from __future__ import annotations

import httpx

from ..settings import ProviderConfig, Settings
from .base import Provider, ProviderInfo
from .http import Timeouts
from .openai_compat import EXTRA_PARAMS, OPENAI_PARAMS, OpenAICompatProvider

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
    )


def timeouts(settings: Settings) -> Timeouts:
    return Timeouts(
        connect=settings.bot_connect_timeout,
        read=settings.bot_read_timeout,
        turn=settings.bot_turn_timeout,
    )


def build_provider(
    name: str, settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> Provider:
    config = settings.provider(name)
    info = provider_info(config)
    if name in ("openai", "aigateway", "deepinfra"):
        accepts = OPENAI_PARAMS if name == "aigateway" else OPENAI_PARAMS | EXTRA_PARAMS
        return OpenAICompatProvider(
            config,
            info,
            key_env=KEY_ENV[name],
            accepts=accepts,
            timeouts=timeouts(settings),
            include_usage=name != "deepinfra",
            transport=transport,
        )
    raise NotImplementedError(f"provider {name!r} is not available yet")
