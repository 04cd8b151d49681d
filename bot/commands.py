"""``/relay`` — status, per-channel configuration and usage, the same on every platform.

Adapters pass the text after ``/relay`` and who asked; the reply is standard
Markdown, which each adapter renders for its platform and shows to that person
only (ephemeral on Slack and Discord).  ``suggestions`` completes a half-typed
``/relay`` (Discord's option autocomplete): verbs, setting names, then values.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from . import channel_config
from .access import Caller
from .channel_config import ChannelConfig
from .errors import BadChannelSetting
from .providers import models
from .service import RelayService
from .store import UsageTotal

HELP = (
    "**`/relay` commands**\n"
    "• `/relay status` — this channel's settings and your usage today\n"
    "• `/relay config` — show this channel's settings\n"
    "• `/relay config NAME VALUE` — admins: set `system_prompt`, `providers`, `model`, `temperature` or "
    "`max_tokens`\n"
    "• `/relay config NAME reset` — admins: back to the default\n"
    "• `/relay usage` — your usage (admins: per channel, user and provider)"
)


async def relay_command(service: RelayService, caller: Caller, text: str) -> str:
    words = text.strip().split(maxsplit=2)
    verb = words[0].lower() if words else "help"
    if verb == "status":
        return await _status(service, caller)
    if verb == "config":
        return await _config(service, caller, words[1:])
    if verb == "usage":
        return await _usage(service, caller)
    return HELP


VERBS = ("status", "config", "usage", "help")
#: at most this many suggestions (Discord shows 25)
MAX_SUGGESTIONS = 25
EXAMPLES = {"temperature": ("0.2", "0.7", "1.0"), "max_tokens": ("512", "1024", "2048")}


def suggestions(service: RelayService, caller: Caller, text: str) -> list[str]:
    """Whole ``/relay`` texts that complete ``text``: a verb, then (admins) ``config NAME VALUE``."""
    words = text.lstrip().split(" ")
    if len(words) == 1:
        return [v for v in VERBS if v.startswith(words[0].lower())]
    if words[0].lower() != "config" or not service.access.is_admin(caller):
        return []
    if len(words) == 2:
        return [f"config {n}" for n in channel_config.SETTINGS if n.startswith(words[1].lower())]
    name, typed = words[1].lower(), " ".join(words[2:])
    if name not in channel_config.SETTINGS:
        return []
    values = [v for v in (*_values(service, name), "reset") if v.lower().startswith(typed.lower())]
    return [f"config {name} {v}" for v in values][:MAX_SUGGESTIONS]


def _values(service: RelayService, name: str) -> list[str]:
    settings = service.settings
    order = settings.provider_order()
    if name == "providers":
        return [",".join(order), *order] if len(order) > 1 else list(order)
    if name == "model":
        names = [m for p in order if p != models.ANY_NAME for m in models.served_by(p, settings.provider(p).model)]
        return list(dict.fromkeys([*models.FAMILIES, *names]))
    return list(EXAMPLES.get(name, ()))


async def _config(service: RelayService, caller: Caller, args: list[str]) -> str:
    store = service.store
    if not args:
        rows = await service.channel_settings(caller.platform, caller.channel)
        if not rows:
            return "This channel uses the default settings."
        return "This channel's settings:\n" + "\n".join(f"• `{k}`: {v}" for k, v in sorted(rows.items()))
    if not service.access.is_admin(caller):
        return "Only admins can change this channel's settings."
    name = args[0].lower()
    if len(args) < 2:
        return f"Give a value: `/relay config {name} VALUE` (or `reset`)."
    value = args[1]
    try:
        if value.strip().lower() == "reset":
            channel_config.check_name(name)
            await store.set_channel_setting(caller.platform, caller.channel, name, None)
            return f"`{name}` is back to the default for this channel."
        normalised = channel_config.normalise(name, value)
        if name in ("model", "providers"):  # the channel's providers must serve its model
            rows = {**await service.channel_settings(caller.platform, caller.channel), name: normalised}
            channel_config.check_model(rows, service.settings)
    except BadChannelSetting as exc:
        return f"Not changed: {exc.user_message}."
    await store.set_channel_setting(caller.platform, caller.channel, name, normalised)
    return f"`{name}` is now `{normalised}` in this channel."


async def _status(service: RelayService, caller: Caller) -> str:
    config = ChannelConfig.from_rows(await service.channel_settings(caller.platform, caller.channel))
    settings = service.settings
    providers = ", ".join(config.providers or [p.info.name for p in service.router.providers])
    used = await service.access.usage_today(caller)
    lines = [
        "**llama-relay status**",
        f"• providers: {providers}",
        f"• model: {config.model or 'the default of each provider'}",
        f"• max output tokens: {config.max_tokens or settings.bot_max_tokens}",
        f"• temperature: {_temperature(config.temperature, settings.bot_temperature)}",
        f"• system prompt: {'custom for this channel' if config.system_prompt else 'default'}",
        f"• your usage today: {used.tokens:,} tokens, ${used.cost:.4f}",
    ]
    return "\n".join(lines)


async def _usage(service: RelayService, caller: Caller) -> str:
    store = service.store
    since = time.time() - 30 * 86400
    if not service.access.is_admin(caller):
        mine = await store.usage_totals("provider", since, user=caller.user or "-")
        if not mine:
            return "You have not used the bot in the last 30 days."
        return "Your usage, last 30 days:\n" + _lines(mine)
    parts = ["**Usage, last 30 days**"]
    for by, title in (("provider", "per provider"), ("channel", "per channel"), ("user", "per user")):
        totals = await store.usage_totals(by, since)
        votes = await store.vote_totals(by, since) if by == "provider" else None
        parts.append(f"*{title}*\n" + (_lines(totals[:15], votes) if totals else "• none"))
    return "\n".join(parts)


def _temperature(channel: float | None, default: float | None) -> str:
    value = channel if channel is not None else default
    return "provider default" if value is None else f"{value:g}"


def _lines(totals: Sequence[UsageTotal], votes: dict[str, tuple[int, int]] | None = None) -> str:
    """One line per total; with ``votes``, the feedback beside tokens and cost."""

    def feedback(key: str) -> str:
        if votes is None:
            return ""
        up, down = votes.get(key, (0, 0))
        return f", {up} 👍 / {down} 👎"

    return "\n".join(
        f"• {t.key}: {t.requests} requests, {t.prompt_tokens:,} in / {t.completion_tokens:,} out, "
        f"${t.cost_usd:.4f}{feedback(t.key)}"
        for t in totals
    )
