"""``/relay`` on Discord completes what is typed: the real discord.py command tree answering the
fake Discord's autocomplete interactions with the core's suggestions."""

from __future__ import annotations

from tests.discord_harness import running_bot, wait_for
from tests.fakes.discord import ALICE, BOB, FakeDiscord


async def choices(fake: FakeDiscord, typed: str, author: int = ALICE) -> list[str]:
    payload = await fake.autocomplete("relay", "command", typed, author=author)
    path = rf"/interactions/{payload['id']}/{payload['token']}/callback"
    calls = await wait_for(lambda: fake.find("POST", path), what=f"the choices for {typed!r}")
    body = calls[0].body
    assert body["type"] == 8  # APPLICATION_COMMAND_AUTOCOMPLETE_RESULT
    assert all(c["name"] == c["value"] for c in body["data"]["choices"])
    return [c["value"] for c in body["data"]["choices"]]


async def test_relay_completes_verbs_settings_and_values(make_settings, fake_llm):
    hosted = {"bot_providers": "deepinfra,openai", "deepinfra_token": "di", "bot_admins": str(ALICE)}
    async with running_bot(make_settings, **hosted) as bot:
        relay = next(c for c in bot.fake.commands if c["name"] == "relay")
        assert relay["options"][0]["autocomplete"] is True  # registered as an autocompleted option
        assert await choices(bot.fake, "") == ["status", "config", "usage", "help"]
        assert await choices(bot.fake, "us") == ["usage"]
        assert await choices(bot.fake, "config ") == [
            "config system_prompt", "config providers", "config model", "config temperature", "config max_tokens",
        ]
        assert await choices(bot.fake, "config pro") == ["config providers"]
        assert await choices(bot.fake, "config providers ") == [
            "config providers deepinfra,openai", "config providers deepinfra", "config providers openai",
            "config providers reset",
        ]
        models = await choices(bot.fake, "config model llama-3.1")
        assert models[:2] == ["config model llama-3.1-70b", "config model llama-3.1-8b"]
        assert await choices(bot.fake, "config model meta-llama/Meta-Llama-3.1-8") == [
            "config model meta-llama/Meta-Llama-3.1-8B-Instruct"
        ]
        assert await choices(bot.fake, "config temperature 0") == ["config temperature 0.2", "config temperature 0.7"]
        # only admins change settings: others are offered no setting names
        assert await choices(bot.fake, "config ", author=BOB) == []
        assert not fake_llm.requests
