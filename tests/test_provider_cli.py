"""The real CLI as a subprocess: ``ask --provider NAME`` for all five providers, and ``doctor``.

Only environment variables point it at the loopback fakes, as a user would.
"""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from tests.fakes.providers import NAMES, cloudflare_error_body

pytest_plugins = ["tests.provider_fixtures"]


async def run_cli(tmp_path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "BOT_DATABASE": str(tmp_path / "relay.db"),
        **env,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args,
        cwd=tmp_path, env=full_env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.mark.parametrize("name", NAMES)
async def test_ask_with_each_provider(name, fakes, tmp_path):
    fakes.answer(name, f"The {name} answer.")
    code, out, err = await run_cli(tmp_path, fakes.env(name), "ask", "--provider", name, "What is 2+2?")
    assert (code, out, err) == (0, f"The {name} answer.\n", "")
    sent = fakes.requests[name][0]
    messages = sent["data"]["messages"] if name == "dataoorts" else sent["messages"]
    assert messages[-1] == {"role": "user", "content": "What is 2+2?"}


async def test_ask_shows_one_line_naming_the_provider_and_the_fix(fakes, tmp_path):
    fakes.fail("deepinfra", 401, {"error": {"message": "Not authenticated", "type": "invalid_request_error"}})
    code, out, err = await run_cli(tmp_path, fakes.env("deepinfra"), "ask", "--provider", "deepinfra", "Hi")
    assert code == 1 and out == ""
    assert err == "DeepInfra rejected the API key (401): check DEEPINFRA_TOKEN\n"


async def test_ask_fails_fast_on_an_out_of_range_parameter(fakes, tmp_path):
    env = {**fakes.env("deepinfra"), "BOT_TEMPERATURE": "2.5"}
    code, out, err = await run_cli(tmp_path, env, "ask", "--provider", "deepinfra", "Hi")
    assert code == 2 and out == ""
    assert err.count("\n") == 1
    assert "BOT_TEMPERATURE=2.5 is out of range for DeepInfra" in err
    assert fakes.requests["deepinfra"] == []


async def test_ask_fails_over_by_bot_providers_order(fakes, tmp_path):
    fakes.fail("cloudflare", 401, cloudflare_error_body(10000, "Authentication error"))
    env = {**fakes.env("cloudflare"), **fakes.env("dataoorts"), "BOT_PROVIDERS": "cloudflare,dataoorts"}
    code, out, _ = await run_cli(tmp_path, env, "ask", "Hi")
    assert (code, out) == (0, "Hello from dataoorts.\n")


async def test_ask_fails_over_from_a_provider_that_never_answers(fakes, tmp_path):
    fakes.hang("openai")  # accepts the request, never sends a byte
    fakes.answer("deepinfra", "The healthy provider's whole answer, word for word.")
    env = {
        **fakes.env("openai"),
        **fakes.env("deepinfra"),
        "BOT_PROVIDERS": "openai,deepinfra",
        "BOT_FIRST_TOKEN_TIMEOUT": "1",
    }
    async with asyncio.timeout(20):  # a hang guard, not a measurement: main took 181.8 s here
        code, out, err = await run_cli(tmp_path, env, "ask", "What is 2+2?")
    assert (code, out) == (0, "The healthy provider's whole answer, word for word.\n"), err
    assert len(fakes.requests["openai"]) == 1  # given up on at the first-token deadline, not retried
    assert len(fakes.requests["deepinfra"]) == 1


async def test_doctor_table_and_exit_status(fakes, tmp_path):
    fakes.fail("aigateway", 401, {"error": {"message": "bad key", "type": "authentication_error", "code": 401}})
    env = {
        **fakes.env("aigateway"),
        **fakes.env("cloudflare"),
        "BOT_PROVIDERS": "aigateway,cloudflare,deepinfra",
        "BOT_READ_TIMEOUT": "10",
    }
    code, out, err = await run_cli(tmp_path, env, "doctor")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["provider", "model", "window", "first", "token", "status"]
    rows = {line.split()[0]: line for line in lines[2:] if line and not line[0].isdigit()}
    assert "rejected the API key (401): check AIGATEWAY_API_KEY" in rows["aigateway"]
    assert rows["cloudflare"].rstrip().endswith("ok") and " ms " in rows["cloudflare"]
    assert "@cf/meta/llama-3.1-70b-instruct" in rows["cloudflare"] and "24,000" in rows["cloudflare"]
    assert "not configured: set DEEPINFRA_TOKEN" in rows["deepinfra"]
    assert "1 of 3 provider(s) working" in out
    assert "note: BOT_READ_TIMEOUT=10 is not above AIGateway's 15 s keep-alive gap" in out
    assert fakes.requests["cloudflare"][0]["max_tokens"] == 8  # one tiny request


async def test_doctor_exits_non_zero_when_nothing_works(fakes, tmp_path):
    fakes.fail("openai", 503, {"error": {"message": "down"}}, times=1)
    env = {**fakes.env("openai"), "BOT_PROVIDERS": "openai", "BOT_TEMPERATURE": "9"}
    code, out, _ = await run_cli(tmp_path, env, "doctor")
    assert code == 1
    assert "configuration error: BOT_TEMPERATURE=9 is out of range" in out
    assert "0 of 1 provider(s) working" in out


async def test_doctor_without_any_provider_is_a_config_error(tmp_path):
    code, _, err = await run_cli(tmp_path, {}, "doctor")
    assert code == 2 and err.startswith("configuration error: no provider is configured")
