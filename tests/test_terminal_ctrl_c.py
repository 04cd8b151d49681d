"""Ctrl-C in ``llama-relay chat``: a real process, a real SIGINT (what the terminal sends on Ctrl-C),
the fake model server over loopback and the real SQLite file."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import sqlite3
import sys
from pathlib import Path

from tests.fakes.llm import FakeLLM
from tests.waiting import wait_until

GUARD = 30  # seconds: a hang fails the test, nothing is timed


def chat_env(tmp_path: Path, llm: FakeLLM) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "OPENAI_BASE_URL": llm.base_url,
        "BOT_DATABASE": str(tmp_path / "chat.db"),
    }


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(sql))


async def test_ctrl_c_at_the_prompt_ends_the_session_at_once(tmp_path, fake_llm: FakeLLM):
    """In a terminal (a pty): no Enter needed, no traceback."""
    main, terminal = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "chat", "--session", "s",
        stdin=terminal, stdout=asyncio.subprocess.PIPE, stderr=terminal, env=chat_env(tmp_path, fake_llm),
        cwd=tmp_path,
    )
    os.close(terminal)
    os.set_blocking(main, False)
    shown = b""

    def screen() -> bytes:
        nonlocal shown
        try:
            shown += os.read(main, 4096)
        except OSError:  # nothing yet (EAGAIN), or the process has closed its side (EIO)
            pass
        return shown

    try:
        await wait_until(lambda: b"you> " in screen(), timeout=GUARD, what="the prompt")
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), GUARD)  # without a line typed after it
        screen()
    finally:
        if proc.returncode is None:
            proc.kill()
        os.close(main)
    assert code == 0
    assert b"Traceback" not in shown and b"KeyboardInterrupt" not in shown
    assert fake_llm.requests == []


async def test_ctrl_c_mid_answer_stops_that_answer_only(tmp_path, fake_llm: FakeLLM):
    words = [f"word{n} " for n in range(200)]
    fake_llm.reply("".join(words), delay=0.05)  # a long answer, streamed slowly
    fake_llm.reply("The second answer.")
    db = tmp_path / "chat.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "chat", "--session", "s",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=chat_env(tmp_path, fake_llm), cwd=tmp_path,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdin.write(b"Tell me a long story.\n")
        await proc.stdin.drain()
        first = await asyncio.wait_for(proc.stdout.read(20), GUARD)  # the answer has started
        proc.send_signal(signal.SIGINT)
        rest = await asyncio.wait_for(proc.stdout.readuntil(b"\n"), GUARD)  # it ends there
        proc.stdin.write(b"And now?\n")  # the session goes on
        proc.stdin.close()
        out, err = await asyncio.wait_for(proc.communicate(), GUARD)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    partial = (first + rest).decode().rstrip("\n")
    assert partial and "".join(words).startswith(partial) and len(partial) < len("".join(words)) - 100
    assert out.decode() == "The second answer.\n"
    assert err.decode().splitlines() == ["stopped by you"]
    assert "restarted" not in err.decode()
    assert proc.returncode == 1  # an answer was not complete
    assert [r[0] for r in rows(db, "SELECT state FROM requests ORDER BY id")] == ["stopped", "done"]
    (stopped_usage, second_usage) = rows(db, "SELECT completion_tokens FROM usage ORDER BY id")
    assert stopped_usage[0] > 0  # the stopped answer's tokens are in the ledger
    turns = rows(db, "SELECT role, text FROM turns ORDER BY id")
    assert turns[:2] == [("user", "Tell me a long story."), ("assistant", partial)]  # kept for the next turn
    assert fake_llm.requests[-1]["messages"][-2]["content"] == partial


async def test_ctrl_c_during_ask_keeps_the_answer_so_far(tmp_path, fake_llm: FakeLLM):
    fake_llm.reply("".join(f"word{n} " for n in range(200)), delay=0.05)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "ask", "Tell me a long story.",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=chat_env(tmp_path, fake_llm), cwd=tmp_path,
    )
    assert proc.stdout is not None
    try:
        first = await asyncio.wait_for(proc.stdout.read(20), GUARD)
        proc.send_signal(signal.SIGINT)
        rest, err = await asyncio.wait_for(proc.communicate(), GUARD)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    shown = (first + rest).decode()
    assert shown.startswith("word0 ") and shown.endswith("\n") and "word199" not in shown
    assert (proc.returncode, err.decode()) == (1, "stopped by you\n")  # not complete: non-zero, no traceback
    assert rows(tmp_path / "chat.db", "SELECT state FROM requests") == [("stopped",)]
