"""Shared fixtures: a fake model server, settings pointing at it, a real SQLite store."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable

import pytest

from bot.runtime import build_router
from bot.service import RelayService
from bot.settings import Settings
from bot.store_sqlite import SqliteStore
from tests.fakes.llm import FakeLLM

# Tests must never read a developer's real keys or .env file.
for _name in list(os.environ):
    if _name.split("_")[0] in {"BOT", "OPENAI", "AIGATEWAY", "DEEPINFRA", "DATAOORTS", "CLOUDFLARE", "SLACK", "DISCORD"}:
        del os.environ[_name]


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeLLM]:
    server = FakeLLM()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def make_settings(tmp_path, fake_llm: FakeLLM) -> Callable[..., Settings]:
    """Settings for the ``openai`` provider at the fake server; keyword overrides win."""

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "openai_base_url": fake_llm.base_url,
            "openai_api_key": "sk-test-secret",
            "bot_database": tmp_path / "relay.db",
            "bot_edit_interval": 0.05,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[arg-type]

    return make


@pytest.fixture
async def service(make_settings) -> AsyncIterator[RelayService]:
    settings = make_settings()
    store = await SqliteStore.open(settings.bot_database)
    router = build_router(settings)
    yield RelayService(settings, store, router)
    await router.aclose()
    await store.close()
