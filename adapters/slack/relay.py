"""Slack events in, ``Incoming`` requests out: the translation between Bolt and the core.

Listeners hand events here and return at once (Bolt has acked already).
``SlackRelay`` decides with the pure ``events`` functions whether a message
asks the bot something (with ``SLACK_AGENT_VIEW`` a top-level DM message is
the root of its own thread, ``agent``), and hands the core an ``Incoming``: dedupe keys (the
event id, and the message's channel+ts so an ``app_mention`` and a
``message`` for one message answer once), the caller, a history reader
(``conversations``) and where the reply goes (``surface``).  The core decides
the rest; the slash commands live in ``commands``, the message shortcut in
``shortcuts``, the App Home tab in ``home``.  ``SlackRelay`` is also the core's
``Platform`` after a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, replace
from typing import Any

from bot.access import Caller
from bot.conversation import Turn
from bot.incoming import Core, Incoming
from bot.pacing import EditPacer
from bot.settings import Settings
from bot.surface import Surface
from bot.tokens import TokenCounter

from . import assistant as assistant_threads
from . import events, home
from .agent import AgentDMs
from .api import SlackApi
from .commands import SlashCommands, caller_of
from .controls import SlackControls
from .conversations import Conversations
from .edits import SlackEdits
from .events import Trigger
from .files import SlackFiles
from .marks import ADDS_PER_MINUTE, REMOVES_PER_MINUTE, Marks
from .shortcuts import MessageShortcut
from .surface import STREAM_LIFETIME, Place, UpdateSurface, surface_for

log = logging.getLogger(__name__)

Keys = tuple[tuple[str, str], ...]


class SlackRelay:
    name = "slack"

    def __init__(self, core: Core, settings: Settings, api: SlackApi) -> None:
        self.core = core
        self.settings = settings
        self.api = api
        files = SlackFiles(api.client.token or "", api.client.base_url)
        self.conversations = Conversations(api, followups=settings.slack_thread_followups, files=files)
        self.bot_user: str | None = None
        self.bot_id: str | None = None
        self.bot_name = "the bot"
        self.team: str | None = None
        #: seconds before a native stream continues in a new one (Slack ends streams after ~5 minutes)
        self.stream_lifetime = STREAM_LIFETIME
        self.commands = SlashCommands(self)
        self.shortcut = MessageShortcut(self)
        self.controls = SlackControls(self)
        self.edits = SlackEdits(self)
        self._marks: dict[str, Marks] = {}
        self.prompts = [p.model_dump() for p in settings.slack_suggested_prompts]
        self.agent_dms = AgentDMs(api, settings.slack_greeting, self.prompts)

    async def identify(self) -> None:
        """Who the bot is (``auth.test``): its user id, bot id and workspace."""
        data = await self.api.call("auth.test", retries=3)
        self.bot_user, self.bot_id = data.get("user_id"), data.get("bot_id")
        self.conversations.identify(self.bot_user, self.bot_id)
        self.team = data.get("team_id")
        self.bot_name = str(data.get("user") or self.bot_name)
        log.info("slack: signed in as %s (%s) in team %s", self.bot_name, self.bot_user, self.team)

    def budget(self, team: str | None) -> EditPacer:
        """The workspace's ``chat.update`` budget (shared by every replica on PostgreSQL)."""
        # Tier 3 counts calls per minute: a one-minute sliding window, room kept for final edits;
        # SLACK_EDITS_PER_MINUTE is where it starts: Slack's 429s (and their absence) adapt it
        per_minute = self.settings.slack_edits_per_minute
        return self.core.edit_budget(
            f"slack:{team or self.team or '-'}:chat.update",
            per_minute, burst=max(1, int(per_minute)), window=60.0, reserve=True, adapt=True,
        )

    def marks(self, team: str | None) -> Marks:
        """The workspace's :eyes: marks, with their reactions budgets (``marks``)."""
        key = team or self.team or "-"
        if key not in self._marks:
            adds = self.core.edit_budget(
                f"slack:{key}:reactions.add", ADDS_PER_MINUTE, burst=ADDS_PER_MINUTE, window=60.0
            )
            removes = self.core.edit_budget(
                f"slack:{key}:reactions.remove", REMOVES_PER_MINUTE, burst=REMOVES_PER_MINUTE, window=60.0
            )
            self._marks[key] = Marks(self.api, adds, removes)
        return self._marks[key]

    # -- the core's Platform ---------------------------------------------------------------

    def surface(self, place: dict[str, Any]) -> Surface:
        return surface_for(
            self.api, Place.from_dict(place), lifetime=self.stream_lifetime, loading=self.settings.slack_loading_messages
        )

    async def revive(self, origin: dict[str, Any]) -> Incoming | None:
        if isinstance(origin.get("shortcut"), dict):
            return self.shortcut.revive(origin["shortcut"])
        trig = _trigger(origin.get("trigger"))
        if trig is None:
            return None
        if origin.get("ask"):
            return self.commands.incoming(trig, keys=(), respond=None)
        return self._message(trig, keys=(), assistant=bool(origin.get("assistant")))

    # -- messages ---------------------------------------------------------------------------

    async def on_message(
        self, body: Mapping[str, Any], event: Mapping[str, Any], *, assistant: bool = False
    ) -> None:
        """An ``app_mention`` or ``message`` event (Bolt acked it already)."""
        team = str(body.get("team_id") or event.get("team") or self.team or "")
        if event.get("subtype") == "message_changed":  # an edited question may be answered again
            self.edits.on_changed(team, event)
            return
        trig = events.trigger(event, team, self.bot_user, self.bot_id)
        if trig is None:
            return
        if self._agent(trig) and not trig.thread_ts:  # agent view: each DM message is a thread root
            trig = replace(trig, thread_ts=trig.ts)
        keys = [("message", f"{trig.channel}:{trig.ts}")]
        event_id = events.slack_id(body.get("event_id"))  # a malformed id: dedupe on channel+ts alone
        if event_id:
            keys.insert(0, ("event", event_id))
        incoming = self._message(trig, keys=tuple(keys), assistant=assistant)
        self.core.spawn(self.core.handle(incoming), name=f"reply-{trig.channel}-{trig.ts}")

    def message_incoming(self, trig: Trigger) -> Incoming:
        """The request a message makes, without dedupe keys (an edited question asked again)."""
        return self._message(trig, keys=(), assistant=False)

    def _agent(self, trig: Trigger) -> bool:
        """Whether ``trig`` is a message in an agent DM (``SLACK_AGENT_VIEW``)."""
        return self.settings.slack_agent_view and trig.kind == "dm"

    def _message(self, trig: Trigger, *, keys: Keys, assistant: bool) -> Incoming:
        thread = trig.reply_thread
        stream = bool(self.settings.slack_native_streaming and thread)
        agent = self._agent(trig) and thread is not None
        status = (assistant or agent) and not stream
        place = Place(trig.channel, thread, trig.team or None, trig.user, stream=stream, status=status, agent=agent)

        async def read(budget: int, counter: TokenCounter) -> list[Turn]:
            return await self.conversations.turns(trig, budget, counter)

        budget = self.budget(trig.team)

        async def open_(turns: list[Turn]) -> Surface:
            if thread:
                self.conversations.remember((trig.channel, thread))
                if agent and turns:  # the agent session's title, when Slack creates it
                    place.title = assistant_threads.short_title(turns[-1].text)
                elif assistant and turns and not any(t.role == "user" for t in turns[:-1]):
                    await assistant_threads.title(self.api, trig.channel, thread, turns[-1].text)
            surface = self.surface(place.as_dict())
            if isinstance(surface, UpdateSurface) and not placeholder_affordable(budget):
                surface.placeholder = False  # the first text is posted instead of edited in
                surface.seen_ts, surface.marks = trig.ts, self.marks(trig.team)  # :eyes: meanwhile
            return surface

        return Incoming(
            caller=caller_of(trig),
            conversation=f"{trig.channel}:{thread or 'top'}",
            read=read,
            open=open_,
            keys=keys,
            origin={"trigger": asdict(trig), "assistant": assistant, "place": place.as_dict()},
            relevant=(lambda: self.conversations.followed(trig)) if trig.kind == "followup" else None,
            budget=budget,
        )

    async def on_thread_started(self, event: Mapping[str, Any]) -> None:
        """A new assistant thread: the greeting and suggested prompts."""
        await assistant_threads.greet(self.api, event, self.settings.slack_greeting, self.prompts)

    async def on_home_opened(self, body: Mapping[str, Any], event: Mapping[str, Any]) -> None:
        """``app_home_opened``: the Home tab, or (agent view) the DM's greeting and prompts."""
        user, channel = events.slack_id(event.get("user")), events.slack_id(event.get("channel"))
        if user is None:
            return
        tab = event.get("tab")
        team = str(body.get("team_id") or self.team or "") or None
        caller = Caller("slack", user, channel or "", team, direct=True)
        if tab == "home":
            await home.publish(self.api, self.core, caller, self.bot_name, agent_view=self.settings.slack_agent_view)
        elif tab == "messages" and channel is not None and self.settings.slack_agent_view:
            if self.core.may_ask(caller):  # no greeting for someone the bot does not answer
                await self.agent_dms.opened(channel)


def placeholder_affordable(budget: EditPacer) -> bool:
    """A placeholder costs a ``chat.update`` (its first text) that a posted first text does not:
    post one only while the budget has room for that and the final edit of this reply and of
    every reply streaming (each may still need both), and while at least half the budget is
    free.  A busy workspace gets its first texts posted, which ``chat.postMessage``'s own
    per-channel limit pays for."""
    room = budget.room()
    return room >= 2 * (budget.active + 1) and room >= budget.burst / 2


def _trigger(data: object) -> Trigger | None:
    if not isinstance(data, dict):
        return None
    try:
        return Trigger(**{**data, "files": tuple(data.get("files") or ())})
    except TypeError:
        return None
