"""/relay status, config and usage through the real store and service."""

from __future__ import annotations

from bot.access import Caller
from bot.commands import relay_command
from bot.conversation import Turn
from bot.service import Request
from tests.fakes.sinks import RecordingSurface

ADMIN = Caller("discord", "UADMIN", "C1")
USER = Caller("discord", "U1", "C1")


async def test_admins_configure_a_channel_and_requests_follow_it(make_settings, fake_llm):
    from bot.runtime import open_service

    async with open_service(make_settings(bot_admins=["UADMIN"])) as service:
        assert "Only admins" in await relay_command(service, USER, "config temperature 0.2")
        assert "now `0.2`" in await relay_command(service, ADMIN, "config temperature 0.2")
        assert "Not changed" in await relay_command(service, ADMIN, "config temperature 9")
        assert "Not changed" in await relay_command(service, ADMIN, "config colour blue")
        await relay_command(service, ADMIN, "config system_prompt You are a pirate.")
        await relay_command(service, ADMIN, "config max_tokens 99")
        shown = await relay_command(service, USER, "config")
        assert "pirate" in shown and "`max_tokens`: 99" in shown

        await service.answer(Request("discord", "C1", [Turn("user", "hi")], user_id="U1"), RecordingSurface())
        sent = fake_llm.requests[-1]
        assert sent["temperature"] == 0.2 and sent["max_tokens"] == 99
        assert sent["messages"][0] == {"role": "system", "content": "You are a pirate."}

        await service.answer(Request("discord", "C2", [Turn("user", "hi")], user_id="U1"), RecordingSurface())
        assert "temperature" not in fake_llm.requests[-1]  # other channels keep the defaults

        assert "back to the default" in await relay_command(service, ADMIN, "config temperature reset")
        status = await relay_command(service, USER, "status")
        assert "max output tokens: 99" in status and "custom for this channel" in status


async def test_usage_is_personal_unless_admin(make_settings, fake_llm):
    from bot.runtime import open_service

    async with open_service(make_settings(bot_admins=["UADMIN"])) as service:
        assert "not used" in await relay_command(service, USER, "usage")
        await service.answer(Request("discord", "C1", [Turn("user", "hi")], user_id="U1"), RecordingSurface())
        await service.answer(Request("discord", "C1", [Turn("user", "hi")], user_id="U2"), RecordingSurface())
        mine = await relay_command(service, USER, "usage")
        assert "openai: 1 requests" in mine
        everyone = await relay_command(service, ADMIN, "usage")
        assert "per user" in everyone and "U1" in everyone and "U2" in everyone
        assert "/relay status" in await relay_command(service, USER, "what")
        assert "/relay status" in await relay_command(service, USER, "")


async def test_channel_settings_from_a_file_and_relay_config_overrides_it(make_settings, fake_llm, tmp_path):
    from pathlib import Path

    from bot.runtime import open_service

    example = Path(__file__).parent.parent / "config" / "channels.example.toml"
    (tmp_path / "channels.toml").write_text(example.read_text().replace("C0123ABCD", "C1").replace("slack.", "discord.", 1))
    settings = make_settings(bot_channel_config=tmp_path / "channels.toml", bot_admins=["UADMIN"])
    async with open_service(settings) as service:
        await service.answer(Request("discord", "C1", [Turn("user", "hi")], user_id="U1"), RecordingSurface())
        sent = fake_llm.requests[-1]
        assert sent["temperature"] == 0.2 and "billing" in sent["messages"][0]["content"]
        await relay_command(service, ADMIN, "config temperature 0.9")
        await service.answer(Request("discord", "C1", [Turn("user", "hi")], user_id="U1"), RecordingSurface())
        assert fake_llm.requests[-1]["temperature"] == 0.9
        assert "billing" in await relay_command(service, USER, "config")


def test_a_bad_channel_file_is_one_clear_configuration_error(make_settings, tmp_path):
    import pytest

    from bot.channel_config import load_file
    from bot.errors import ConfigError

    bad = tmp_path / "bad.toml"
    bad.write_text('[slack.C1]\ntemperature = 7\n')
    with pytest.raises(ConfigError, match=r"BOT_CHANNEL_CONFIG: \[slack.C1\] temperature must be between 0 and 2"):
        load_file(bad)
    bad.write_text("not toml [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_file(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_file(tmp_path / "missing.toml")


def test_a_channels_max_tokens_takes_what_bot_max_tokens_takes(make_settings, tmp_path):
    """The example file's range is the setting's: a channel may ask for what BOT_MAX_TOKENS allows."""
    import re
    from pathlib import Path

    import pytest

    from bot.channel_config import load_file
    from bot.errors import ConfigError
    from bot.settings import Settings

    example = (Path(__file__).parent.parent / "config" / "channels.example.toml").read_text()
    low, high = map(int, re.search(r"max_tokens \((\d+)-(\d+)", example).groups())
    field = Settings.model_fields["bot_max_tokens"].metadata
    assert (low, high) == (next(m.ge for m in field if hasattr(m, "ge")), next(m.le for m in field if hasattr(m, "le")))
    make_settings(bot_max_tokens=high)  # the setting takes it ...
    wide = tmp_path / "wide.toml"
    wide.write_text(f"[slack.C1]\nmax_tokens = {high}\n")
    assert load_file(wide)[("slack", "C1")]["max_tokens"] == str(high)  # ... and so does a channel
    wide.write_text(f"[slack.C1]\nmax_tokens = {high + 1}\n")
    with pytest.raises(ConfigError, match=f"max_tokens must be between {low} and {high}"):
        load_file(wide)
