"""The compose file of docs/scaling.md: two replicas an operator can start as they are."""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.settings import Settings

COMPOSE = Path(__file__).resolve().parent.parent / "config" / "compose.yml"


def _relays() -> dict[str, dict]:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    return {name: s for name, s in services.items() if name.startswith("relay")}


def test_two_replicas_share_one_postgresql():
    relays = _relays()
    assert len(relays) == 2
    for service in relays.values():
        assert service["environment"]["BOT_DATABASE"].startswith("postgresql://relay:")
        assert service["depends_on"]["db"]["condition"] == "service_healthy"
    assert len({s["environment"]["BOT_REPLICA"] for s in relays.values()}) == 2


def test_every_shard_is_run_once_and_slack_connections_stay_within_ten():
    relays = _relays().values()
    counts = {int(s["environment"]["DISCORD_SHARD_COUNT"]) for s in relays}
    assert len(counts) == 1
    shards = sorted(int(s["environment"]["DISCORD_SHARDS"]) for s in relays)
    assert shards == list(range(counts.pop()))
    assert sum(int(s["environment"]["SLACK_SOCKET_CONNECTIONS"]) for s in relays) <= 10


def test_it_names_only_settings_that_exist():
    known = {name.upper() for name in Settings.model_fields}
    for service in _relays().values():
        assert set(service["environment"]) <= known
