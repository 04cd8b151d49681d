"""Slack events in, ``Incoming`` requests out: the translation between Bolt and the core.

Listeners hand events here and return at once (Bolt has acked already).
``SlackRelay`` decides with the pure ``events`` functions whether a message
asks the bot something, and hands the core an ``Incoming``: dedupe keys (the
event id, and the message's channel+ts so an ``app_mention`` and a
``message`` for one message answer once), the caller, a history reader
(``conversations``) and where the reply goes (``surface``).  The core decides
the rest.  ``SlackRelay`` is also the core's ``Platform`` after a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from typing import Any

from bot.access import Caller
from bot.conversation import Turn
from bot.incoming import Core, Incoming
from bot.pacing import EditBudget
from bot.reply import ReplyOutcome
from bot.settings import Settings
from bot.surface import Surface
from bot.tokens import TokenCounter

from . import assistant as assistant_threads
from . import events
from .api import SlackApi
from .conversations import Conversations
from .events import Trigger
from .format import clip_bytes, escape, quiet_crowds, to_mrkdwn
from .surface import STREAM_LIFETIME, Place, surface_for

log = logging.getLogger(__name__)

#: The question shown above an /ask answer shares the message's ~3,500 bytes with the answer.
HEADER_QUESTION_BYTES = 1000
UNREADABLE_COMMAND = "Sorry, I could not read that command; please try again."
NOT_ALLOWED = "Sorry, I don't answer here."
NOT_IN_CHANNEL = "I can't post in this channel yet: invite me with `/invite @{name}` and ask again."

Respond = Callable[[str], Awaitable[Any]]
Keys = tuple[tuple[str, str], ...]


class SlackRelay:
    name = "slack"

    def __init__(self, core: Core, settings: Settings, api: SlackApi) -> None:
        self.core = core
        self.settings = settings
        self.api = api
        self.conversations = Conversations(api, followups=settings.slack_thread_followups)
        self.budgets: dict[str, EditBudget] = {}
        self.bot_user: str | None = None
        self.bot_id: str | None = None
        self.bot_name = "the bot"
        self.team: str | None = None
        #: seconds before a native stream continues in a new one (Slack ends streams after ~5 minutes)
        self.stream_lifetime = STREAM_LIFETIME

    async def identify(self) -> None:
        """Who the bot is (``auth.test``): its user id, bot id and workspace."""
        data = await self.api.call("auth.test", retries=3)
        self.bot_user, self.bot_id = data.get("user_id"), data.get("bot_id")
        self.conversations.identify(self.bot_user, self.bot_id)
        self.team = data.get("team_id")
        self.bot_name = str(data.get("user") or self.bot_name)
        log.info("slack: signed in as %s (%s) in team %s", self.bot_name, self.bot_user, self.team)

    def budget(self, team: str | None) -> EditBudget:
        key = team or self.team or "-"
        if key not in self.budgets:
            # Tier 3 counts calls per minute: a one-minute sliding window, room kept for final edits
            per_minute = self.settings.slack_edits_per_minute
            self.budgets[key] = EditBudget(per_minute, burst=max(1, int(per_minute)), window=60.0, reserve=True)
        return self.budgets[key]

    # -- the core's Platform ---------------------------------------------------------------

    def surface(self, place: dict[str, Any]) -> Surface:
        return surface_for(self.api, Place.from_dict(place), lifetime=self.stream_lifetime)

    async def revive(self, origin: dict[str, Any]) -> Incoming | None:
        trig = _trigger(origin.get("trigger"))
        if trig is None:
            return None
        if origin.get("ask"):
            return self._ask(trig, keys=(), respond=None)
        return self._message(trig, keys=(), assistant=bool(origin.get("assistant")))

    # -- messages ---------------------------------------------------------------------------

    async def on_message(
        self, body: Mapping[str, Any], event: Mapping[str, Any], *, assistant: bool = False
    ) -> None:
        """An ``app_mention`` or ``message`` event (Bolt acked it already)."""
        team = str(body.get("team_id") or event.get("team") or self.team or "")
        trig = events.trigger(event, team, self.bot_user, self.bot_id)
        if trig is None:
            return
        keys = [("message", f"{trig.channel}:{trig.ts}")]
        event_id = events.slack_id(body.get("event_id"))  # a malformed id: dedupe on channel+ts alone
        if event_id:
            keys.insert(0, ("event", event_id))
        incoming = self._message(trig, keys=tuple(keys), assistant=assistant)
        self.core.spawn(self.core.handle(incoming), name=f"reply-{trig.channel}-{trig.ts}")

    def _message(self, trig: Trigger, *, keys: Keys, assistant: bool) -> Incoming:
        thread = trig.reply_thread
        stream = bool(self.settings.slack_native_streaming and thread)
        place = Place(trig.channel, thread, trig.team or None, trig.user, stream=stream, status=assistant and not stream)

        async def read(budget: int, counter: TokenCounter) -> list[Turn]:
            return await self.conversations.turns(trig, budget)

        async def open_(turns: list[Turn]) -> Surface:
            if thread:
                self.conversations.remember((trig.channel, thread))
                if assistant and turns and not any(t.role == "user" for t in turns[:-1]):
                    await assistant_threads.title(self.api, trig.channel, thread, turns[-1].text)
            return self.surface(place.as_dict())

        return Incoming(
            caller=_caller(trig),
            conversation=f"{trig.channel}:{thread or 'top'}",
            read=read,
            open=open_,
            keys=keys,
            origin={"trigger": asdict(trig), "assistant": assistant, "place": place.as_dict()},
            relevant=(lambda: self.conversations.followed(trig)) if trig.kind == "followup" else None,
            budget=self.budget(trig.team),
        )

    async def on_thread_started(
        self, event: Mapping[str, Any], greeting: str, prompts: list[dict[str, str]]
    ) -> None:
        await assistant_threads.greet(self.api, event, greeting, prompts)

    # -- slash commands ---------------------------------------------------------------------

    async def on_relay(self, command: Mapping[str, Any]) -> str:
        """``/relay …``: status, channel settings, usage (shown to the caller only)."""
        team = str(command.get("team_id") or self.team or "") or None
        user, channel = events.slack_id(command.get("user_id")), events.slack_id(command.get("channel_id"))
        if user is None or channel is None:
            log.info("slack: /relay without a readable user or channel; ignored")
            return UNREADABLE_COMMAND
        caller = Caller("slack", user, channel, team)
        return to_mrkdwn(await self.core.relay_command(caller, events.text_of(command)))

    async def on_command(self, command: Mapping[str, Any], respond: Respond) -> None:
        """``/ask question``: a visible message in the channel with the answer streamed into it."""
        channel, user = events.slack_id(command.get("channel_id")), events.slack_id(command.get("user_id"))
        if channel is None or user is None:
            log.info("slack: /ask without a readable user or channel; ignored")
            await respond(UNREADABLE_COMMAND)
            return
        team = str(command.get("team_id") or self.team or "")
        trigger_id = events.slack_id(command.get("trigger_id"))  # malformed: no dedupe key
        trig = Trigger("mention", team, channel, user, str(trigger_id), events.text_of(command).strip(), None)
        if not self.core.may_ask(_caller(trig)):
            await respond(NOT_ALLOWED)
            return
        keys = (("command", trigger_id),) if trigger_id else ()
        self.core.spawn(self.core.handle(self._ask(trig, keys=keys, respond=respond)), name=f"ask-{trigger_id}")

    def _ask(self, trig: Trigger, *, keys: Keys, respond: Respond | None) -> Incoming:
        place = Place(trig.channel, None, trig.team or None, trig.user, continue_in_thread=True)

        async def read(budget: int, counter: TokenCounter) -> list[Turn]:
            return [await self.conversations.question(trig)]

        async def open_(turns: list[Turn]) -> Surface:
            question = turns[-1].text if turns else events.plain_text(trig.text, self.bot_user, {})
            shown = quiet_crowds(escape(clip_bytes(question, HEADER_QUESTION_BYTES)))
            place.header = f"<@{trig.user}> asked: {shown}\n\n"
            return self.surface(place.as_dict())

        async def after(outcome: ReplyOutcome) -> None:
            if outcome.messages == 0 and respond is not None:  # nothing could be posted
                await respond(NOT_IN_CHANNEL.format(name=self.bot_name))

        return Incoming(
            caller=_caller(trig),
            conversation=f"ask:{trig.ts}",  # one-shot: never queued behind another answer in the channel
            read=read,
            open=open_,
            keys=keys,
            origin={"trigger": asdict(trig), "ask": True, "place": place.as_dict()},
            budget=self.budget(trig.team),
            after=after,
        )


def _caller(trig: Trigger) -> Caller:
    return Caller("slack", trig.user, trig.channel, trig.team or None, direct=trig.kind == "dm")


def _trigger(data: object) -> Trigger | None:
    if not isinstance(data, dict):
        return None
    try:
        return Trigger(**data)
    except TypeError:
        return None
