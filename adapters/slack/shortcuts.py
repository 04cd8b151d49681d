"""Slack's message shortcut "Ask llama-relay": a question about a message, answered in its thread.

The shortcut (``message_action``) opens a modal (``views.open`` with the payload's trigger id,
within its 3 s) asking for the question; the message's place travels in the modal's
``private_metadata``.  Its submission (``view_submission``) is acked at once (closing the modal)
and becomes an ``Incoming`` like any message: dedupe on the view id, ordered with the rest of the
thread, history read back to the message, the message itself (read again, with its files)
labelled in the user turn (``bot.about``).  The answer goes in the message's thread, headed by
the question as ``/ask`` heads its answers.  Who may not ask is told privately (the shortcut's
``response_url``), never left with nothing: an allowlist refusal in the modal itself, a block
after the submission; a quota refusal shows in the thread, as for any question.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import aiohttp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackClientError

from bot import about
from bot.access import Caller
from bot.conversation import Turn
from bot.errors import PlatformError
from bot.incoming import Incoming
from bot.reply import ReplyOutcome
from bot.surface import Surface
from bot.tokens import TokenCounter

from . import events
from .commands import HEADER_QUESTION_BYTES, NOT_ALLOWED, NOT_IN_CHANNEL
from .events import Trigger
from .format import clip_bytes, escape, quiet_crowds
from .surface import Place

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .relay import SlackRelay

log = logging.getLogger(__name__)

CALLBACK = "relay_ask_message"  # the shortcut's callback id (config/slack-app-manifest.yaml)
VIEW = "relay_ask_view"  # the modal's callback id
BLOCK, ACTION = "question", "question_input"
#: Slack keeps at most 3,000 characters of a view's private_metadata
METADATA_CHARS = 3000
PREVIEW_CHARS = 300
QUESTION_CHARS = 2000
HINT = "e.g. What does this error mean? Leave empty to have the message explained."
NO_MESSAGE = "Sorry, I could not read that message; please try again."
NO_MODAL = "Sorry, I could not open the question form; please try again."


@dataclass(frozen=True, slots=True)
class Target:
    """The message a shortcut was used on, and who used it (the modal's private_metadata)."""

    team: str
    channel: str
    ts: str
    thread_ts: str | None  # the thread it is in (None: top level, no thread yet)
    asker: str
    text: str  # its text as the shortcut carried it (clipped to fit; read again before answering)
    response_url: str | None = None

    @property
    def thread(self) -> str:
        """The thread the answer goes to: the message's, or a new one under it."""
        return self.thread_ts or self.ts

    @property
    def direct(self) -> bool:
        return self.channel.startswith("D")

    def caller(self) -> Caller:
        return Caller("slack", self.asker, self.channel, self.team or None, direct=self.direct)

    def metadata(self) -> str:
        """As ``private_metadata``: the text clipped until the whole fits Slack's limit."""
        data = asdict(self)
        text = self.text
        while True:
            encoded = json.dumps({**data, "text": text}, ensure_ascii=False)
            if len(encoded) <= METADATA_CHARS or not text:
                return encoded
            text = text[: max(0, len(text) - (len(encoded) - METADATA_CHARS) - 16)]

    @classmethod
    def load(cls, raw: Any) -> Target | None:
        try:
            data = json.loads(raw) if isinstance(raw, str) else raw
            target = cls(**data)
        except (TypeError, ValueError):
            return None
        ids = (target.channel, target.ts, target.asker)
        return target if all(events.slack_id(i) for i in ids) else None


def target_of(body: Mapping[str, Any], team: str) -> Target | None:
    """The ``Target`` of a ``message_action`` payload; None when it is malformed."""
    message, channel, user = body.get("message"), body.get("channel"), body.get("user")
    if not isinstance(message, Mapping) or not isinstance(channel, Mapping) or not isinstance(user, Mapping):
        return None
    channel_id, ts = events.slack_id(channel.get("id")), events.slack_id(message.get("ts"))
    asker = events.slack_id(user.get("id"))
    if not channel_id or not ts or not asker:
        return None
    url = body.get("response_url")
    body_team = body.get("team")
    return Target(
        team=str((body_team.get("id") if isinstance(body_team, Mapping) else None) or team),
        channel=channel_id,
        ts=ts,
        thread_ts=events.slack_id(message.get("thread_ts")),
        asker=asker,
        text=events.text_of(message),
        response_url=url if isinstance(url, str) and url.startswith(("https://", "http://")) else None,
    )


def modal(target: Target, preview: str) -> dict[str, Any]:
    """The question form: a preview of the message and one optional text input."""
    shown = preview if len(preview) <= PREVIEW_CHARS else preview[: PREVIEW_CHARS - 1] + "…"
    return {
        "type": "modal",
        "callback_id": VIEW,
        "private_metadata": target.metadata(),
        "title": {"type": "plain_text", "text": "Ask llama-relay"},
        "submit": {"type": "plain_text", "text": "Ask"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "context", "elements": [{"type": "plain_text", "text": shown or about.NO_TEXT, "emoji": False}]},
            {
                "type": "input",
                "block_id": BLOCK,
                "optional": True,
                "label": {"type": "plain_text", "text": "Your question about this message"},
                "hint": {"type": "plain_text", "text": "The answer appears in the message's thread."},
                "element": {
                    "type": "plain_text_input",
                    "action_id": ACTION,
                    "multiline": True,
                    "max_length": QUESTION_CHARS,
                    "placeholder": {"type": "plain_text", "text": HINT},
                },
            },
        ],
    }


def question_of(view: Mapping[str, Any]) -> str:
    """What was typed into the form (empty: explain the message)."""
    values = ((view.get("state") or {}).get("values") or {}) if isinstance(view, Mapping) else {}
    typed = ((values.get(BLOCK) or {}).get(ACTION) or {}).get("value") if isinstance(values, Mapping) else None
    return typed.strip() if isinstance(typed, str) else ""


class MessageShortcut:
    def __init__(self, relay: SlackRelay) -> None:
        self.relay = relay

    # -- the shortcut: open the form ------------------------------------------------------

    async def open(self, body: Mapping[str, Any]) -> None:
        """A ``message_action`` (acked already): the form, or a private word why not."""
        target = target_of(body, self.relay.team or "")
        if target is None:
            log.info("slack: a message shortcut without a readable message, channel or user; ignored")
            return
        if not self.relay.core.may_ask(target.caller()):
            await tell(target, NOT_ALLOWED)
            return
        trigger_id = events.slack_id(body.get("trigger_id"))
        # no name lookups first: the trigger id opens a view only within 3 s of the shortcut
        preview = events.plain_text(target.text, self.relay.bot_user, {})
        try:
            await self.relay.api.call("views.open", trigger_id=trigger_id, view=modal(target, preview))
        except PlatformError as exc:  # an expired trigger (3 s), a malformed one
            log.warning("slack: could not open the question form: %s", exc)
            await tell(target, NO_MODAL)

    # -- the submission: answer ------------------------------------------------------------

    def errors(self, view: Mapping[str, Any]) -> dict[str, str] | None:
        """What the form must show instead of closing, if anything (checked before the ack)."""
        target = Target.load(view.get("private_metadata"))
        if target is None:
            return {BLOCK: NO_MESSAGE}
        if not self.relay.core.may_ask(target.caller()):
            return {BLOCK: NOT_ALLOWED}
        return None

    def submit(self, view: Mapping[str, Any]) -> None:
        """A ``view_submission`` of the form (acked already): answered in the background."""
        target = Target.load(view.get("private_metadata"))
        view_id = events.slack_id(view.get("id"))
        if target is None:
            return
        question = question_of(view)
        self.relay.core.spawn(self._answer(target, question, view_id), name=f"slack-shortcut-{view_id}")

    async def _answer(self, target: Target, question: str, view_id: str | None) -> None:
        checked = False

        async def relevant() -> bool:  # the core asks once the caller is known not to be blocked
            nonlocal checked
            checked = True
            return True

        keys = (("view", view_id),) if view_id else ()
        outcome = await self.relay.core.handle(self.incoming(target, question, keys=keys, relevant=relevant))
        if outcome is None and not checked:  # blocked: said privately, not in the thread
            await tell(target, NOT_ALLOWED)

    def revive(self, saved: Mapping[str, Any]) -> Incoming | None:
        target = Target.load(saved.get("target"))
        if target is None:
            return None
        return self.incoming(target, str(saved.get("question") or ""), keys=())

    def incoming(
        self,
        target: Target,
        question: str,
        *,
        keys: tuple[tuple[str, str], ...],
        relevant: Callable[[], Awaitable[bool]] | None = None,
    ) -> Incoming:
        relay = self.relay
        shown = quiet_crowds(escape(clip_bytes(about.shown_question(question), HEADER_QUESTION_BYTES)))
        header = f"<@{target.asker}> asked: {shown}\n\n"
        place = Place(target.channel, target.thread, target.team or None, target.asker, header=header)

        async def read(budget: int, counter: TokenCounter) -> list[Turn]:
            return await self._turns(target, question, budget, counter)

        async def open_(turns: list[Turn]) -> Surface:
            relay.conversations.remember((target.channel, target.thread))  # follow-ups there are answered
            return relay.surface(place.as_dict())

        async def after(outcome: ReplyOutcome) -> None:
            if outcome.messages == 0:  # nothing could be posted (the bot is not in the channel)
                await tell(target, NOT_IN_CHANNEL.format(name=relay.bot_name))

        return Incoming(
            caller=target.caller(),
            conversation=f"{target.channel}:{target.thread}",  # in line with the thread's other questions
            read=read,
            open=open_,
            keys=keys,
            origin={"shortcut": {"target": asdict(target), "question": question}, "place": place.as_dict()},
            relevant=relevant,
            budget=relay.budget(target.team),
            after=after,
        )

    async def _turns(self, target: Target, question: str, budget: int, counter: TokenCounter) -> list[Turn]:
        """The thread up to the message, then the question with the message (read again) in it."""
        message = await self._message(target)
        author = events.slack_id(message.get("user"))
        kind: events.Kind = "dm" if target.direct else "mention"
        text = events.text_of(message)
        files = events.files_of(message)
        trig = Trigger(
            kind, target.team, target.channel, author or target.asker, target.ts, text, target.thread_ts, files
        )
        conversations = self.relay.conversations
        turns = await conversations.turns(trig, budget, counter)
        names = await conversations.history.names({target.asker, *([author] if author else [])})
        said = turns[-1]
        labelled = about.question_about(question, said.text, _author(message, author, names))
        asked = replace(
            said,
            text=labelled,
            author=None if target.direct else names.get(target.asker, target.asker),
            message_id=f"{said.message_id}:about",
        )
        return [*turns[:-1], asked]

    async def _message(self, target: Target) -> Mapping[str, Any]:
        """The message as it is now, with its files; the shortcut's copy when it cannot be read."""
        try:
            data = await self.relay.api.call(
                "conversations.replies", retries=3, channel=target.channel, ts=target.thread,
                oldest=target.ts, latest=target.ts, inclusive=True, limit=1, include_all_metadata=True,
            )
        except PlatformError as exc:
            log.warning("slack: the message %s in %s could not be read again (%s)", target.ts, target.channel, exc)
            data = {}
        for message in data.get("messages") or []:
            if isinstance(message, Mapping) and message.get("ts") == target.ts:
                return message
        return {"text": target.text, "ts": target.ts}


def _author(message: Mapping[str, Any], user: str | None, names: Mapping[str, str]) -> str | None:
    """Who wrote the message, as the model reads it."""
    if user:
        return names.get(user, user)
    profile = message.get("bot_profile")
    name = profile.get("name") if isinstance(profile, Mapping) else message.get("username")
    return str(name) if name else None


async def tell(target: Target, text: str) -> None:
    """A private word to the person who used the shortcut (its ``response_url``)."""
    if target.response_url is None:
        log.info("slack: no response_url to tell %s: %s", target.asker, text)
        return
    try:
        await AsyncRespond(response_url=target.response_url)(text=text, response_type="ephemeral")
    except (SlackClientError, aiohttp.ClientError, OSError) as exc:
        log.info("slack: could not answer a shortcut privately: %s", type(exc).__name__)
