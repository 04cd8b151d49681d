"""An edited question on Slack (a ``message_changed`` event): answered again in place, or not.

Slack sends ``message_changed`` for every edit, the bot's own ``chat.update``s included, so
``edited`` decides from the event alone (no call): a person's message whose text changed.
Then, when the question is recent (``bot.controls.EDIT_WINDOW``), the conversation is read
from the question on: the bot's answer must be all that follows it (still the latest message),
and its buttons carry the reply key the core needs.  The core decides the rest
(``Core.reanswer``): the asker's own question, once per edit, answered into the old message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from bot.controls import EDIT_WINDOW
from bot.errors import PlatformError

from . import events
from .controls import button_key
from .events import Trigger

log = logging.getLogger(__name__)

PAGE = 200


def edited(event: Mapping[str, Any], bot_user: str | None, bot_id: str | None) -> dict[str, Any] | None:
    """The edited message of a ``message_changed`` event (as a ``message`` event), when a person
    changed its text; None otherwise (the bot's own edits, unfurls, anything malformed)."""
    if event.get("subtype") != "message_changed":
        return None
    message, previous = event.get("message"), event.get("previous_message")
    channel = events.slack_id(event.get("channel"))
    if not isinstance(message, Mapping) or not isinstance(previous, Mapping) or channel is None:
        return None
    inner = {**message, "type": "message", "channel": channel, "channel_type": event.get("channel_type")}
    if not events.is_spoken(inner, bot_user, bot_id) or events.text_of(previous) == events.text_of(message):
        return None
    return inner


class SlackEdits:
    def __init__(self, relay: Any) -> None:
        self.relay = relay  # the ``SlackRelay``

    def on_changed(self, team: str, event: Mapping[str, Any]) -> None:
        relay = self.relay
        inner = edited(event, relay.bot_user, relay.bot_id)
        if inner is None:
            return
        trig = events.trigger(inner, team, relay.bot_user, relay.bot_id)
        if trig is None or time.time() - _seconds(trig.ts) > EDIT_WINDOW:
            return
        edited_at = events.slack_id(event.get("event_ts")) or events.slack_id(event.get("ts")) or ""
        edit = f"{trig.channel}:{trig.ts}:{edited_at}"
        relay.core.spawn(self._reanswer(trig, edit), name=f"slack-edit-{trig.channel}-{trig.ts}")

    async def _reanswer(self, trig: Trigger, edit: str) -> None:
        key = await self._latest_answer(trig)
        if key is None:
            log.info("slack: %s edited, but its answer is not the latest message; left alone", trig.ts)
            return
        incoming = self.relay.message_incoming(trig)
        if not await self.relay.core.reanswer(self.relay, key, incoming, edit, _seconds(trig.ts)):
            log.info("slack: %s edited; not answered again", trig.ts)

    async def _latest_answer(self, trig: Trigger) -> str | None:
        """The reply key of the bot's answer to ``trig`` when it is all that follows the question."""
        thread = trig.reply_thread
        try:
            if thread:
                data = await self.relay.api.call(
                    "conversations.replies", channel=trig.channel, ts=thread, oldest=trig.ts, inclusive=True,
                    limit=PAGE,
                )
            else:
                data = await self.relay.api.call(
                    "conversations.history", channel=trig.channel, oldest=trig.ts, inclusive=True, limit=PAGE
                )
        except PlatformError as exc:
            log.info("slack: could not read the conversation of an edited question: %s", exc)
            return None
        if data.get("has_more"):
            return None  # a long conversation after the question: the answer is not the latest
        messages = [m for m in data.get("messages") or [] if isinstance(m, Mapping)]
        later = sorted(
            (m for m in messages if events.ts_key(str(m.get("ts") or "0")) > events.ts_key(trig.ts)),
            key=lambda m: events.ts_key(str(m.get("ts"))),
        )
        if not later or not all(self.relay.conversations.is_own(m) for m in later):
            return None
        return button_key(later[-1])


def _seconds(ts: str) -> float:
    seconds, micros = events.ts_key(ts)
    return seconds + micros / 1e6
