"""The Slack app manifest asks for what the adapter uses."""

from __future__ import annotations

from pathlib import Path

import yaml

MANIFEST = Path(__file__).resolve().parents[1] / "config" / "slack-app-manifest.yaml"


def test_manifest_covers_the_adapter():
    manifest = yaml.safe_load(MANIFEST.read_text())
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {
        "app_mentions:read",
        "chat:write",
        "commands",
        "channels:history",
        "im:history",
        "users:read",
        "assistant:write",
    } <= scopes
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert {"app_mention", "message.channels", "message.im", "assistant_thread_started"} <= events
    commands = {c["command"] for c in manifest["features"]["slash_commands"]}
    assert commands == {"/ask", "/relay"}
    assert all(c["url"].endswith("/slack/events") for c in manifest["features"]["slash_commands"])
    assert manifest["settings"]["socket_mode_enabled"] is True
