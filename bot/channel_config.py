"""Per-channel settings: system prompt, provider order, temperature, max output tokens.

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
    max_tokens = 800
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import BadChannelSetting, ConfigError
from .settings import MAX_MAX_TOKENS, MIN_MAX_TOKENS, PROVIDER_NAMES


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


#: name -> normaliser (raises BadChannelSetting with a message the admin reads)
SETTINGS: dict[str, Callable[[str], str]] = {
    "system_prompt": _system_prompt,
    "providers": _providers,
    "temperature": _temperature,
    "max_tokens": _max_tokens,
}


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    system_prompt: str | None = None
    providers: tuple[str, ...] = ()
    temperature: float | None = None
    max_tokens: int | None = None

    @classmethod
    def from_rows(cls, rows: dict[str, str]) -> ChannelConfig:
        return cls(
            system_prompt=rows.get("system_prompt"),
            providers=tuple(rows["providers"].split(",")) if rows.get("providers") else (),
            temperature=float(rows["temperature"]) if "temperature" in rows else None,
            max_tokens=int(rows["max_tokens"]) if "max_tokens" in rows else None,
        )


def check_name(name: str) -> None:
    if name not in SETTINGS:
        raise BadChannelSetting(f"unknown setting {name!r}; choose from {', '.join(SETTINGS)}")


def normalise(name: str, value: str) -> str:
    check_name(name)
    return SETTINGS[name](value)


ChannelKey = tuple[str, str]  # (platform, channel id)


def load_file(path: Path) -> dict[ChannelKey, dict[str, str]]:
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
            out[(platform, str(channel))] = rows
    return out
