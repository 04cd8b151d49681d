"""The one error tree of llama-relay.

Every failure the core can see is one of these.  Providers and adapters map
their library's exceptions here with ``raise ... from``; users only ever see
``error.user_message`` (a short sentence), never raw exception text.
"""

from __future__ import annotations

import os


class RelayError(Exception):
    """Base of every error the bot handles on purpose."""

    #: Whether trying the same request again (after a pause) may succeed.
    retryable: bool = False

    @property
    def user_message(self) -> str:
        return str(self) or "Something went wrong."


class ConfigError(RelayError):
    """A setting is missing or wrong; the message names the variable."""


class EmptyPrompt(RelayError):
    def __init__(self) -> None:
        super().__init__("The question is empty: type something to ask.")


class NothingReadable(RelayError):
    """A question that is only files the bot cannot read: what it says about them, not "empty"."""

    def __init__(self, notes: list[str]) -> None:
        super().__init__(" ".join(f"{note[0].upper()}{note[1:]}." for note in notes))


class WindowTooSmall(RelayError):
    """Not even the system prompt and a few tokens of the question fit a context window."""


class BadChannelSetting(RelayError):
    """A channel setting an admin typed is not valid; the message says what is expected."""


# --- access ----------------------------------------------------------------


class Blocked(RelayError):
    """The caller is on a block list: the bot stays silent."""


class QuotaReached(RelayError):
    """A request rate or daily budget is used up; ``retry_in`` says when it frees up (seconds)."""

    def __init__(self, message: str, retry_in: float) -> None:
        self.retry_in = retry_in
        super().__init__(message)


# --- providers -------------------------------------------------------------


class ProviderError(RelayError):
    """A provider failed.  ``provider`` is the display name, ``status`` the HTTP status."""

    hint: str = ""

    def __init__(
        self,
        provider: str,
        detail: str = "",
        *,
        status: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.provider = provider
        self.detail = detail
        self.status = status
        if hint is not None:
            self.hint = hint
        super().__init__(self._compose())

    def _what(self) -> str:
        return "failed"

    def _compose(self) -> str:
        code = f" ({self.status})" if self.status else ""
        text = f"{self.provider} {self._what()}{code}"
        if self.hint:
            text += f": {self.hint}"
        return text


class AuthFailed(ProviderError):
    def _what(self) -> str:
        return "rejected the API key"


class QuotaExceeded(ProviderError):
    """Payment required or a daily quota used up: no point retrying soon.

    ``cool_for``: seconds until the quota is back, when the provider says so
    (Cloudflare's daily allocation resets at 00:00 UTC); None when unknown.
    """

    def __init__(
        self,
        provider: str,
        detail: str = "",
        *,
        status: int | None = None,
        hint: str | None = None,
        cool_for: float | None = None,
    ) -> None:
        self.cool_for = cool_for
        super().__init__(provider, detail, status=status, hint=hint)

    def _what(self) -> str:
        return "has no quota left"


class NotFound(ProviderError):
    def _what(self) -> str:
        return "does not know this model or endpoint"


class BadRequest(ProviderError):
    def _what(self) -> str:
        return "rejected the request"


class ContextTooLong(ProviderError):
    """The prompt did not fit the provider's window; ``window`` is that window when the error says it."""

    def __init__(
        self,
        provider: str,
        detail: str = "",
        *,
        status: int | None = None,
        hint: str | None = None,
        window: int | None = None,
    ) -> None:
        self.window = window
        super().__init__(provider, detail, status=status, hint=hint)

    def _what(self) -> str:
        return "says the conversation is too long for its context window"


class RateLimited(ProviderError):
    retryable = True

    def __init__(
        self,
        provider: str,
        detail: str = "",
        *,
        status: int | None = 429,
        hint: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(provider, detail, status=status, hint=hint)

    def _what(self) -> str:
        return "is rate limiting us"


class ProviderUnavailable(ProviderError):
    retryable = True

    def _what(self) -> str:
        return "is unavailable"


class ProviderTimeout(ProviderError):
    retryable = True

    def _what(self) -> str:
        return "timed out"


class StreamInterrupted(ProviderError):
    """The stream broke after text had started; the partial text is kept."""

    def _what(self) -> str:
        return "cut the answer off"


class NoProviderConfigured(ConfigError):
    """The one wording for "no provider": the key of one is enough; BOT_PROVIDERS only orders them."""

    def __init__(self) -> None:
        super().__init__(
            "no provider is configured: set the key of at least one provider (AIGATEWAY_API_KEY, "
            "DEEPINFRA_TOKEN, DATAOORTS_API_KEY, CLOUDFLARE_ACCOUNT_ID + CLOUDFLARE_AUTH_TOKEN, or "
            "OPENAI_BASE_URL); BOT_PROVIDERS optionally orders them (see config/.env.example)"
        )


# --- platforms -------------------------------------------------------------


class PlatformError(RelayError):
    """A chat platform call failed (Slack, Discord).  The text is for logs only."""

    @property
    def user_message(self) -> str:
        return "(the chat platform had a problem showing this answer; ask again if it looks incomplete)"


class PlatformUnavailable(PlatformError):
    """A transient platform failure (5xx, internal_error, network): worth another try."""

    retryable = True


class PlatformRateLimited(PlatformError):
    retryable = True

    def __init__(self, detail: str = "", *, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(detail or f"rate limited, retry after {retry_after:.1f}s")


class MessageGone(PlatformError):
    """The message being edited was deleted, or the interaction expired."""


class StreamClosed(MessageGone):
    """A native stream expired (Slack's ``message_not_in_streaming_state``); the message is still there."""


class NoRoom(PlatformError):
    """The message cannot hold any answer text (its header or notes fill it)."""


# --- store -----------------------------------------------------------------


class StoreUnavailable(RelayError):
    """The database stayed locked or busy past ``BOT_DATABASE_WAIT``; the text names the file."""

    retryable = True

    @property
    def user_message(self) -> str:
        return "The bot's database is busy right now: please ask again in a minute."


class StoreInUse(ConfigError):
    """Another ``serve`` holds this SQLite file; the text names the file and that process."""


def os_reason(exc: OSError) -> str:
    """The short reason of a failed bind or connect ("Address already in use"), without the
    library's wording around it."""
    if exc.errno and exc.errno > 0:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or type(exc).__name__
