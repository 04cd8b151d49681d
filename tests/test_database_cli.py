"""The commands on a PostgreSQL ``BOT_DATABASE``, and ``doctor``'s database line: real
subprocesses, configured only through the environment; the password never printed."""

from __future__ import annotations

import os

import pytest

from bot.doctor import check_database
from bot.store import MIGRATIONS
from tests.fakes.llm import FakeLLM
from tests.pg import PostgresServer, TcpProxy
from tests.test_cli import run


@pytest.fixture
def env(tmp_path, fake_llm: FakeLLM) -> dict[str, str]:
    """The environment of a command that uses the fake model; each test sets ``BOT_DATABASE``."""
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "OPENAI_BASE_URL": fake_llm.base_url}


async def test_chat_and_usage_keep_their_state_in_postgresql(env, tmp_path, fake_llm, postgres_server, postgres_url):
    env = {**env, "BOT_DATABASE": postgres_url, "OPENAI_PRICE_IN": "1", "OPENAI_PRICE_OUT": "1"}
    fake_llm.reply("first answer", usage={"prompt_tokens": 400000, "completion_tokens": 100000})
    code, out, err = await run(["chat", "--session", "k"], env, tmp_path, stdin="first\n")
    assert code == 0, err
    fake_llm.reply("second answer")
    await run(["chat", "--session", "k"], env, tmp_path, stdin="second\n")  # a new process: history from the database
    assert [m["content"] for m in fake_llm.requests[-1]["messages"][1:]] == ["first", "first answer", "second"]
    code, out, _ = await run(["usage", "--by", "provider"], env, tmp_path)
    assert code == 0
    (row,) = [line.split() for line in out.splitlines() if line.startswith("openai")]
    assert row[:2] == ["openai", "2"]
    assert not list(tmp_path.glob("*.db"))  # no SQLite file was made on the side


async def test_a_wrong_password_stops_a_command_with_one_line(env, tmp_path, fake_llm, postgres_server, postgres_url):
    name = postgres_url.rsplit("/", 1)[1]
    wrong = postgres_server.url(name, password="Wrong-Pass-77")
    code, out, err = await run(["ask", "hi"], {**env, "BOT_DATABASE": wrong}, tmp_path)
    assert (code, out) == (2, "")
    (line,) = err.splitlines()
    assert line == (
        f"configuration error: BOT_DATABASE: postgresql://relay:***@127.0.0.1:{postgres_server.port}/{name}: "
        'password authentication failed for user "relay"'
    )
    assert fake_llm.requests == []


async def test_an_unreachable_database_stops_a_command_with_one_line(env, tmp_path, fake_llm, postgres_server):
    proxy = TcpProxy(postgres_server.port)
    await proxy.start()
    await proxy.cut()  # nothing listens there now
    url = postgres_server.url("test_x", port=proxy.port)
    code, out, err = await run(["usage"], {**env, "BOT_DATABASE": url}, tmp_path)
    assert (code, out) == (1, "")
    (line,) = err.splitlines()
    assert line.startswith(f"error: BOT_DATABASE: cannot reach postgresql://relay:***@127.0.0.1:{proxy.port}/test_x: ")
    assert postgres_server.password not in err


async def test_doctor_names_the_database_and_whether_it_answers(
    env, tmp_path, fake_llm, postgres_server: PostgresServer, postgres_url
):
    fake_llm.reply("OK")
    code, out, err = await run(["doctor"], {**env, "BOT_DATABASE": postgres_url}, tmp_path)
    assert code == 0, out + err
    (line,) = [line for line in out.splitlines() if line.startswith("database:")]
    shown = postgres_url.replace(postgres_server.password, "***")
    assert line.startswith(f"database: {shown}: ok (PostgreSQL ")
    assert line.endswith(f"schema version 0 of {len(MIGRATIONS)})")  # doctor migrates nothing
    assert postgres_server.password not in out + err

    wrong = postgres_server.url(postgres_url.rsplit("/", 1)[1], password="Wrong-Pass-77")
    code, out, err = await run(["doctor"], {**env, "BOT_DATABASE": wrong}, tmp_path)
    assert code == 1  # the provider works, the database does not
    (line,) = [line for line in out.splitlines() if line.startswith("database:")]
    assert "relay:***@" in line and "password authentication failed" in line
    assert "Wrong-Pass-77" not in out + err


async def test_doctor_on_sqlite_files(tmp_path):
    ok, line = await check_database(str(tmp_path / "new.db"))
    assert ok and line.endswith("new.db: ok (SQLite, not created yet (the first command creates it))")
    assert not (tmp_path / "new.db").exists()  # doctor creates nothing

    from bot.store import open_store

    await (await open_store(tmp_path / "used.db")).close()
    ok, line = await check_database(str(tmp_path / "used.db"))
    assert ok and line.endswith(f"used.db: ok (SQLite, schema version {len(MIGRATIONS)} of {len(MIGRATIONS)})")

    (tmp_path / "bad.db").write_bytes(b"not a database " * 200)
    ok, line = await check_database(str(tmp_path / "bad.db"))
    assert not ok and "bad.db: cannot open: file is not a database" in line
