"""Per-channel settings: system prompt, provider order, model, temperature, max output tokens.

Admins set them with ``/relay config NAME VALUE`` on Slack or Discord (kept in
the store), or an operator writes them in a TOML file named by
``BOT_CHANNEL_CONFIG``; both override the global settings for that channel only,
and ``/relay config`` wins over the file.

The file has one table per channel, under its platform::

    [slack.C0123ABCD]
    system_prompt = "You answer questions about our billing system."
    temperature = 0.2

    [discord."112233445566778899"]
    providers = "deepinfra,openai"
    model = "llama-3.1-8b"
    max_tokens = 800

A ``model`` must be served by every provider the channel uses (its ``providers``, else all
configured ones): a short name such as ``llama-3.1-8b`` or a provider's own id; the ``openai``
provider takes any name (``bot.providers.models``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import BadChannelSetting, ConfigError
from .providers import models
from .settings import MAX_MAX_TOKENS, MIN_MAX_TOKENS, PROVIDER_NAMES, Settings


def _providers(value: str) -> str:
    names = [n.strip().lower() for n in value.replace(" ", ",").split(",") if n.strip()]
    unknown = [n for n in names if n not in PROVIDER_NAMES]
    if not names or unknown:
        raise BadChannelSetting(f"providers must be a list of: {', '.join(PROVIDER_NAMES)}")
    return ",".join(names)


def _temperature(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        raise BadChannelSetting("temperature must be a number, e.g. 0.7") from None
    if not 0.0 <= number <= 2.0:
        raise BadChannelSetting("temperature must be between 0 and 2")
    return repr(number)


def _max_tokens(value: str) -> str:
    try:
        number = int(value)
    except ValueError:
        raise BadChannelSetting("max_tokens must be a whole number, e.g. 800") from None
    if not MIN_MAX_TOKENS <= number <= MAX_MAX_TOKENS:  # as BOT_MAX_TOKENS; providers cap it further
        raise BadChannelSetting(f"max_tokens must be between {MIN_MAX_TOKENS} and {MAX_MAX_TOKENS}")
    return str(number)


def _system_prompt(value: str) -> str:
    if not value.strip():
        raise BadChannelSetting("system_prompt cannot be empty (use `reset` to go back to the default)")
    if len(value) > 8000:
        raise BadChannelSetting("system_prompt is limited to 8,000 characters")
    return value.strip()


def _model(value: str) -> str:
    name = value.strip()
    if not name or len(name) > 200 or any(c.isspace() for c in name):
        raise BadChannelSetting("model must be one model name, e.g. llama-3.1-8b")
    return name


#: name -> normaliser (raises BadChannelSetting with a message the admin reads)
SETTINGS: dict[str, Callable[[str], str]] = {
    "system_prompt": _system_prompt,
    "providers": _providers,
    "model": _model,
    "temperature": _temperature,
    "max_tokens": _max_tokens,
}


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    system_prompt: str | None = None
    providers: tuple[str, ...] = ()
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None

    @classmethod
    def from_rows(cls, rows: dict[str, str]) -> ChannelConfig:
        return cls(
            system_prompt=rows.get("system_prompt"),
            providers=tuple(rows["providers"].split(",")) if rows.get("providers") else (),
            model=rows.get("model"),
            temperature=float(rows["temperature"]) if "temperature" in rows else None,
            max_tokens=int(rows["max_tokens"]) if "max_tokens" in rows else None,
        )


def check_name(name: str) -> None:
    if name not in SETTINGS:
        raise BadChannelSetting(f"unknown setting {name!r}; choose from {', '.join(SETTINGS)}")


def normalise(name: str, value: str) -> str:
    check_name(name)
    return SETTINGS[name](value)


def check_model(rows: Mapping[str, str], settings: Settings) -> None:
    """``BadChannelSetting`` unless every provider the channel uses serves its ``model``."""
    model = rows.get("model")
    if not model:
        return
    used: Sequence[str] = rows["providers"].split(",") if rows.get("providers") else settings.provider_order()
    configured = {name: settings.provider(name).model for name in used}
    missing = models.unserved(model, used, configured)
    if missing:
        first = missing[0]
        served = ", ".join(f"`{m}`" for m in models.served_by(first, configured[first]))
        raise BadChannelSetting(f"{first} does not serve the model `{model}`; it serves {served}")


ChannelKey = tuple[str, str]  # (platform, channel id)


def load_file(path: Path, settings: Settings | None = None) -> dict[ChannelKey, dict[str, str]]:
    """Read and check a channel settings file; any mistake is a ``ConfigError`` naming it."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"BOT_CHANNEL_CONFIG: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"BOT_CHANNEL_CONFIG: {path} is not valid TOML: {exc}") from None
    out: dict[ChannelKey, dict[str, str]] = {}
    for platform, channels in data.items():
        if not isinstance(channels, dict):
            raise ConfigError(f"BOT_CHANNEL_CONFIG: [{platform}] must hold one table per channel")
        for channel, values in channels.items():
            if not isinstance(values, dict):
                raise ConfigError(f"BOT_CHANNEL_CONFIG: [{platform}.{channel}] must be a table")
            rows = {}
            for name, value in values.items():
                try:
                    rows[name] = normalise(name, ",".join(value) if isinstance(value, list) else str(value))
                except BadChannelSetting as exc:
                    raise ConfigError(f"BOT_CHANNEL_CONFIG: [{platform}.{channel}] {exc.user_message}") from None
            if settings is not None:
                try:
                    check_model(rows, settings)
                except BadChannelSetting as exc:
                    raise ConfigError(f"BOT_CHANNEL_CONFIG: [{platform}.{channel}] {exc.user_message}") from None
            out[(platform, str(channel))] = rows
    return out
