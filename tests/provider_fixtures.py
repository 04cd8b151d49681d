"""Provider test fixtures, loaded with ``pytest_plugins = ["tests.provider_fixtures"]``.

``fakes``: the loopback provider fakes (``tests/fakes/providers.py``);
``settings_for(*names, **overrides)``: Settings with those providers pointed at them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from bot.settings import Settings
from tests.fakes.providers import FakeProviders


@pytest.fixture
async def fakes() -> AsyncIterator[FakeProviders]:
    server = FakeProviders()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def settings_for(tmp_path, fakes: FakeProviders) -> Callable[..., Settings]:
    """Settings with the named providers pointed at the fakes; keyword overrides win."""

    def make(*names: str, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "bot_database": tmp_path / "relay.db",
            "bot_edit_interval": 0.0,
            "bot_providers": ",".join(names),
        }
        for name in names:
            values.update(fakes.settings(name))
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[arg-type]

    return make
