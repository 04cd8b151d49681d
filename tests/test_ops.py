"""Operations: /healthz, /metrics, request ids and masked secrets in logs, drain."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket

import httpx

from bot.conversation import Turn
from bot.logs import setup_logging
from bot.ops import start_ops
from bot.service import Request
from tests.fakes.sinks import RecordingSurface


async def test_healthz_and_metrics(service, fake_llm):
    runner = await start_ops(service, "127.0.0.1", 0)
    port = runner.addresses[0][1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            service.health["slack"] = False
            r = await client.get("/healthz")
            assert r.status_code == 503 and r.json()["platforms"] == {"slack": False}
            service.health["slack"] = True
            r = await client.get("/healthz")
            assert r.status_code == 200 and r.json()["database"] == "ok"

            await service.answer(Request("slack", "C1", [Turn("user", "hi")]), RecordingSurface())
            fake_llm.fail(401)
            await service.answer(Request("slack", "C1", [Turn("user", "hi")]), RecordingSurface())
            text = (await client.get("/metrics")).text
            replica = f'replica="{socket.gethostname()}"'  # BOT_REPLICA unset: the host name
            # (labels are written in name order)
            assert f'relay_replies_total{{platform="slack",{replica},state="complete"}} 1.0' in text
            assert f'relay_errors_total{{kind="AuthFailed",{replica}}} 1.0' in text
            assert f'relay_provider_ttft_seconds_count{{provider="openai",{replica}}} 1.0' in text
            assert f'relay_tokens_total{{direction="out",provider="openai",{replica}}}' in text

            await service.drain(0)
            assert (await client.get("/healthz")).status_code == 503  # not taking work any more
            assert (await client.get("/livez")).status_code == 200
    finally:
        await runner.cleanup()


async def test_healthz_says_whether_the_postgresql_database_answers(make_settings, postgres_server, postgres_url):
    from bot.runtime import open_service
    from tests.pg import TcpProxy

    proxy = TcpProxy(postgres_server.port)  # the database, reached through a link the test can cut
    await proxy.start()
    url = postgres_server.url(postgres_url.rsplit("/", 1)[1], port=proxy.port)
    try:
        async with open_service(make_settings(bot_database=url)) as service:
            service.health["discord"] = True
            runner = await start_ops(service, "127.0.0.1", 0)
            try:
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{runner.addresses[0][1]}") as client:
                    r = await client.get("/healthz")
                    assert (r.status_code, r.json()["database"]) == (200, "ok")
                    await proxy.cut()
                    r = await client.get("/healthz")
                    assert (r.status_code, r.json()["database"], r.json()["status"]) == (503, "unreachable", "unavailable")
                    assert postgres_server.password not in r.text
                    await proxy.start()
                    r = await client.get("/healthz")
                    assert (r.status_code, r.json()["database"]) == (200, "ok")
            finally:
                await runner.cleanup()
    finally:
        await proxy.cut()


async def test_healthz_says_unreachable_when_the_sqlite_store_is_gone(service):
    from bot.ops import readiness

    service.health["slack"] = True
    assert (await readiness(service))[1]["database"] == "ok"
    await service.store.close()
    ready, body = await readiness(service)
    assert not ready and body["database"] == "unreachable"


async def test_logs_carry_request_ids_and_never_a_secret(make_settings, fake_llm, monkeypatch):
    from bot.runtime import open_service

    secret = "sk-test-secret"
    settings = make_settings(bot_log_json=True, bot_log_level="DEBUG", slack_bot_token="xoxb-known-token-value")
    stream = io.StringIO()
    setup_logging(settings)
    monkeypatch.setattr(logging.getLogger().handlers[0], "stream", stream)
    try:
        async with open_service(settings) as service:
            fake_llm.fail(401)
            await service.answer(Request("slack", "C1", [Turn("user", "hi")], request_id="req-42"), RecordingSurface())
            logging.getLogger("test").warning("token is %s and %s", secret, "xoxb-known-token-value")
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any(entry["request_id"] == "req-42" for entry in lines)
    dump = stream.getvalue()
    assert secret not in dump and "xoxb-known-token-value" not in dump
    assert "***" in dump


async def test_drain_finalises_replies_still_running_as_interrupted(service, fake_llm):
    fake_llm.reply("slow " * 100, delay=0.2)
    sink = RecordingSurface()
    task = service.spawn(service.answer(Request("slack", "C1", [Turn("user", "hi")]), sink))
    while not sink.messages:
        await asyncio.sleep(0.01)
    cancelled = await service.drain(grace=0.1)
    assert cancelled == 1 and task.cancelled()
    assert sink.calls[-1][0] == "fail" and "ask again" in sink.notes[-1]
    assert service.spawn(asyncio.sleep(0)) is None  # no new work after shutdown began
    async with service.store._db.execute("SELECT state, error FROM requests") as cur:
        assert [tuple(r) for r in await cur.fetchall()] == [("partial", "interrupted by shutdown")]


async def test_recover_finalises_what_a_crash_left(service):
    from bot.surface import Draft

    class Platform:
        name = "slack"
        edits: list[tuple[dict, Draft, dict]] = []

        def surface(self, place):
            platform = self

            class Surface:
                max_chars = 1000

                def render(self, draft):
                    return draft.text

                def measure(self, draft):
                    return len(draft.text)

                async def post(self, draft):
                    raise AssertionError("recovery edits the message it saved, it posts nothing")

                async def edit(self, ref, draft):
                    platform.edits.append((ref, draft, place))

            return Surface()

        async def revive(self, origin):
            raise AssertionError("a half-shown reply is finished, not answered again")

    rid = await service.store.accept(["slack:event:E1"], "slack", "C1:1.0", {}, "an-earlier-process")
    assert rid is not None
    await service.store.update_request(
        rid, state="answering", place={"channel": "C1"}, messages=[{"ts": "1.1"}, {"ts": "1.2"}], shown="half an", part=1
    )
    assert await service.recover(Platform()) == 1
    ((ref, draft, place),) = Platform.edits
    assert ref == {"ts": "1.2"} and place == {"channel": "C1"}
    assert (draft.text, draft.part, draft.notes, draft.final) == ("half an", 1, ("(interrupted — ask again)",), True)
    assert await service.store.open_requests("slack") == []
    assert await service.recover(Platform()) == 0  # settled once, then final


async def test_every_metric_names_its_replica(make_settings, fake_llm):
    from bot.metrics import Metrics

    metrics = Metrics("relay-b")
    metrics.refused.labels("discord").inc()
    text = metrics.render().decode()
    assert 'relay_refused_total{platform="discord",replica="relay-b"} 1.0' in text
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert samples and all('replica="relay-b"' in line for line in samples)


async def test_healthz_says_ready_only_once_slack_listens(tmp_path, fake_llm):
    """``serve`` in a real process, Slack over HTTP, its sign-in held up a second by a 429:
    /healthz answers 503 until the Events API listens, then 200."""
    import os
    import sys

    from tests.fakes.slack import FakeSlack

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def listens(port: int) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    slack = await FakeSlack().start()
    slack.fail("auth.test", "ratelimited", status=429, retry_after=1)  # start-up takes a second
    ops_port, slack_port = free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "BOT_DATABASE": str(tmp_path / "bot.db"),
        "OPENAI_BASE_URL": fake_llm.base_url,
        "SLACK_BOT_TOKEN": "xoxb-fake", "SLACK_SIGNING_SECRET": "secret", "SLACK_API_URL": slack.api_url,
        "SLACK_HOST": "127.0.0.1", "SLACK_PORT": str(slack_port), "BOT_OPS_PORT": str(ops_port),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", env=env, cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    seen: list[tuple[int, bool]] = []  # (status, Slack listening when it was answered)
    try:
        async with httpx.AsyncClient() as client, asyncio.timeout(60):
            while not seen or seen[-1][0] != 200:
                try:
                    response = await client.get(f"http://127.0.0.1:{ops_port}/healthz")
                except httpx.TransportError:
                    await asyncio.sleep(0.01)
                    continue
                seen.append((response.status_code, listens(slack_port)))
                if response.status_code != 200:
                    assert response.json()["platforms"] == {"slack": False}
    finally:
        proc.terminate()
        await proc.wait()
        await slack.stop()
    assert seen[0] == (503, False)  # ops answered while Slack was still signing in
    assert all(listening for status, listening in seen if status == 200)
