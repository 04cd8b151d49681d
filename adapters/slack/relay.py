"""Slack events in, ``Incoming`` requests out: the translation between Bolt and the core.

Listeners hand events here and return at once (Bolt has acked already).
``SlackRelay`` decides with the pure ``events`` functions whether a message
asks the bot something, and hands the core an ``Incoming``: dedupe keys (the
event id, and the message's channel+ts so an ``app_mention`` and a
``message`` for one message answer once), the caller, a history reader and
where the reply goes.  The core decides the rest.  ``SlackRelay`` is also the
core's ``Platform`` after a restart (``surface``, ``revive``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from typing import Any

from bot.access import Caller
from bot.conversation import Turn
from bot.errors import PlatformError
from bot.incoming import Core, Incoming
from bot.pacing import EditBudget
from bot.reply import ReplyOutcome
from bot.settings import Settings
from bot.surface import Surface
from bot.tokens import TokenCounter

from . import events
from .api import SlackApi
from .events import Trigger
from .format import escape, quiet_crowds, to_mrkdwn
from .history import History
from .surface import STREAM_LIFETIME, Place, surface_for

log = logging.getLogger(__name__)

#: The question shown above an /ask answer shares the message's ~3,500 bytes with the answer.
HEADER_QUESTION_BYTES = 1000

KNOWN_THREADS = 20_000
TITLE_CHARS = 60
UNREADABLE_COMMAND = "Sorry, I could not read that command; please try again."
NOT_IN_CHANNEL = "I can't post in this channel yet: invite me with `/invite @{name}` and ask again."

Respond = Callable[[str], Awaitable[Any]]


class SlackRelay:
    name = "slack"

    def __init__(self, core: Core, settings: Settings, api: SlackApi) -> None:
        self.core = core
        self.settings = settings
        self.api = api
        self.history = History(api)
        self.budgets: dict[str, EditBudget] = {}
        self.threads: OrderedDict[tuple[str, str], bool] = OrderedDict()  # has the bot answered there?
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

    def _handle(self, incoming: Incoming, name: str) -> None:
        self.core.spawn(self.core.handle(incoming), name=name)

    # -- the core's Platform ---------------------------------------------------------------

    def surface(self, place: dict[str, Any]) -> Surface:
        return surface_for(self.api, Place.from_dict(place), lifetime=self.stream_lifetime)

    async def revive(self, origin: dict[str, Any]) -> Incoming | None:
        trig = _trigger(origin.get("trigger"))
        if trig is None:
            return None
        if origin.get("ask"):
            return self._ask_incoming(trig, keys=(), respond=None)
        return self._message_incoming(trig, keys=(), assistant=bool(origin.get("assistant")))

    # -- events -------------------------------------------------------------------------------

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
        incoming = self._message_incoming(trig, keys=tuple(keys), assistant=assistant)
        self._handle(incoming, f"reply-{trig.channel}-{trig.ts}")

    def _message_incoming(
        self, trig: Trigger, *, keys: tuple[tuple[str, str], ...], assistant: bool
    ) -> Incoming:
        place = self._place(trig, assistant=assistant)

        async def read(budget: int, counter: TokenCounter) -> list[Turn]:
            return await self._turns(trig, budget)

        async def open_(turns: list[Turn]) -> Surface:
            if place.thread_ts:
                self._remember_thread((trig.channel, place.thread_ts), True)
            if assistant and place.thread_ts and turns and not any(t.role == "user" for t in turns[:-1]):
                await self._title(place, turns[-1].text)
            return surface_for(self.api, place, lifetime=self.stream_lifetime)

        return Incoming(
            caller=_caller(trig),
            conversation=f"{trig.channel}:{place.thread_ts or 'top'}",
            read=read,
            open=open_,
            keys=keys,
            origin={"trigger": asdict(trig), "assistant": assistant, "place": place.as_dict()},
            relevant=(lambda: self._followed(trig)) if trig.kind == "followup" else None,
            budget=self.budget(trig.team),
        )

    def _place(self, trig: Trigger, *, assistant: bool) -> Place:
        thread = trig.reply_thread
        stream = bool(self.settings.slack_native_streaming and thread)
        return Place(trig.channel, thread, trig.team or None, trig.user, stream=stream, status=assistant and not stream)

    async def _followed(self, trig: Trigger) -> bool:
        """Whether a thread message without a mention gets an answer: the bot must have answered there."""
        if not self.settings.slack_thread_followups or not trig.thread_ts:
            return False
        key = (trig.channel, trig.thread_ts)
        known = self.threads.get(key)
        if known is None:
            try:
                data = await self.api.call(
                    "conversations.replies", retries=3, channel=trig.channel, ts=trig.thread_ts, limit=200
                )
            except PlatformError as exc:
                log.warning("slack: cannot read thread %s in %s: %s", trig.thread_ts, trig.channel, exc)
                return False
            known = any(self._is_own(m) for m in data.get("messages") or [])
            self._remember_thread(key, known)
        return known

    def _is_own(self, message: Mapping[str, Any]) -> bool:
        return bool(
            (self.bot_id and message.get("bot_id") == self.bot_id)
            or (self.bot_user and message.get("user") == self.bot_user)
        )

    def _remember_thread(self, key: tuple[str, str], answered: bool) -> None:
        self.threads[key] = answered
        self.threads.move_to_end(key)
        if len(self.threads) > KNOWN_THREADS:
            self.threads.popitem(last=False)

    async def _title(self, place: Place, question: str) -> None:
        """Name a new assistant thread after its first question."""
        title = " ".join(question.split())
        title = title if len(title) <= TITLE_CHARS else title[: TITLE_CHARS - 1] + "…"
        try:
            await self.api.call(
                "assistant.threads.setTitle", channel_id=place.channel, thread_ts=place.thread_ts, title=title
            )
        except PlatformError as exc:
            log.info("slack: thread title not set: %s", exc)

    async def _turns(self, trig: Trigger, budget: int) -> list[Turn]:
        """History (oldest first) ending with the question; a history read failure leaves just the question."""
        messages: list[Mapping[str, Any]] = []
        try:
            if trig.in_thread and trig.thread_ts:
                messages = await self.history.thread(trig.channel, trig.thread_ts, budget, latest=trig.ts)
            elif trig.kind == "dm":
                messages = await self.history.channel(trig.channel, budget, latest=trig.ts)
        except PlatformError as exc:
            log.warning(
                "slack: history of %s unavailable (%s); answering the question alone", trig.channel, exc
            )
        earlier = [m for m in messages if str(m.get("ts")) != trig.ts and _before(m, trig.ts)]
        if trig.kind == "dm" and not trig.in_thread:
            earlier = [m for m in earlier if not m.get("thread_ts") or m.get("thread_ts") == m.get("ts")]
        people = {trig.user, *(user for m in earlier if (user := events.slack_id(m.get("user"))))}
        names = await self.history.names(
            people | events.user_ids([trig.text, *(events.text_of(m) for m in earlier)])
        )
        ids = f"slack:{trig.channel}:"
        turns = events.thread_turns(
            earlier, self.bot_user, self.bot_id, names, labelled=trig.kind != "dm", ids=ids
        )
        question = events.plain_text(trig.text, self.bot_user, names)
        author = names.get(trig.user, trig.user) if trig.kind != "dm" else None
        return [*turns, Turn("user", question, author=author, message_id=f"{ids}{trig.ts}")]

    # -- AI-app assistant threads ----------------------------------------------------------------

    async def on_thread_started(
        self, event: Mapping[str, Any], greeting: str, prompts: list[dict[str, str]]
    ) -> None:
        """A new assistant thread: a greeting and suggested prompts (both optional niceties)."""
        thread = event.get("assistant_thread") or {}
        channel, thread_ts = thread.get("channel_id"), thread.get("thread_ts")
        if not channel or not thread_ts:
            return
        try:
            await self.api.call(
                "chat.postMessage", retries=2, channel=channel, thread_ts=thread_ts, text=greeting
            )
            await self.api.call(
                "assistant.threads.setSuggestedPrompts",
                channel_id=channel,
                thread_ts=thread_ts,
                prompts=prompts,
            )
        except PlatformError as exc:
            log.info("slack: assistant greeting not shown: %s", exc)

    # -- /relay -------------------------------------------------------------------------------------

    async def on_relay(self, command: Mapping[str, Any]) -> str:
        """``/relay …``: status, channel settings, usage (shown to the caller only)."""
        team = str(command.get("team_id") or self.team or "") or None
        user, channel = events.slack_id(command.get("user_id")), events.slack_id(command.get("channel_id"))
        if user is None or channel is None:
            log.info("slack: /relay without a readable user or channel; ignored")
            return UNREADABLE_COMMAND
        caller = Caller("slack", user, channel, team)
        return to_mrkdwn(await self.core.relay_command(caller, events.text_of(command)))

    # -- /ask -------------------------------------------------------------------------------------

    async def on_command(self, command: Mapping[str, Any], respond: Respond) -> None:
        """``/ask question``: a visible message in the channel with the answer streamed into it."""
        text = events.text_of(command).strip()
        channel, user = events.slack_id(command.get("channel_id")), events.slack_id(command.get("user_id"))
        if channel is None or user is None:
            log.info("slack: /ask without a readable user or channel; ignored")
            await respond(UNREADABLE_COMMAND)
            return
        team = str(command.get("team_id") or self.team or "")
        trigger_id = events.slack_id(command.get("trigger_id"))  # malformed: no dedupe key
        trig = Trigger("mention", team, channel, user, str(trigger_id), text, None)
        if not self.core.may_ask(_caller(trig)):
            await respond("Sorry, I don't answer here.")
            return
        keys = (("command", trigger_id),) if trigger_id else ()
        self._handle(self._ask_incoming(trig, keys=keys, respond=respond), f"ask-{channel}-{trigger_id}")

    def _ask_incoming(
        self, trig: Trigger, *, keys: tuple[tuple[str, str], ...], respond: Respond | None
    ) -> Incoming:
        place = Place(trig.channel, None, trig.team or None, trig.user, continue_in_thread=True)

        async def read(budget: int, counter: TokenCounter) -> list[Turn]:
            names = await self.history.names({trig.user} | events.user_ids([trig.text]))
            question = events.plain_text(trig.text, self.bot_user, names)
            return [Turn("user", question, author=names.get(trig.user))]

        async def open_(turns: list[Turn]) -> Surface:
            question = turns[-1].text if turns else events.plain_text(trig.text, self.bot_user, {})
            place.header = f"<@{trig.user}> asked: {quiet_crowds(escape(clip_bytes(question, HEADER_QUESTION_BYTES)))}\n\n"
            return surface_for(self.api, place, lifetime=self.stream_lifetime)

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


def clip_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (on a character boundary), with "…" if cut."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore").rstrip() + "…"


def _before(message: Mapping[str, Any], ts: str) -> bool:
    return events.ts_key(str(message.get("ts") or "0")) <= events.ts_key(ts)
