"""A channel's own model: ``/relay config model …`` on Slack (the real Bolt stack) and the channel
TOML, checked against the providers the channel uses, and sent in the provider request."""

from __future__ import annotations

import pytest

from bot.channel_config import load_file
from bot.conversation import Turn
from bot.errors import ConfigError
from bot.runtime import open_service
from bot.service import Request
from tests.discord_harness import running_bot, wait_for
from tests.fakes.discord import ALICE, CHANNEL_ID
from tests.fakes.sinks import RecordingSurface
from tests.fakes.slack import BOT_USER
from tests.slack_helpers import mention, reply_text, until

pytest_plugins = ("tests.slack_env",)


async def relay(slack, text: str, n: int) -> str:
    """``/relay <text>`` by the admin U1 in C1: the ephemeral answer (the ``n``-th so far)."""
    command = {
        "command": "/relay", "text": text, "user_id": "U1", "channel_id": "C1", "team_id": "T1",
        "trigger_id": f"t{n}", "response_url": f"{slack.api_url}respond",
    }
    await slack.deliver(command, kind="slash_commands")
    replies = await until(lambda: len(slack.called("respond")) >= n and slack.called("respond"), what="/relay's answer")
    return str(replies[n - 1].params["text"])


async def model_asked(slack, fake_llm, channel: str = "C1") -> str:
    """Mention the bot in ``channel``: the model its provider request named."""
    fake_llm.reply("Answered.")
    event = mention(slack, f"<@{BOT_USER}> which model?", channel=channel)
    await slack.deliver(slack.callback(event))
    await reply_text(slack, channel, event["ts"], "Answered.")
    return str(fake_llm.requests[-1]["model"])


async def test_a_hosted_provider_takes_only_a_model_it_serves(slack, start_bot, fake_llm):
    await start_bot(
        bot_admins="U1", bot_providers="deepinfra", deepinfra_token="di-test", deepinfra_base_url=fake_llm.base_url
    )
    refused = await relay(slack, "config model gpt-4o", 1)
    assert refused.startswith("Not changed: deepinfra does not serve the model `gpt-4o`; it serves `llama-3.1-70b`")
    assert "`meta-llama/Meta-Llama-3.1-8B-Instruct`" in refused
    assert "`model` is now `llama-3.1-8b`" in await relay(slack, "config model llama-3.1-8b", 2)
    assert "`model`: llama-3.1-8b" in await relay(slack, "config", 3)
    assert "• model: llama-3.1-8b" in await relay(slack, "status", 4)

    assert await model_asked(slack, fake_llm) == "meta-llama/Meta-Llama-3.1-8B-Instruct"
    # other channels keep the provider's own
    assert await model_asked(slack, fake_llm, "C2") == "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo"


async def test_an_openai_compatible_server_takes_any_model_name(slack, start_bot, fake_llm):
    bot = await start_bot(bot_admins="U1")
    assert "`model` is now `qwen-local:32b`" in await relay(slack, "config model qwen-local:32b", 1)
    assert await model_asked(slack, fake_llm) == "qwen-local:32b"
    await bot.service.tasks.wait_idle()
    assert "`model` is back to the default" in await relay(slack, "config model reset", 2)


async def test_the_channel_file_sets_a_model_and_a_wrong_one_is_a_config_error(make_settings, fake_llm, tmp_path):
    path = tmp_path / "channels.toml"
    hosted = {"bot_providers": "cloudflare,openai", "cloudflare_account_id": "acc", "cloudflare_auth_token": "cf"}
    path.write_text('[discord.C9]\nproviders = "cloudflare"\nmodel = "llama-3.1-70b-turbo"\n')
    with pytest.raises(ConfigError, match=r"\[discord.C9\] cloudflare does not serve the model `llama-3.1-70b-turbo`"):
        load_file(path, make_settings(**hosted))

    path.write_text('[discord.C9]\nproviders = "openai"\nmodel = "meta-llama/Llama-3.1-8B-Instruct"\n')
    async with open_service(make_settings(bot_channel_config=path)) as service:
        await service.answer(Request("discord", "C9", [Turn("user", "hi")], user_id="U1"), RecordingSurface())
    assert fake_llm.requests[-1]["model"] == "meta-llama/Llama-3.1-8B-Instruct"


async def test_relay_config_model_on_discord_reaches_the_provider_request(make_settings, fake_llm):
    """The same through the real discord.py command tree: ``/relay`` answers privately, and the
    next question in the channel names the channel's model."""
    fake_llm.reply("Answered.")
    async with running_bot(make_settings, bot_admins=str(ALICE)) as bot:
        interaction = await bot.fake.interact("relay", {"command": "config model qwen-local:32b"})
        path = rf"/interactions/{interaction['id']}/{interaction['token']}/callback"
        (answer,) = await wait_for(lambda: bot.fake.find("POST", path), what="the /relay answer")
        assert "`model` is now `qwen-local:32b`" in answer.body["data"]["content"]
        await bot.fake.say("which model?", mention_bot=True)
        await wait_for(
            lambda: [m["content"] for m in bot.fake.bot_messages(CHANNEL_ID)] == ["Answered."], what="the answer"
        )
    assert fake_llm.requests[-1]["model"] == "qwen-local:32b"
