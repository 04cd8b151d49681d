"""Several Socket Mode connections (``SLACK_SOCKET_CONNECTIONS``): real Bolt handlers against the fake Slack.

Slack hands each event to one of the app's connections and may retry it on
another; whichever connection an event comes on, it is answered once.
"""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest

from bot.errors import ConfigError
from bot.settings import load_settings
from tests.fakes.slack import BOT_USER
from tests.slack_helpers import mention, reply_text, thread_texts, until

pytest_plugins = ("tests.slack_env",)

ANSWER = "Hello from the fake model."


async def test_each_connection_asks_for_its_own_url_and_stop_closes_them_all(slack, start_bot):
    bot = await start_bot(slack_socket_connections=3)
    await slack.wait_connections(3)
    assert len(slack.called("apps.connections.open")) == 3
    assert len({c.ticket for c in slack.connections}) == 3
    await bot.stop(grace=1)
    await until(lambda: not slack.connections, what="every connection to close")
    assert bot.service.health["slack"] is False


async def test_opening_connections_waits_out_a_rate_limit(slack, start_bot):
    slack.limit("apps.connections.open", 2, 1.0)  # Tier 1
    await start_bot(slack_socket_connections=3)
    await slack.wait_connections(3)
    assert slack.rate_limited == 1 and len(slack.called("apps.connections.open")) == 3


@pytest.mark.parametrize("seed", range(3))
async def test_events_spread_and_retried_over_three_connections_are_answered_once(
    seed, slack, start_bot, fake_llm
):
    slack.rng.seed(seed)
    bot = await start_bot(slack_socket_connections=3)
    await slack.wait_connections(3)
    questions = [mention(slack, f"<@{BOT_USER}> question {n}", channel=f"C{n % 3 + 1}") for n in range(6)]
    bodies = [slack.callback(q) for q in questions]
    for body in bodies:
        await slack.deliver(body, via="random")
    retries = await asyncio.gather(*(slack.redeliver(body) for body in bodies))  # Slack's retries, elsewhere

    assert all(ack["envelope_id"] for ack in retries)  # every delivery acked
    for question in questions:
        await reply_text(slack, question["channel"], question["ts"], ANSWER)
    await bot.service.tasks.wait_idle()  # nothing else is on its way
    for question in questions:
        assert thread_texts(slack, question["channel"], question["ts"]) == [ANSWER]
    assert len(slack.called("chat.postMessage")) == len(questions)
    assert len(fake_llm.requests) == len(questions)  # the model was asked once per question
    writes = slack.called("chat.postMessage") + slack.called("chat.update")
    finals = [c for c in writes if c.params.get("text") == ANSWER]
    assert len({(c.params["channel"], c.params.get("ts") or c.params.get("thread_ts")) for c in finals}) == 6
    # the events really came over several connections, and each retry over another one
    used = {c.ticket for c in slack.connections if c.envelopes}
    assert len(used) >= 2
    for body in bodies:
        carried = [c.ticket for c in slack.connections for e in c.envelopes if e["payload"] is body]
        assert len(carried) == 2 and carried[0] != carried[1]


async def test_a_connection_slack_refuses_is_closed_and_the_others_serve(slack, start_bot, fake_llm, caplog):
    slack.max_connections = 2  # as if other processes held 8 of the app's 10
    caplog.set_level(logging.ERROR, logger="adapters.slack.sockets")
    bot = await start_bot(slack_socket_connections=3)
    await until(lambda: "SLACK_SOCKET_CONNECTIONS" in caplog.text, what="the refusal to be reported")
    opened = len(slack.called("apps.connections.open"))
    assert slack.refused == 1 and len(slack.connections) == 2

    question = mention(slack, f"<@{BOT_USER}> still there?")
    await slack.deliver(slack.callback(question), via="random")
    await reply_text(slack, "C1", question["ts"], ANSWER)
    await asyncio.sleep(0.5)
    assert slack.refused == 1 and len(slack.called("apps.connections.open")) == opened  # no reconnect loop
    assert bot.service.health["slack"] is True


async def test_health_stays_up_while_one_connection_is_left(slack, start_bot, caplog):
    caplog.set_level(logging.WARNING, logger="adapters.slack.app")
    bot = await start_bot(slack_socket_connections=3)
    await slack.wait_connections(3)
    slack.max_connections = 1
    for connection in slack.connections[1:]:
        await connection.ws.close()  # Slack drops two; their reconnects are refused
    await until(lambda: "1 of 3 Socket Mode connection(s) up" in caplog.text, timeout=20, what="the watch")
    assert bot.service.health["slack"] is True and bot.connected

    slack.max_connections = 0
    await slack.connections[0].ws.close()
    await until(lambda: bot.service.health["slack"] is False, timeout=20, what="health to go down")


async def test_the_fake_refuses_an_eleventh_websocket(slack):
    async with aiohttp.ClientSession() as session:
        sockets = []
        for n in range(11):
            ws = await session.ws_connect(f"ws://127.0.0.1:{slack.port}/link/?ticket=t{n}")
            sockets.append(ws)
            first = json.loads((await ws.receive()).data)
            assert first["type"] == ("hello" if n < 10 else "disconnect")
        assert first["type"] == "disconnect" and first["reason"] == "too_many_websockets"
        assert len(slack.connections) == 10 and slack.refused == 1
        for ws in sockets:
            await ws.close()


@pytest.mark.parametrize("value", ["0", "11", "many"])
def test_socket_connections_out_of_range_is_one_line_naming_it(monkeypatch, value):
    monkeypatch.setenv("SLACK_SOCKET_CONNECTIONS", value)
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    assert str(info.value).startswith("SLACK_SOCKET_CONNECTIONS: ") and "\n" not in str(info.value)


def test_socket_connections_default_to_one(monkeypatch):
    assert load_settings(_env_file=None).slack_socket_connections == 1
    monkeypatch.setenv("SLACK_SOCKET_CONNECTIONS", "10")
    assert load_settings(_env_file=None).slack_socket_connections == 10
