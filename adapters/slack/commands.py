"""Slack's slash commands: ``/ask`` (a question answered in a visible message) and ``/relay``.

``/ask`` becomes an ``Incoming`` whose answer is a new channel message headed by
the question; ``/relay`` runs the platform-neutral logic (``bot.commands``) and
answers in Slack mrkdwn, shown only to the person who asked.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from bot.access import Caller
from bot.conversation import Turn
from bot.incoming import Incoming
from bot.reply import ReplyOutcome
from bot.surface import Surface
from bot.tokens import TokenCounter

from . import events
from .events import Trigger
from .format import clip_bytes, escape, quiet_crowds, to_mrkdwn
from .surface import Place

if TYPE_CHECKING:
    from .relay import SlackRelay

log = logging.getLogger(__name__)

#: The question shown above an /ask answer shares the message's ~3,500 bytes with the answer.
HEADER_QUESTION_BYTES = 1000
UNREADABLE_COMMAND = "Sorry, I could not read that command; please try again."
NOT_ALLOWED = "Sorry, I don't answer here."
NOT_IN_CHANNEL = "I can't post in this channel yet: invite me with `/invite @{name}` and ask again."

Respond = Callable[[str], Awaitable[Any]]
Keys = tuple[tuple[str, str], ...]


class SlashCommands:
    def __init__(self, relay: SlackRelay) -> None:
        self.relay = relay

    async def relay_command(self, command: Mapping[str, Any]) -> str:
        """``/relay …``: status, channel settings, usage (shown to the caller only)."""
        team = str(command.get("team_id") or self.relay.team or "") or None
        user, channel = events.slack_id(command.get("user_id")), events.slack_id(command.get("channel_id"))
        if user is None or channel is None:
            log.info("slack: /relay without a readable user or channel; ignored")
            return UNREADABLE_COMMAND
        caller = Caller("slack", user, channel, team)
        return to_mrkdwn(await self.relay.core.relay_command(caller, events.text_of(command)))

    async def ask(self, command: Mapping[str, Any], respond: Respond) -> None:
        """``/ask question``: a visible message in the channel with the answer streamed into it."""
        channel, user = events.slack_id(command.get("channel_id")), events.slack_id(command.get("user_id"))
        if channel is None or user is None:
            log.info("slack: /ask without a readable user or channel; ignored")
            await respond(UNREADABLE_COMMAND)
            return
        team = str(command.get("team_id") or self.relay.team or "")
        trigger_id = events.slack_id(command.get("trigger_id"))  # malformed: no dedupe key
        trig = Trigger("mention", team, channel, user, str(trigger_id), events.text_of(command).strip(), None)
        if not self.relay.core.may_ask(caller_of(trig)):
            await respond(NOT_ALLOWED)
            return
        keys = (("command", trigger_id),) if trigger_id else ()
        incoming = self.incoming(trig, keys=keys, respond=respond)
        self.relay.core.spawn(self.relay.core.handle(incoming), name=f"ask-{trigger_id}")

    def incoming(self, trig: Trigger, *, keys: Keys, respond: Respond | None) -> Incoming:
        place = Place(trig.channel, None, trig.team or None, trig.user, continue_in_thread=True)

        async def read(budget: int, counter: TokenCounter) -> list[Turn]:
            return [await self.relay.conversations.question(trig)]

        async def open_(turns: list[Turn]) -> Surface:
            question = turns[-1].text if turns else events.plain_text(trig.text, self.relay.bot_user, {})
            shown = quiet_crowds(escape(clip_bytes(question, HEADER_QUESTION_BYTES)))
            place.header = f"<@{trig.user}> asked: {shown}\n\n"
            return self.relay.surface(place.as_dict())

        async def after(outcome: ReplyOutcome) -> None:
            if outcome.messages == 0 and respond is not None:  # nothing could be posted
                await respond(NOT_IN_CHANNEL.format(name=self.relay.bot_name))

        return Incoming(
            caller=caller_of(trig),
            conversation=f"ask:{trig.ts}",  # one-shot: never queued behind another answer in the channel
            read=read,
            open=open_,
            keys=keys,
            origin={"trigger": asdict(trig), "ask": True, "place": place.as_dict()},
            budget=self.relay.budget(trig.team),
            after=after,
        )


def caller_of(trig: Trigger) -> Caller:
    return Caller("slack", trig.user, trig.channel, trig.team or None, direct=trig.kind == "dm")
