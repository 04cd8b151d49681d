"""The fakes hold the bot to the platforms' own limits by default: a bot that sends past one of
them gets what the platform answers, so a regression against a real limit fails a test.

Raw HTTP and websocket clients here, not the bot: these pin the fakes' behaviour, which every
end-to-end test relies on (``reference/slack.md``, ``reference/discord.md``)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.fakes.discord import CHANNEL_ID, FakeDiscord
from tests.fakes.slack import FakeSlack

BOT = {"Authorization": "Bot fake.token.value"}


@pytest.fixture
async def discord() -> FakeDiscord:
    fake = FakeDiscord(interaction_deadline=0.2)  # Discord's 3 s, shortened for the test
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def slack() -> FakeSlack:
    fake = await FakeSlack().start()
    yield fake
    await fake.stop()


async def send(url: str, body: dict, headers: dict[str, str], method: str = "POST") -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.request(method, url, json=body, headers=headers) as r:
        return r.status, await r.json(content_type=None)


async def test_discord_takes_2000_characters_and_not_one_more(discord):
    url = f"{discord.api_url}/channels/{CHANNEL_ID}/messages"
    status, created = await send(url, {"content": "x" * 2000}, BOT)
    assert status == 200
    status, body = await send(url, {"content": "x" * 2001}, BOT)
    assert (status, body["code"]) == (400, 50035)
    status, body = await send(f"{url}/{created['id']}", {"content": "y" * 2001}, BOT, "PATCH")  # edits too
    assert (status, body["code"]) == (400, 50035)


async def test_discord_wants_the_bot_token(discord):
    status, body = await send(f"{discord.api_url}/channels/{CHANNEL_ID}/messages", {"content": "hi"},
                              {"Authorization": "Bot another.token"})
    assert (status, body["message"]) == (401, "401: Unauthorized")


async def test_a_late_interaction_response_is_an_unknown_interaction(discord):
    discord.ready.set()  # no client connected: the event goes nowhere, its clock starts all the same
    interaction = await discord.interact("ask", {"question": "hi"})
    await asyncio.sleep(0.3)  # past the (shortened) deadline
    url = f"{discord.api_url}/interactions/{interaction['id']}/{interaction['token']}/callback"
    status, body = await send(url, {"type": 5}, {})
    assert (status, body["code"]) == (404, 10062)


async def test_a_user_installed_interaction_takes_five_followups_and_not_a_sixth(discord):
    discord.ready.set()
    for user_install, allowed in ((True, 5), (False, 7)):  # installed in the server: no such limit
        interaction = await discord.interact("ask", {"question": "hi"}, user_install=user_install)
        url = f"{discord.api_url}/webhooks/{interaction['application_id']}/{interaction['token']}"
        answers = [await send(url, {"content": f"part {n}"}, {}) for n in range(7)]
        assert [status for status, _ in answers] == [200] * allowed + [400] * (7 - allowed)
        assert all(body["code"] == 40094 for status, body in answers if status == 400)


async def test_slack_wants_the_right_token_and_short_enough_text(slack):
    url = f"{slack.api_url}chat.postMessage"
    assert (await send(url, {"channel": "C1", "text": "hi"}, {"Authorization": "Bearer xoxb-other"}))[1]["error"] == (
        "invalid_auth"
    )
    bearer = {"Authorization": "Bearer xoxb-fake"}
    assert (await send(url, {"channel": "C1", "text": "x" * 40_000}, bearer))[1]["ok"] is True
    assert (await send(url, {"channel": "C1", "text": "x" * 40_001}, bearer))[1]["error"] == "msg_too_long"
    assert (await send(url, {"channel": "C1", "markdown_text": "x" * 12_001}, bearer))[1]["error"] == "msg_too_long"
    connections = f"{slack.api_url}apps.connections.open"
    assert (await send(connections, {}, bearer))[1]["error"] == "not_allowed_token_type"


async def test_an_envelope_acked_after_the_deadline_fails_the_delivery(slack):
    slack.ack_deadline = 0.2  # Slack's 3 s, shortened for the test
    url = (await send(f"{slack.api_url}apps.connections.open", {}, {"Authorization": "Bearer xapp-fake"}))[1]["url"]
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.receive_json()  # hello

        async def slow_app() -> None:
            envelope = await ws.receive_json()
            await asyncio.sleep(0.3)
            await ws.send_str(json.dumps({"envelope_id": envelope["envelope_id"]}))

        app = asyncio.create_task(slow_app())
        with pytest.raises(AssertionError, match="past Slack's"):
            await slack.deliver(slack.callback({"type": "app_mention", "text": "hi"}))
        await app
