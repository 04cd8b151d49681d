"""The real command line in a subprocess, against the fake model server over loopback."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bot.cli import main
from tests.fakes.llm import FakeLLM

SETTING_PREFIXES = {"BOT", "OPENAI", "AIGATEWAY", "DEEPINFRA", "DATAOORTS", "CLOUDFLARE", "SLACK", "DISCORD"}


@pytest.fixture
def env(tmp_path, fake_llm: FakeLLM) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "OPENAI_BASE_URL": fake_llm.base_url,
        "OPENAI_API_KEY": "sk-cli-secret",
        "BOT_DATABASE": str(tmp_path / "cli.db"),
    }


async def run(args: list[str], env: dict[str, str], cwd: Path, stdin: str | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=env, cwd=cwd,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else b""), 60)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture
def here(monkeypatch, capsys) -> Callable[..., Awaitable[tuple[int, str, str]]]:
    """``run``, in this process: ``main(argv)`` on its own event loop in a thread (the fakes go on
    serving on the test's loop), the environment and the working folder set as ``run`` sets them,
    stdout and stderr captured.  For commands that read no stdin and need no signals."""

    async def run_here(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
        for name in list(os.environ):
            if name.split("_")[0] in SETTING_PREFIXES:
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(cwd)
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level  # ``main`` sets up logging for the process
        try:
            code = await asyncio.wait_for(asyncio.to_thread(main, args), 60)
        finally:
            root.handlers[:], root.level = handlers, level
        out, err = capsys.readouterr()
        return code, out, err

    return run_here


async def test_ask_prints_only_the_answer(env, tmp_path, fake_llm, here):
    fake_llm.reply("Paris is the capital of France.")
    code, out, err = await here(["ask", "What", "is", "the", "capital?"], env, tmp_path)
    assert (code, out) == (0, "Paris is the capital of France.\n")
    assert err == ""
    assert fake_llm.requests[-1]["messages"][-1]["content"] == "What is the capital?"


async def test_ask_reads_the_prompt_from_stdin(env, tmp_path, fake_llm):
    fake_llm.reply("from stdin")
    code, out, _ = await run(["ask"], env, tmp_path, stdin="question on stdin\n")
    assert (code, out) == (0, "from stdin\n")
    assert fake_llm.requests[-1]["messages"][-1]["content"] == "question on stdin"


async def test_ask_streams_before_the_answer_is_complete(env, tmp_path, fake_llm):
    fake_llm.reply("first second third fourth", delay=0.4)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "ask", "go",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=tmp_path,
    )
    first = await asyncio.wait_for(proc.stdout.read(5), 30)
    assert first == b"first"
    assert proc.returncode is None  # still streaming: the first words were flushed early
    rest = await proc.stdout.read()
    await proc.wait()
    assert first + rest == b"first second third fourth\n"


@pytest.mark.parametrize(
    ("script", "expected_err"),
    [
        (lambda f: f.fail(401), "rejected the API key (401): check OPENAI_API_KEY"),
        (lambda f: f.fail(500, times=3), "is unavailable (500)"),
    ],
)
async def test_provider_errors_are_one_line_on_stderr(env, tmp_path, fake_llm, script, expected_err, here):
    script(fake_llm)
    code, out, err = await here(["ask", "hi"], env, tmp_path)
    assert code == 1 and out == ""
    assert expected_err in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert "sk-cli-secret" not in err


async def test_cut_stream_prints_partial_answer_and_a_note(env, tmp_path, fake_llm, here):
    fake_llm.cut("alpha beta gamma delta", after=2)
    code, out, err = await here(["ask", "hi"], env, tmp_path)
    assert code == 1
    assert out == "alpha beta \n"
    assert "cut the answer off" in err and "Traceback" not in err


async def test_an_answer_cut_by_the_length_limit_exits_non_zero(env, tmp_path, fake_llm, here):
    fake_llm.reply("the start of a long answer", finish_reason="length")
    code, out, err = await here(["ask", "tell me everything"], env, tmp_path)
    assert code == 1  # README: non-complete answers exit non-zero
    assert out == "the start of a long answer\n"
    assert err == "(the answer reached the length limit)\n"


async def test_empty_prompt_is_an_error(env, tmp_path, fake_llm, here):
    code, out, err = await here(["ask", "   "], env, tmp_path)
    assert code == 1 and out == ""
    assert "empty" in err and fake_llm.requests == []


async def test_prompt_far_over_the_window_is_cut_not_fatal(env, tmp_path, fake_llm):
    env = {**env, "OPENAI_CONTEXT_WINDOW": "2048", "BOT_MAX_TOKENS": "256"}
    fake_llm.reply("short answer")
    code, out, err = await run(["ask"], env, tmp_path, stdin="lorem ipsum dolor " * 5000)
    assert (code, out) == (0, "short answer\n")
    assert "too long" in err
    sent = fake_llm.requests[-1]["messages"][-1]["content"]
    assert "tokens cut from the middle" in sent and len(sent) < 20_000


async def test_bad_setting_stops_with_one_line(env, tmp_path, here):
    code, out, err = await here(["ask", "hi"], {**env, "BOT_MAX_TOKENS": "many"}, tmp_path)
    assert code == 2 and out == ""
    assert err.startswith("configuration error: BOT_MAX_TOKENS") and len(err.strip().splitlines()) == 1


async def test_missing_provider_is_a_clear_error(tmp_path, here):
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    code, _, err = await here(["ask", "hi"], env, tmp_path)
    assert code == 2 and "no provider is configured: set the key of at least one provider" in err


async def test_chat_is_scriptable_persisted_and_resumable(env, tmp_path, fake_llm):
    fake_llm.reply("Nice to meet you, Bob.")
    fake_llm.reply("Your name is Bob.")
    code, out, _ = await run(["chat", "--session", "s1"], env, tmp_path, stdin="My name is Bob.\nWhat is my name?\n")
    assert code == 0
    assert out == "Nice to meet you, Bob.\nYour name is Bob.\n"
    second = fake_llm.requests[-1]["messages"]
    assert [m["content"] for m in second[1:]] == ["My name is Bob.", "Nice to meet you, Bob.", "What is my name?"]

    fake_llm.reply("Still Bob.")
    code, out, _ = await run(["chat", "--session", "s1"], env, tmp_path, stdin="And now?\n")
    assert out == "Still Bob.\n"
    assert len(fake_llm.requests[-1]["messages"]) == 1 + 5  # system + 4 stored turns + new question

    fake_llm.reply("Who are you?")
    code, out, _ = await run(["chat", "--session", "s1"], env, tmp_path, stdin="/reset\nHello\n")
    assert [m["content"] for m in fake_llm.requests[-1]["messages"][1:]] == ["Hello"]


async def test_chat_failure_keeps_the_stored_conversation(env, tmp_path, fake_llm):
    fake_llm.reply("first answer")
    await run(["chat", "--session", "k"], env, tmp_path, stdin="first\n")
    fake_llm.fail(401)
    code, _, err = await run(["chat", "--session", "k"], env, tmp_path, stdin="second\n")
    assert code == 1 and "rejected the API key" in err
    fake_llm.reply("third answer")
    await run(["chat", "--session", "k"], env, tmp_path, stdin="third\n")
    assert [m["content"] for m in fake_llm.requests[-1]["messages"][1:]] == ["first", "first answer", "third"]


def test_console_script_is_installed():
    script = shutil.which("llama-relay", path=str(Path(sys.executable).parent))
    assert script is not None


async def test_usage_report_reads_the_ledger(env, tmp_path, fake_llm, here):
    env = {**env, "OPENAI_PRICE_IN": "1", "OPENAI_PRICE_OUT": "1"}
    fake_llm.reply("one two", usage={"prompt_tokens": 400000, "completion_tokens": 100000})
    await here(["ask", "hi"], env, tmp_path)
    code, out, _ = await here(["usage", "--by", "provider"], env, tmp_path)
    assert code == 0
    row = [line.split() for line in out.splitlines() if line.startswith("openai")]
    assert row == [["openai", "1", "400000", "100000", "0.500000", "0", "0"]]  # no votes yet


async def test_usage_with_an_unusable_database_is_one_line(env, tmp_path, here):
    code, _, err = await here(["usage"], {**env, "BOT_DATABASE": "/proc/nope/relay.db"}, tmp_path)
    assert code == 2 and err.startswith("configuration error: BOT_DATABASE") and "Traceback" not in err


async def test_usage_without_a_database_reports_nothing_and_creates_none(env, tmp_path, here):
    database = tmp_path / "never-used.db"
    code, out, err = await here(["usage"], {**env, "BOT_DATABASE": str(database)}, tmp_path)
    assert code == 0 and "no usage yet" in out and err == ""
    assert not database.exists() and not list(tmp_path.glob("*.db*"))
