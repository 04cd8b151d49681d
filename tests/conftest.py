"""Shared fixtures: a fake model server, settings pointing at it, a real SQLite store, and
the store under test on each backend (``backend``: ``sqlite`` and ``postgres``, the latter on a
throwaway PostgreSQL server started once per session, see ``tests/pg.py``)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from bot.runtime import build_router
from bot.service import RelayService
from bot.settings import Settings
from bot.store import Store, open_store
from bot.store_sqlite import SqliteStore
from tests import pg
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


# -- the store on both backends ------------------------------------------------------------

_ran_on: list[str] = []  # one line per server started (one per pytest-xdist worker that needed one)


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> Iterator[pg.PostgresServer]:
    """A PostgreSQL server for the whole session; no binaries is an error, never a skip."""
    try:
        server = pg.start()
    except pg.NoPostgres as exc:
        pytest.fail(str(exc), pytrace=False)
    line = f"PostgreSQL tests ran on {server.bindir} (found by {server.origin}), 127.0.0.1:{server.port}"
    _ran_on.append(line)
    worker_output = getattr(request.config, "workeroutput", None)  # set on a pytest-xdist worker
    if worker_output is not None:
        worker_output.setdefault("postgres", []).append(line)
    yield server
    server.stop()


@pytest.fixture
async def postgres_url(postgres_server: pg.PostgresServer) -> str:
    """A fresh, empty database of its own for this test: ``postgresql://relay:…@127.0.0.1:…/test_<n>``."""
    return await postgres_server.new_database()


@pytest.fixture
async def stores(postgres_url: str) -> AsyncIterator[list[Store]]:
    """Three stores on one PostgreSQL database, as three replicas would open it."""
    opened = [await open_store(postgres_url, pool_size=3) for _ in range(3)]
    yield opened
    for store in opened:
        await store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database(backend: str, request: pytest.FixtureRequest, tmp_path) -> str:
    """What ``BOT_DATABASE`` would say for this test's backend: a new SQLite file or PostgreSQL database."""
    if backend == "sqlite":
        return str(tmp_path / "store.db")
    server: pg.PostgresServer = request.getfixturevalue("postgres_server")
    return await server.new_database()


@pytest.fixture
async def make_store(database: str) -> AsyncIterator[Callable[..., Awaitable[Store]]]:
    """Opens the test's database (again, for a "restart") through ``open_store``; closed at the end."""
    opened: list[Store] = []

    async def open_(**options: object) -> Store:
        store = await open_store(database, **options)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield open_
    for store in opened:
        await store.close()


@pytest.fixture
async def store(make_store: Callable[..., Awaitable[Store]]) -> Store:
    return await make_store()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """pytest-xdist: a worker finished; keep the servers it started for the summary."""
    _ran_on.extend(getattr(node, "workeroutput", {}).get("postgres", []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _ran_on:
        terminalreporter.write_line(line)
