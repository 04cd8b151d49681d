"""The Slack app manifest asks for what the adapter uses."""

from __future__ import annotations

from pathlib import Path

import yaml

from adapters.slack.shortcuts import CALLBACK
from bot.settings import Settings

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
        "reactions:read",  # 🛑 stops an answer
        "reactions:write",  # :eyes: on a question while its answer starts (busy workspace)
        "files:read",  # attached files are downloaded with the bot token
    } <= scopes
    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert {"app_mention", "message.channels", "message.im", "assistant_thread_started"} <= events
    # the Home tab, and Slack's agent messaging experience: the DM opened, its stop button
    assert {"app_home_opened", "agent_session_stopped"} <= events
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    # controls: 🛑 reactions; edited questions come as message_changed in the message.* events
    assert {"reaction_added", "message.groups", "message.mpim"} <= events
    interactivity = manifest["settings"]["interactivity"]  # the buttons under an answer
    assert interactivity["is_enabled"] is True and interactivity["request_url"].endswith("/slack/events")
    commands = {c["command"] for c in manifest["features"]["slash_commands"]}
    assert commands == {"/ask", "/relay"}
    assert all(c["url"].endswith("/slack/events") for c in manifest["features"]["slash_commands"])
    assert manifest["settings"]["socket_mode_enabled"] is True
    # the message shortcut the adapter listens for
    (shortcut,) = manifest["features"]["shortcuts"]
    assert shortcut["type"] == "message" and shortcut["callback_id"] == CALLBACK


def test_manifest_declares_the_default_suggested_prompts():
    """The manifest declares the prompts the bot sets by default (``SLACK_SUGGESTED_PROMPTS``)."""
    manifest = yaml.safe_load(MANIFEST.read_text())
    declared = manifest["features"]["assistant_view"]["suggested_prompts"]
    defaults = Settings(_env_file=None).slack_suggested_prompts
    assert declared == [p.model_dump() for p in defaults]
