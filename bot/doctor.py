"""``python -m bot doctor``: check the configuration, then reach every provider once.

For each provider in ``BOT_PROVIDERS`` (or every configured one) it checks
the settings (key, account, parameter ranges), sends one tiny request
(``max_tokens`` 8) and prints a table: provider, model, window, time to first
token and status.  Under the table it names the database (``BOT_DATABASE``, its
password masked) and whether it answers.  The exit status is 0 when at least
one provider answered and the database answers.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from .conversation import Turn
from .db_url import is_postgres, redact
from .errors import ConfigError, NoProviderConfigured, ProviderTimeout, RelayError, StoreUnavailable
from . import tokens
from .providers import params, window
from .providers.base import ChatRequest, Provider
from .providers.registry import build_provider, sampling_of
from .runtime import missing_setting
from .settings import Settings

PROBE = "Reply with the single word OK."
PROBE_TOKENS = 8
PROBE_TIMEOUT = 60.0
AIGATEWAY_KEEPALIVE = 15.0  # seconds between its keep-alive comments

HEADER = ("provider", "model", "window", "first token", "status")


@dataclass(slots=True)
class Row:
    provider: str
    model: str
    window: str
    first_token: str = "-"
    status: str = ""
    ok: bool = False
    notes: list[str] = field(default_factory=list)  # printed under the table

    def cells(self) -> tuple[str, ...]:
        return (self.provider, self.model, self.window, self.first_token, self.status)


def names_to_check(settings: Settings) -> list[str]:
    names = settings.provider_order()
    if not names:
        raise NoProviderConfigured()
    return names


async def check(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> list[Row]:
    """One row per provider, probing those whose configuration is complete."""
    rows = []
    for name in names_to_check(settings):
        rows.append(await check_one(name, settings, transport))
    return rows


async def check_one(name: str, settings: Settings, transport: httpx.AsyncBaseTransport | None) -> Row:
    config = settings.provider(name)
    row = Row(name, config.model, f"{config.context_window:,}")
    if not config.configured:
        row.status = f"not configured: {missing_setting(name)}"
        return row
    try:
        provider = build_provider(name, settings, transport)
    except ConfigError as exc:
        row.status = f"configuration error: {exc}"
        return row
    try:
        first = await probe(provider, min(PROBE_TIMEOUT, settings.bot_turn_timeout))
        row.notes = await window_notes(provider, settings)
    except RelayError as exc:
        row.status = exc.user_message
        return row
    finally:
        await provider.aclose()
    row.ok = True
    row.first_token = f"{first * 1000:.0f} ms" if first is not None else "-"
    skipped = params.ignored(name, sampling_of(settings))
    row.status = "ok" + (f" ({', '.join(skipped)} not sent: not supported)" if skipped else "")
    return row


async def probe(provider: Provider, timeout: float, clock: Callable[[], float] = time.monotonic) -> float | None:
    """Stream one tiny answer; seconds to its first text (None if it sent none)."""
    request = ChatRequest([Turn("user", PROBE)], max_tokens=PROBE_TOKENS)
    started = clock()
    first: float | None = None

    async def run() -> None:
        nonlocal first
        async for delta in provider.stream(request):
            if first is None and delta.text:
                first = clock() - started

    try:
        await asyncio.wait_for(run(), timeout)
    except TimeoutError as exc:
        raise ProviderTimeout(provider.info.display, "doctor probe", hint="no answer in time") from exc
    return first


async def window_notes(provider: Provider, settings: Settings) -> list[str]:
    """What the server says its window is, against ``<NAME>_CONTEXT_WINDOW``, and whether
    ``BOT_MAX_TOKENS`` leaves that window room for a conversation."""
    info, notes = provider.info, []
    look_up = getattr(provider, "server_window", None)
    real = await look_up() if look_up is not None else None
    usable = info.context_window
    if real is not None and real < info.context_window:
        notes.append(window.mismatch(info.name, info.context_window, real))
        usable = real
    system = await asyncio.to_thread(tokens.count, settings.bot_system_prompt)
    room = window.no_room(info.name, usable, settings.bot_max_tokens, system)
    return notes + ([room] if room else [])


async def check_database(database: str) -> tuple[bool, str]:
    """Whether the database answers, and one line saying so (the password masked)."""
    try:
        if is_postgres(database):
            from .store_postgres import probe as probe_postgres

            found = await probe_postgres(database)
        else:
            from .store_sqlite import probe as probe_sqlite

            found = await probe_sqlite(database)
    except (ConfigError, StoreUnavailable) as exc:  # their text already names the redacted URL
        return False, f"database: {exc}"
    except (sqlite3.Error, OSError) as exc:
        return False, f"database: {database}: cannot open: {exc}"
    return True, f"database: {redact(database)}: ok ({found})"


def render(rows: list[Row]) -> str:
    table = [HEADER, *(row.cells() for row in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    lines = []
    for n, cells in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def advice(settings: Settings, names: list[str]) -> list[str]:
    """Settings that work but will hurt: printed under the table."""
    notes = []
    if "aigateway" in names and settings.bot_read_timeout <= AIGATEWAY_KEEPALIVE:
        notes.append(
            f"BOT_READ_TIMEOUT={settings.bot_read_timeout:g} is not above AIGateway's "
            f"{AIGATEWAY_KEEPALIVE:g} s keep-alive gap: long answers may time out"
        )
    if settings.bot_turn_timeout < settings.bot_read_timeout:
        notes.append("BOT_TURN_TIMEOUT is shorter than BOT_READ_TIMEOUT: the turn timeout wins")
    if settings.bot_first_token_timeout >= settings.bot_turn_timeout:
        notes.append(
            "BOT_FIRST_TOKEN_TIMEOUT is not shorter than BOT_TURN_TIMEOUT: "
            "a provider that hangs holds up the whole answer instead of failing over"
        )
    return notes


async def doctor(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> int:
    rows = await check(settings, transport)
    print(render(rows))
    working = sum(row.ok for row in rows)
    print(f"\n{working} of {len(rows)} provider(s) working")
    database_ok, line = await check_database(settings.bot_database)
    print(line)
    for note in [*(n for row in rows for n in row.notes), *advice(settings, [row.provider for row in rows])]:
        print(f"note: {note}")
    return 0 if working and database_ok else 1
