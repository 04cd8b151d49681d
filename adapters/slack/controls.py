"""Controls on a Slack reply: Block Kit buttons out, button presses and 🛑 reactions in.

Out (``blocks``): a reply with controls is written as blocks (Slack then shows the
blocks, the ``text`` stays the notification and history fallback): its mrkdwn in
``section`` blocks of at most ``SECTION_LIMIT`` characters (a code fence cut between two is
closed and reopened), then one ``actions`` block with the buttons the core chose (Stop while
it streams; Regenerate, 👍, 👎 once final).  Each button's ``value`` is the reply's key.

In: a ``block_actions`` payload (``press_of``), a ``reaction_added`` of ``octagonal_sign``
on one of the bot's messages (``reaction_target``) or a press of Slack's own stop button on an
agent session (``agent_session_stopped``, ``session_stop_of``) becomes a ``bot.controls.Press``;
all are validated like any other input: anything malformed is ignored.  A reaction carries no key: the
core finds the answer streaming into the reacted message (``Core.streaming_at``: in this process,
or in the store's open requests for a replica), buttons or not, so a natively streamed answer
(which carries none while open) stops too; the reply's place names the asker and its thread.
Slack's stop names the streams it stopped (``streaming_message_ts``) and the thread: the answer
streaming into one of them, else the one streaming in that thread (it may show no text yet).
With nothing to stop the session is set ``active`` all the same (Slack leaves it to the app).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
from slack_sdk.errors import SlackClientError

from bot import splitting
from bot.controls import ACTIONS, Press, Streaming
from bot.errors import PlatformError, RelayError

from . import agent
from .events import slack_id

log = logging.getLogger(__name__)

#: a ``section`` block's text takes 3,000 characters
SECTION_LIMIT = 3000
BLOCK_ID = "relay_controls"
ACTION_PREFIX = "relay_"
STOP_REACTION = "octagonal_sign"
LABELS = {"stop": "Stop", "regenerate": "Regenerate", "up": "👍", "down": "👎"}


def blocks(text: str, controls: tuple[str, ...], key: str) -> list[dict[str, Any]]:
    """The blocks of a message showing ``text`` (mrkdwn) with ``controls`` under it."""
    out: list[dict[str, Any]] = []
    rest = text
    while rest:
        if len(rest) <= SECTION_LIMIT:
            piece, rest = rest, ""
        else:
            cut = splitting.cut(rest, SECTION_LIMIT)
            piece, rest = cut.head, cut.reopen + rest[cut.consumed :]
        if piece.strip():
            out.append({"type": "section", "text": {"type": "mrkdwn", "text": piece}})
    if controls:
        out.append({"type": "actions", "block_id": BLOCK_ID, "elements": [_button(a, key) for a in controls]})
    return out


def _button(action: str, key: str) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": ACTION_PREFIX + action,
        "text": {"type": "plain_text", "text": LABELS[action], "emoji": True},
        "value": key,
    }
    if action == "stop":
        button["style"] = "danger"
    return button


def press_of(body: Mapping[str, Any]) -> Press | None:
    """The press a ``block_actions`` payload carries; None when it is not one of ours or malformed."""
    user = body.get("user")
    actions = body.get("actions")
    if not isinstance(user, Mapping) or not isinstance(actions, list) or not actions:
        return None
    action = actions[0]
    user_id = slack_id(user.get("id"))
    if not isinstance(action, Mapping) or user_id is None:
        return None
    action_id, value = action.get("action_id"), action.get("value")
    if not isinstance(action_id, str) or not action_id.startswith(ACTION_PREFIX) or not isinstance(value, str):
        return None
    name = action_id.removeprefix(ACTION_PREFIX)
    if name not in ACTIONS:
        return None
    return Press("slack", name, value, user_id, _name(user))


def _name(user: Mapping[str, Any]) -> str:
    for field in ("username", "name"):
        value = user.get(field)
        if isinstance(value, str) and value.strip():
            return value.strip()[:80]
    return str(user.get("id"))


def reaction_target(event: Mapping[str, Any], bot_user: str | None) -> tuple[str, str, str] | None:
    """(channel, ts, user) of a 🛑 reaction on one of the bot's messages; None otherwise."""
    if event.get("reaction") != STOP_REACTION or (bot_user and event.get("item_user") not in (None, bot_user)):
        return None
    item = event.get("item")
    if not isinstance(item, Mapping) or item.get("type") != "message":
        return None
    channel, ts, user = slack_id(item.get("channel")), slack_id(item.get("ts")), slack_id(event.get("user"))
    if channel is None or ts is None or user is None:
        return None
    return channel, ts, user


@dataclass(frozen=True, slots=True)
class SessionStop:
    """A press of Slack's stop button on an agent session (``agent_session_stopped``)."""

    channel: str
    thread_ts: str
    user: str
    streams: tuple[str, ...]  # the bot's streaming messages Slack stopped


def session_stop_of(event: Mapping[str, Any]) -> SessionStop | None:
    """The stop an ``agent_session_stopped`` event carries; None when malformed."""
    channel, thread, user = slack_id(event.get("channel")), slack_id(event.get("thread_ts")), slack_id(event.get("user"))
    streams = event.get("streaming_message_ts")
    if channel is None or thread is None or user is None:
        return None
    listed = streams if isinstance(streams, list) else []
    return SessionStop(channel, thread, user, tuple(ts for ts in map(slack_id, listed) if ts is not None))


def button_key(message: Mapping[str, Any], actions: tuple[str, ...] = ACTIONS) -> str | None:
    """The reply key on the first of a message's buttons for ``actions``, if it shows one."""
    wanted = {ACTION_PREFIX + action for action in actions}
    for block in message.get("blocks") or []:
        if not isinstance(block, Mapping) or block.get("block_id") != BLOCK_ID:
            continue
        for element in block.get("elements") or []:
            if isinstance(element, Mapping) and element.get("action_id") in wanted:
                value = element.get("value")
                return value if isinstance(value, str) else None
    return None


def asker_of(place: dict[str, Any]) -> str | None:
    """The person a reply answers, from its saved place (``surface.Place.user``)."""
    user = place.get("user")
    return user if isinstance(user, str) else None


class SlackControls:
    """The I/O around a press: hand it to the core after the ack, show its answer privately."""

    def __init__(self, relay: Any) -> None:
        self.relay = relay  # the ``SlackRelay``: the core's Platform for Slack

    def on_action(self, body: Mapping[str, Any], respond: Any) -> None:
        """A ``block_actions`` payload, acked already: handled in the background."""
        press = press_of(body)
        if press is None:
            log.info("slack: ignored an action that is not one of our controls")
            return
        self.relay.core.spawn(self._press(press, respond), name=f"slack-{press.action}-{press.key}")

    async def _press(self, press: Press, respond: Any) -> None:
        if press.action == "stop":  # the note names them as the thread does (the asker's is cached)
            press = replace(press, name=await self._name(press.user, press.name))
        text = await self._decide(press)
        if text is None or respond is None:
            return
        try:
            await respond(text=text, response_type="ephemeral", replace_original=False)
        except (SlackClientError, aiohttp.ClientError, OSError) as exc:
            log.info("slack: could not answer a %s press privately: %s", press.action, type(exc).__name__)

    async def _name(self, user: str, fallback: str) -> str:
        """``user``'s display name, or ``fallback`` when Slack does not say."""
        name = (await self.relay.conversations.history.names({user})).get(user, user)
        return fallback if name == user else name

    async def _decide(self, press: Press) -> str | None:
        try:
            return await self.relay.core.press(self.relay, press)
        except RelayError as exc:
            log.warning("slack: a %s press failed: %s", press.action, exc)
            return exc.user_message

    def on_reaction(self, event: Mapping[str, Any]) -> None:
        """A ``reaction_added`` event: a 🛑 on one of the bot's messages is a Stop press."""
        target = reaction_target(event, self.relay.bot_user)
        if target is not None:
            self.relay.core.spawn(self._reaction(*target), name=f"slack-reaction-{target[0]}-{target[1]}")

    async def _reaction(self, channel: str, ts: str, user: str) -> None:
        streaming = await self._streaming({"ts": ts}, {"channel": channel})
        if streaming is not None:  # else not a reply still streaming (or not ours)
            await self._stop(streaming, channel, user)

    def on_session_stopped(self, event: Mapping[str, Any]) -> None:
        """An ``agent_session_stopped`` event: Slack's stop button pressed on an agent session."""
        stop = session_stop_of(event)
        if stop is None:
            log.info("slack: ignored a malformed agent_session_stopped event")
            return
        self.relay.core.spawn(self._session_stopped(stop), name=f"slack-session-stop-{stop.channel}-{stop.thread_ts}")

    async def _session_stopped(self, stop: SessionStop) -> None:
        streaming = None
        for ts in stop.streams:  # the streams Slack stopped, else whatever streams in the thread
            if (streaming := await self._streaming({"ts": ts}, {"channel": stop.channel})) is not None:
                break
        if streaming is None:
            streaming = await self._streaming(None, {"channel": stop.channel, "thread_ts": stop.thread_ts})
        if streaming is None:  # nothing streams there (any more): out of "processing" all the same
            await agent.set_session(self.relay.api, stop.channel, stop.thread_ts, agent.ACTIVE)
            return
        await self._stop(streaming, stop.channel, stop.user)

    async def _streaming(self, ref: dict[str, Any] | None, where: dict[str, Any]) -> Streaming | None:
        try:
            return await self.relay.core.streaming_at("slack", ref, where, asker_of)
        except RelayError as exc:
            log.warning("slack: could not look for the answer to stop: %s", exc)
            return None

    async def _stop(self, streaming: Streaming, channel: str, user: str) -> None:
        """``user`` stops ``streaming`` (a 🛑 or Slack's stop); a refusal is shown to them only."""
        text = await self._decide(Press("slack", "stop", streaming.key, user, await self._name(user, user)))
        if text is None:
            return
        thread = streaming.place.get("thread_ts")  # shown in the reply's thread, where the stop was
        try:
            await self.relay.api.call(
                "chat.postEphemeral", channel=channel, user=user, text=text, thread_ts=thread or None
            )
        except PlatformError as exc:
            log.info("slack: could not answer a stop privately: %s", exc)
