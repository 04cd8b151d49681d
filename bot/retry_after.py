"""The one reader of ``Retry-After``: how long a server asked us to wait.

Providers (httpx), Slack (slack_sdk) and Discord (aiohttp) all hand us
response headers in a different mapping; ``retry_after`` reads any of them
(names compared case-insensitively, a list value read by its first item).
It understands ``retry-after-ms`` (OpenAI-style APIs), ``Retry-After`` in
seconds, and ``Retry-After`` as an HTTP date.  The result is clamped to
``>= 0``; an absent or unreadable header gives None, and each caller picks
its own default (and its own cap).
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping


def retry_after(headers: Mapping[str, object] | None, *, now: float | None = None) -> float | None:
    """Seconds to wait according to ``headers``; None when they do not say (readably)."""
    if not headers:
        return None
    ms = _seconds(_header(headers, "retry-after-ms"))
    if ms is not None:
        return ms / 1000.0
    value = _header(headers, "retry-after")
    seconds = _seconds(value)
    if seconds is not None or value is None:
        return seconds
    return _until_date(value, time.time() if now is None else now)


def _header(headers: Mapping[str, object], name: str) -> str | None:
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name:
            if isinstance(value, (list, tuple)):
                value = value[0] if value else None
            return value.strip() if isinstance(value, str) and value.strip() else None
    return None


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return max(0.0, number) if math.isfinite(number) else None


def _until_date(value: str, now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    try:
        stamp = when.timestamp()  # a date without a zone is read as local time, as email does
    except (OverflowError, OSError, ValueError):
        return None
    return max(0.0, stamp - now)
