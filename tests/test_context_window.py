"""A small local window (a llama.cpp server at 512 tokens) with ``OPENAI_CONTEXT_WINDOW`` left at
131,072: the real command line against the fake server over loopback, which refuses an over-long
prompt the way llama.cpp does and, when asked to, tells its window as llama.cpp, vLLM or Ollama do."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from tests.fakes.llm import FakeLLM
from tests.test_cli import run

WINDOW = 512
MISMATCH = (
    "openai: the server's context window is 512 tokens, smaller than OPENAI_CONTEXT_WINDOW=131072; "
    "using 512 (set OPENAI_CONTEXT_WINDOW=512)"
)
NO_ROOM = "BOT_MAX_TOKENS=1024 leaves no room for the conversation in openai's 512-token window"


async def small_server(tells: str | None) -> FakeLLM:
    server = FakeLLM("A short answer.", window=WINDOW, tells=tells)
    await server.start()
    return server


@pytest.fixture
async def llama_cpp() -> AsyncIterator[FakeLLM]:
    server = await small_server("llama.cpp")
    yield server
    await server.stop()


@pytest.fixture
async def silent_server() -> AsyncIterator[FakeLLM]:
    """Says nothing about its window; only its refusals do."""
    server = await small_server(None)
    yield server
    await server.stop()


def env_for(server: FakeLLM, tmp_path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "OPENAI_BASE_URL": server.base_url,
        "BOT_DATABASE": str(tmp_path / "bot.db"),
        **extra,
    }


def questions(count: int) -> str:
    """``count`` questions of about 60 tokens: three of them and their answers outgrow 512 tokens."""
    return "".join(f"Question {n}: " + "tell me more about this " * 12 + "\n" for n in range(count))


@pytest.mark.parametrize("tells", ["llama.cpp", "vllm", "ollama"])
async def test_doctor_reports_the_servers_window_and_the_room_left(tmp_path, tells):
    server = await small_server(tells)
    try:
        code, out, err = await run(["doctor"], env_for(server, tmp_path), tmp_path)
    finally:
        await server.stop()
    assert code == 0, out + err
    notes = [line.removeprefix("note: ") for line in out.splitlines() if line.startswith("note: ")]
    assert notes[0] == MISMATCH
    assert notes[1].startswith(NO_ROOM) and "set BOT_MAX_TOKENS=128" in notes[1]


async def test_doctor_says_nothing_when_the_window_is_set_right(tmp_path, llama_cpp):
    env = env_for(llama_cpp, tmp_path, OPENAI_CONTEXT_WINDOW="512", BOT_MAX_TOKENS="128")
    code, out, err = await run(["doctor"], env, tmp_path)
    assert code == 0 and "note:" not in out


async def test_a_server_that_tells_its_window_is_never_sent_too_much(tmp_path, llama_cpp):
    code, out, err = await run(["chat", "--session", "s"], env_for(llama_cpp, tmp_path), tmp_path, stdin=questions(6))
    assert code == 0, err
    assert out == "A short answer.\n" * 6
    assert llama_cpp.refused == 0 and len(llama_cpp.requests) == 6
    start = err.splitlines()[:2]  # said at start, before the first answer
    assert start[0] == f"note: {MISMATCH}" and start[1].startswith(f"note: {NO_ROOM}")
    assert len(llama_cpp.requests[-1]["messages"]) < 12  # the history was trimmed to the window


async def test_a_too_long_refusal_is_retried_once_trimmed_and_named(tmp_path, silent_server):
    code, out, err = await run(["chat", "--session", "s"], env_for(silent_server, tmp_path), tmp_path, stdin=questions(6))
    assert code == 0, err
    assert out == "A short answer.\n" * 6  # every turn answered: not "unavailable", no /reset needed
    assert silent_server.refused == 1  # once: the window it named is used from then on
    assert len(silent_server.requests) == 6 + 1  # the refused request, retried once, trimmed
    assert f"({MISMATCH})" in err.splitlines()
    assert "unavailable" not in err and "Traceback" not in err


async def test_a_refusal_that_names_no_window_says_which_setting_to_check(tmp_path, silent_server):
    silent_server.fail(400, {"error": {"message": "the request exceeds the available context size, try increasing it",
                                       "type": "exceed_context_size_error", "code": 400}})
    code, out, err = await run(["ask", "hello"], env_for(silent_server, tmp_path), tmp_path)
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == (
        "The OpenAI-compatible server says the conversation is too long for its context window (400): "
        "start a new thread, or check OPENAI_CONTEXT_WINDOW"
    )
    assert len(silent_server.requests) == 1  # nothing to trim by: no blind retries
