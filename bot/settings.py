"""All configuration, from the environment and a ``.env`` file, loaded once in ``main()``.

Field names are the environment variable names (case-insensitive).  Secrets
are ``SecretStr`` so they never show in logs or reprs.  ``load_settings``
turns a validation failure into a ``ConfigError`` whose message names each
wrong variable on one line.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .errors import ConfigError

PROVIDER_NAMES = ("aigateway", "deepinfra", "dataoorts", "cloudflare", "openai")

CommaList = Annotated[list[str], NoDecode]


def _split(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _json_list(value: object) -> object:
    """A list given as JSON text (an environment variable); anything else as it is."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        raise ValueError('must be a JSON list, e.g. ["first", "second"]') from None


class SuggestedPrompt(BaseModel):
    """A prompt Slack offers under the greeting: a short title, and the message it sends."""

    title: str = Field(min_length=1, max_length=200)
    message: str = Field(min_length=1, max_length=2000)


#: Slack shows at most 4 suggested prompts and rotates at most 10 loading messages
MAX_PROMPTS, MAX_LOADING_MESSAGES = 4, 10
SLACK_PROMPTS = [
    SuggestedPrompt(title="Explain a concept", message="Explain how TCP congestion control works, briefly."),
    SuggestedPrompt(title="Review some code", message="Review this Python function for bugs:"),
    SuggestedPrompt(title="Draft a message", message="Draft a short, friendly status update for my team."),
]
SLACK_LOADING = ["Reading the conversation…", "Thinking it through…", "Writing the answer…"]


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One provider's settings, gathered from its ``<NAME>_*`` variables."""

    name: str
    api_key: SecretStr | None
    base_url: str
    model: str
    context_window: int
    price_in: float
    price_out: float
    account_id: str | None = None  # Cloudflare only

    @property
    def configured(self) -> bool:
        if self.name == "cloudflare":
            return self.api_key is not None and bool(self.account_id)
        if self.name == "openai":
            return bool(self.base_url)
        return self.api_key is not None


#: The range of max_tokens, for BOT_MAX_TOKENS and a channel's ``max_tokens`` alike (each provider
#: then caps it at what it takes: AIGateway 8,192).
MIN_MAX_TOKENS, MAX_MAX_TOKENS = 16, 131_072


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",
        case_sensitive=False,
    )

    # -- the bot ---------------------------------------------------------------------
    bot_providers: CommaList = Field(default_factory=list)
    # a SQLite file or postgresql://user:password@host:port/db; repr=False: a URL may hold a password
    bot_database: str = Field("llama-relay.db", min_length=1, repr=False)
    bot_database_wait: float = Field(60.0, gt=0)  # seconds an operation waits out a lock held elsewhere
    bot_database_pool: int = Field(5, ge=1, le=100)  # PostgreSQL connections per process
    bot_max_tokens: int = Field(1024, ge=MIN_MAX_TOKENS, le=MAX_MAX_TOKENS)
    bot_system_prompt: str = (
        "You are a helpful assistant in a team chat. Answer clearly and concisely. "
        "Use Markdown for code and lists."
    )
    bot_edit_interval: float = Field(1.0, ge=0.0, le=30.0)
    bot_message_limit: int = Field(0, ge=0)  # continue in a new message past this; 0: the platform's limit
    bot_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    bot_log_json: bool = False
    # a history longer than the window: "trim" drops the oldest turns, "summary" replaces them with a
    # short summary made by the answering provider (cached per conversation, see bot/summary.py)
    bot_history: Literal["trim", "summary"] = "trim"

    # sampling (checked against each provider's ranges when a request is built)
    bot_temperature: float | None = None
    bot_top_p: float | None = None
    bot_top_k: int | None = None
    bot_min_p: float | None = None
    bot_seed: int | None = None
    bot_stop: CommaList = Field(default_factory=list)
    bot_presence_penalty: float | None = None
    bot_frequency_penalty: float | None = None
    bot_repetition_penalty: float | None = None

    # access and quotas (0 = no limit); admins are exempt from quotas and may use /relay config
    bot_admins: CommaList = Field(default_factory=list)
    bot_blocked_users: CommaList = Field(default_factory=list)
    bot_blocked_channels: CommaList = Field(default_factory=list)
    bot_blocked_workspaces: CommaList = Field(default_factory=list)
    bot_blocked_roles: CommaList = Field(default_factory=list)
    bot_user_requests_per_minute: int = Field(0, ge=0)
    bot_channel_requests_per_minute: int = Field(0, ge=0)
    bot_user_daily_tokens: int = Field(0, ge=0)
    bot_user_daily_cost: float = Field(0.0, ge=0)
    bot_channel_daily_tokens: int = Field(0, ge=0)
    bot_channel_daily_cost: float = Field(0.0, ge=0)

    # files attached to questions (bot/attachments.py): how many per message (0: none are read),
    # bytes downloaded per file, characters of text kept per file (cut in the middle), seconds per download
    bot_attachment_max_files: int = Field(5, ge=0, le=50)
    bot_attachment_max_bytes: int = Field(5_000_000, ge=1000)
    bot_attachment_max_chars: int = Field(400_000, ge=1000)
    bot_attachment_timeout: float = Field(15.0, gt=0)

    # per-channel settings from a TOML file (see bot/channel_config.py); /relay config overrides it
    bot_channel_config: Path | None = None

    # operations
    bot_ops_port: int = Field(8080, ge=0, le=65535)  # /healthz and /metrics; 0 turns it off
    bot_ops_host: str = "127.0.0.1"
    bot_shutdown_grace: float = Field(20.0, ge=0)  # seconds replies in flight get to finish
    bot_replica: str = ""  # this process's name in metrics and request records; empty: the host name

    # provider timeouts, seconds
    bot_connect_timeout: float = Field(10.0, gt=0)
    bot_read_timeout: float = Field(60.0, gt=0)  # longest gap between two chunks
    bot_first_token_timeout: float = Field(15.0, gt=0)  # request sent → first text, per try
    bot_turn_timeout: float = Field(300.0, gt=0)  # a whole answer

    # -- providers ---------------------------------------------------------------------
    aigateway_api_key: SecretStr | None = None
    aigateway_base_url: str = "https://api.aigateway.sh/v1"
    aigateway_model: str = "meta/llama-3.1-70b-instruct"
    aigateway_context_window: int = Field(131_072, ge=512)
    aigateway_price_in: float = Field(0.29, ge=0)
    aigateway_price_out: float = Field(0.60, ge=0)

    deepinfra_token: SecretStr | None = None
    deepinfra_base_url: str = "https://api.deepinfra.com/v1/openai"
    deepinfra_model: str = "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo"
    deepinfra_context_window: int = Field(131_072, ge=512)
    deepinfra_price_in: float = Field(0.13, ge=0)
    deepinfra_price_out: float = Field(0.40, ge=0)

    dataoorts_api_key: SecretStr | None = None
    dataoorts_base_url: str = "https://cloud.dataoorts.com/api/v1"
    dataoorts_model: str = "meta/llama-3.1-70b-instruct"
    dataoorts_context_window: int = Field(25_000, ge=512)
    dataoorts_price_in: float = Field(0.31, ge=0)
    dataoorts_price_out: float = Field(0.34, ge=0)

    cloudflare_account_id: str | None = None
    cloudflare_auth_token: SecretStr | None = None
    cloudflare_base_url: str = "https://api.cloudflare.com/client/v4"
    cloudflare_model: str = "@cf/meta/llama-3.1-70b-instruct"
    cloudflare_context_window: int = Field(24_000, ge=512)
    cloudflare_price_in: float = Field(0.40, ge=0)
    cloudflare_price_out: float = Field(0.40, ge=0)

    openai_api_key: SecretStr | None = None
    openai_base_url: str = ""
    openai_model: str = "meta-llama/Llama-3.1-70B-Instruct"
    openai_context_window: int = Field(131_072, ge=512)
    openai_price_in: float = Field(0.0, ge=0)
    openai_price_out: float = Field(0.0, ge=0)

    # -- Slack ---------------------------------------------------------------------------
    slack_bot_token: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    slack_port: int = Field(3000, ge=0, le=65535)  # 0: any free port (tests)
    slack_host: str = "0.0.0.0"  # HTTP mode: the address /slack/events listens on
    slack_native_streaming: bool = False
    slack_thread_followups: bool = True
    slack_allowed_channels: CommaList = Field(default_factory=list)
    slack_allowed_users: CommaList = Field(default_factory=list)
    slack_edits_per_minute: float = Field(50.0, gt=0)
    slack_socket_connections: int = Field(1, ge=1, le=10)  # Socket Mode connections of this process
    # Slack's agent messaging experience (manifest ``agent_view``): the DM opens with the greeting
    # and prompts (app_home_opened), each DM message is a thread root answered in its thread
    slack_agent_view: bool = False
    # the greeting and suggested prompts of a new assistant thread (or agent DM), and the loading
    # messages its status rotates through while an answer comes
    slack_greeting: str = Field("Hi! Ask me anything: I answer in the thread.", min_length=1, max_length=3000)
    slack_suggested_prompts: Annotated[list[SuggestedPrompt], NoDecode] = Field(
        default_factory=lambda: list(SLACK_PROMPTS), max_length=MAX_PROMPTS
    )
    slack_loading_messages: Annotated[list[Annotated[str, Field(min_length=1)]], NoDecode] = Field(
        default_factory=lambda: list(SLACK_LOADING), max_length=MAX_LOADING_MESSAGES
    )

    # -- Discord ---------------------------------------------------------------------------
    discord_token: SecretStr | None = None
    discord_api_url: str = "https://discord.com/api/v10"
    discord_gateway_url: str = "wss://gateway.discord.gg/"
    discord_reply_mode: Literal["reply", "thread"] = "reply"
    discord_allow_bots: bool = False
    discord_allowed_guilds: CommaList = Field(default_factory=list)
    discord_allowed_channels: CommaList = Field(default_factory=list)
    discord_allowed_roles: CommaList = Field(default_factory=list)
    discord_allowed_users: CommaList = Field(default_factory=list)
    discord_edits_per_minute: float = Field(60.0, gt=0)
    # sharding (checked and parsed by the Discord adapter): unset count = one plain connection
    discord_shard_count: int | None = Field(None, ge=1)
    discord_shards: str | None = None  # this process's shards: "0-3", "4,5", "0-1,4"; unset: all

    _split_lists = field_validator(
        "bot_providers",
        "bot_stop",
        "bot_admins",
        "bot_blocked_users",
        "bot_blocked_channels",
        "bot_blocked_workspaces",
        "bot_blocked_roles",
        "slack_allowed_channels",
        "slack_allowed_users",
        "discord_allowed_guilds",
        "discord_allowed_channels",
        "discord_allowed_roles",
        "discord_allowed_users",
        mode="before",
    )(_split)

    _loading_list = field_validator("slack_loading_messages", mode="before")(_json_list)

    @field_validator("slack_suggested_prompts", mode="before")
    @classmethod
    def _prompt_list(cls, value: object) -> object:
        """A JSON list; a prompt given as a plain string is its own title and message."""
        value = _json_list(value)
        if isinstance(value, list):
            return [{"title": v, "message": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("bot_database", mode="before")
    @classmethod
    def _database_path_or_url(cls, value: object) -> object:
        return str(value) if isinstance(value, PathLike) else value

    @field_validator("bot_log_level", mode="before")
    @classmethod
    def _level_in_any_case(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value  # "debug" is DEBUG

    @field_validator("bot_providers")
    @classmethod
    def _known_providers(cls, names: list[str]) -> list[str]:
        names = [n.lower() for n in names]
        unknown = [n for n in names if n not in PROVIDER_NAMES]
        if unknown:
            raise ValueError(f"unknown provider {unknown[0]!r}; choose from {', '.join(PROVIDER_NAMES)}")
        return names

    # -- derived -------------------------------------------------------------------------

    def provider(self, name: str) -> ProviderConfig:
        key_field = {"deepinfra": "deepinfra_token", "cloudflare": "cloudflare_auth_token"}.get(
            name, f"{name}_api_key"
        )
        return ProviderConfig(
            name=name,
            api_key=getattr(self, key_field),
            base_url=getattr(self, f"{name}_base_url").rstrip("/"),
            model=getattr(self, f"{name}_model"),
            context_window=getattr(self, f"{name}_context_window"),
            price_in=getattr(self, f"{name}_price_in"),
            price_out=getattr(self, f"{name}_price_out"),
            account_id=self.cloudflare_account_id if name == "cloudflare" else None,
        )

    def replica_name(self) -> str:
        return self.bot_replica or socket.gethostname()

    def provider_order(self) -> list[str]:
        """``BOT_PROVIDERS`` if set, else every configured provider, cheapest first."""
        if self.bot_providers:
            return list(self.bot_providers)
        configs = [self.provider(n) for n in PROVIDER_NAMES]
        ready = [c for c in configs if c.configured]
        return [c.name for c in sorted(ready, key=lambda c: c.price_in + c.price_out)]


def load_settings(**overrides: object) -> Settings:
    """Load settings; raise ``ConfigError`` naming every wrong variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        name = str(err["loc"][0]).upper() if err["loc"] else "settings"
        lines.append(f"{name}: {err['msg']}")
    return "; ".join(lines)
