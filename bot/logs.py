"""Logging: plain or JSON lines on stderr, a request id on every line, secrets masked.

The request id lives in a context variable set by the service for each reply,
so every log line written while handling it carries the id.  As a second line
of defence behind ``SecretStr``, every configured secret value is replaced by
``***`` in any log line that would contain it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterable

from pydantic import SecretStr

from .settings import Settings

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
NOISY = ("httpx", "httpcore", "aiosqlite", "discord.gateway", "discord.client", "websockets", "slack_bolt.AsyncApp")


class Context(logging.Filter):
    """Adds ``request_id`` and masks secrets in the message."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        if self.secrets:
            message = record.getMessage()
            masked = message
            for secret in self.secrets:
                masked = masked.replace(secret, "***")
            if masked != message:
                record.msg, record.args = masked, None
            if record.exc_info and record.exc_text is None:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                for secret in self.secrets:
                    record.exc_text = record.exc_text.replace(secret, "***")
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def secret_values(settings: Settings) -> list[str]:
    return [
        getattr(settings, name).get_secret_value()
        for name in type(settings).model_fields
        if isinstance(getattr(settings, name), SecretStr)
    ]


def setup_logging(settings: Settings, *, quiet: bool = False) -> None:
    """Log to stderr; ``quiet`` (terminal commands) shows errors only."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(Context(secret_values(settings)))
    if settings.bot_log_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel("ERROR" if quiet else settings.bot_log_level)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel("WARNING")
