"""Bad input, Slack HTTP mode: malformed Events API bodies, signed or not, against the real endpoint.

Bolt parses a body before it checks the signature; ``adapters.slack.http_guard``
checks first.  Every malformed body gets a 4xx, nothing is logged at error level
(not by Bolt, aiohttp or us), and afterwards a real mention is answered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time

import aiohttp

from tests.fakes.slack import BOT_USER
from tests.fuzz_support import LogWatch
from tests.slack_fuzz_support import settled
from tests.slack_helpers import mention, reply_text, until

pytest_plugins = ("tests.slack_env",)

SECRET = "fuzz-signing-secret"


async def post_signed(
    port: int, body: str | bytes, content_type: str = "application/json", sign: bool = True
) -> int:
    raw = body.encode() if isinstance(body, str) else body
    headers = {"Content-Type": content_type}
    if sign:
        stamp = str(int(time.time()))
        digest = hmac.new(SECRET.encode(), b"v0:" + stamp.encode() + b":" + raw, hashlib.sha256).hexdigest()
        headers |= {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}
    url = f"http://127.0.0.1:{port}/slack/events"
    async with aiohttp.ClientSession() as session, session.post(url, data=raw, headers=headers) as response:
        return response.status


HTTP_BODIES = [
    "{}",
    '{"type": "url_verification"}',
    '{"type": "url_verification", "challenge": {"nested": true}}',
    '{"type": "event_callback"}',
    '{"type": "event_callback", "event": {"type": "app_mention"}}',
    (
        '{"type": "event_callback", "team_id": "T1", "event_id": "EvHttp1", "event": {"type": "app_mention", '
        '"user": "U1", "channel": "C1", "ts": "1700000999.000001", "text": "<@UBOT> \\ud800\\u0000<|eot_id|>"}}'
    ),
    '{"type": "' + "x" * 300 + '"}',
    "{",
    "{" * 10_000 + "}" * 10_000,
]


async def test_malformed_http_bodies_get_a_status_not_a_crash(slack, start_bot, fake_llm):
    """Malformed Events API bodies, signed or not: 400/401, never a 500 or a traceback; then a real one works."""
    bot = await start_bot(slack_app_token=None, slack_signing_secret=SECRET)
    with LogWatch() as watch:
        for body in HTTP_BODIES[:-2]:
            assert await post_signed(bot.port, body, sign=False) == 401, body[:40]
        for body in HTTP_BODIES[:-2]:
            assert await post_signed(bot.port, body) < 500, body[:40]
        for body in HTTP_BODIES[-2:]:  # not a JSON object: refused before Bolt parses it
            assert await post_signed(bot.port, body) == 400
        assert await post_signed(bot.port, b"payload=%ff%fe", "application/x-www-form-urlencoded") == 400
        assert await post_signed(bot.port, b"payload=[1]", "application/x-www-form-urlencoded") == 400
        assert await post_signed(bot.port, b"\xff\xfe\x00garbage") == 400
        assert await post_signed(bot.port, b"\xff\xfe\x00garbage", sign=False) == 400
        await settled(bot, None)
        assert watch.since(0) == [], "no error, no traceback: not Bolt's, not aiohttp's, not ours"
        fake_llm.reply("Fine over http.")
        event = mention(slack, f"<@{BOT_USER}> still there?")
        assert await post_signed(bot.port, json.dumps(slack.callback(event))) == 200
        await reply_text(slack, "C1", event["ts"], "Fine over http.")
        await settled(bot, None)
        assert watch.since(0) == []
    assert len(fake_llm.requests) == 2  # the surrogate/special-token mention, and the real one


async def post_with_stamp(port: int, stamp: str, body: str = "{}") -> int:
    """POST ``body`` with ``X-Slack-Request-Timestamp: stamp`` and a well-formed (but wrong) signature."""
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": "v0=" + "0" * 64,
    }
    url = f"http://127.0.0.1:{port}/slack/events"
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
        return response.status


async def test_unreadable_request_timestamp_is_401_not_a_crash(slack, start_bot, fake_llm, caplog):
    """``X-Slack-Request-Timestamp: abc`` (or another unreadable stamp): 401 through the real Bolt stack."""
    caplog.set_level(logging.INFO)
    bot = await start_bot(slack_app_token=None, slack_signing_secret=SECRET)
    for stamp in ("abc", "", " ", "1e9", "0x10", "-1", "9" * 5000):
        assert await post_with_stamp(bot.port, stamp) == 401, stamp[:20]
    await settled(bot, None)
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], [r.getMessage() for r in bad]
    assert "Traceback" not in caplog.text
    assert fake_llm.requests == []


async def test_slack_host_chooses_the_address_the_events_endpoint_listens_on(slack, make_settings, fake_llm):
    """``SLACK_HOST=127.0.0.1``: ``serve``'s Slack adapter listens there (and only there)."""
    import asyncio

    from adapters.slack import run
    from bot.runtime import open_service

    settings = make_settings(
        slack_bot_token="xoxb-fake", slack_app_token=None, slack_signing_secret=SECRET,
        slack_api_url=slack.api_url, slack_port=0, slack_host="127.0.0.1",
    )
    async with open_service(settings) as service:
        before = set(slack_listeners())
        stop = asyncio.Event()
        task = asyncio.create_task(run(service, settings, stop))
        try:
            await until(lambda: service.health.get("slack"), what="the Slack adapter", timeout=15)
            opened = set(slack_listeners()) - before  # the Events API endpoint
            assert opened and {host for host, _ in opened} == {"127.0.0.1"}  # not 0.0.0.0, the default
        finally:
            stop.set()
            await task


def slack_listeners() -> list[tuple[str, int]]:
    """Addresses this process listens on (TCP, from /proc/net/tcp)."""
    import os
    import socket
    import struct

    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                address, port = fields[1].split(":")
                host = socket.inet_ntoa(struct.pack("<I", int(address, 16)))
                found.append((host, int(port, 16)))
    return found
