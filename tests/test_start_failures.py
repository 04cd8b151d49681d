"""A setting that makes ``serve`` fail to start: one line naming it, a non-zero exit, no traceback
and never "stopped cleanly" (real ``python -m bot serve`` processes against the local fakes)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.fakes.discord import FakeDiscord
from tests.fakes.llm import FakeLLM
from tests.fakes.slack import FakeSlack
from tests.test_process_lifecycle import bot_env, discord_fake  # noqa: F401 (a fixture)
from tests.test_store_process import run_cli


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def only_line(err: str) -> str:
    """The one line the operator reads: the last; nothing before it is a traceback."""
    assert "Traceback" not in err and "stopped cleanly" not in err
    return err.splitlines()[-1]


async def test_a_busy_ops_port_is_one_line_naming_it(tmp_path, discord_fake: FakeDiscord, fake_llm: FakeLLM, busy_port):
    env = bot_env(tmp_path, discord_fake, fake_llm, BOT_OPS_PORT=str(busy_port))
    code, out, err = await run_cli(["serve"], env, tmp_path)
    assert code == 2
    assert only_line(err) == (
        f"configuration error: BOT_OPS_HOST/BOT_OPS_PORT: cannot listen on 127.0.0.1:{busy_port} "
        "(Address already in use); choose another port, or 0 to turn /healthz and /metrics off"
    )
    assert discord_fake.identifies == []  # nothing connected to a platform


async def test_a_slack_host_that_is_not_this_machines_is_one_line_naming_it(tmp_path, fake_llm: FakeLLM):
    slack = await FakeSlack().start()
    try:
        env = {
            **bot_env(tmp_path, FakeDiscord(), fake_llm),
            "SLACK_BOT_TOKEN": "xoxb-fake",
            "SLACK_SIGNING_SECRET": "secret",
            "SLACK_API_URL": slack.api_url,
            "SLACK_HOST": "192.0.2.1",  # TEST-NET-1: no interface of this machine has it
            "SLACK_PORT": "0",
        }
        del env["DISCORD_TOKEN"]
        code, out, err = await run_cli(["serve"], env, tmp_path)
    finally:
        await slack.stop()
    assert code == 2
    line = only_line(err)
    assert line.startswith("configuration error: SLACK_HOST/SLACK_PORT: cannot listen on 192.0.2.1:0 (")


async def test_a_rejected_discord_token_is_one_line_naming_it(tmp_path, discord_fake: FakeDiscord, fake_llm: FakeLLM):
    env = bot_env(tmp_path, discord_fake, fake_llm, DISCORD_TOKEN="not.the.token")
    code, out, err = await run_cli(["serve"], env, tmp_path)
    assert code == 2
    assert only_line(err) == "configuration error: DISCORD_TOKEN was rejected by Discord (check the bot token)"
    assert "not.the.token" not in err


async def test_an_unreachable_discord_is_one_line_naming_the_url(tmp_path, fake_llm: FakeLLM):
    discord = FakeDiscord()  # never started: nothing answers at its address
    env = bot_env(tmp_path, discord, fake_llm, DISCORD_API_URL="http://127.0.0.1:9/api/v10")
    code, out, err = await run_cli(["serve"], env, tmp_path)
    assert code == 1
    assert only_line(err) == (
        "error: discord: cannot reach http://127.0.0.1:9/api/v10 (Connection refused); "
        "check DISCORD_API_URL and the network"
    )


async def test_an_unreachable_discord_gateway_is_one_line_naming_it(tmp_path, discord_fake: FakeDiscord, fake_llm: FakeLLM):
    env = bot_env(tmp_path, discord_fake, fake_llm, DISCORD_GATEWAY_URL="ws://127.0.0.1:9/")
    code, out, err = await run_cli(["serve"], env, tmp_path)
    assert code == 1
    assert only_line(err) == (
        "error: discord: cannot connect to the gateway at ws://127.0.0.1:9/ (Connection refused); "
        "check DISCORD_GATEWAY_URL and the network"
    )
    assert "discord: Attempting a reconnect in" in err  # said in one line each, the reason with it
