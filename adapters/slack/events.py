"""Pure translation of Slack events and messages: what to answer, and as which turns.

Nothing here does I/O.  ``trigger`` decides whether an event asks the bot
something; ``thread_turns`` turns a thread (as ``conversations.replies``
returns it) into conversation turns, the bot's own split replies joined back
into one turn with ``bot.splitting.join_parts``.

The bot marks its own messages with message metadata (``event_type`` =
``REPLY_EVENT``): ``part`` (0 for the first message of a reply, 1.. for
continuations), ``head`` (characters of a header before the answer, for
``/ask``), ``foot`` (characters of the notes footer) and ``asker``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bot.attachments import Attachment
from bot.conversation import Turn, clean_text
from bot.splitting import join_parts

from .format import unescape

REPLY_EVENT = "llama_relay_reply"
PLACEHOLDER = "_thinking…_"

#: message subtypes that are a person saying something; every other subtype is ignored
_SPOKEN_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
_USER_REF = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")
_CHANNEL_REF = re.compile(r"<#([CG][A-Z0-9]+)(?:\|([^>]*))?>")
_SPECIAL_REF = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>|<!subteam\^[A-Z0-9]+(?:\|([^>]*))?>")
_LINK_REF = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")

Kind = Literal["mention", "dm", "followup"]


@dataclass(frozen=True, slots=True)
class Trigger:
    """A message that may ask the bot something, and where the answer goes."""

    kind: Kind
    team: str
    channel: str
    user: str
    ts: str
    text: str  # the raw Slack text
    thread_ts: str | None  # the thread the message is in (None: top level)
    files: tuple[Mapping[str, Any], ...] = ()  # the message's ``files[]``, as Slack sent them

    @property
    def reply_thread(self) -> str | None:
        """Where the answer goes: the thread, or a new thread under a channel message; DMs stay flat."""
        if self.thread_ts:
            return self.thread_ts
        return None if self.kind == "dm" else self.ts

    @property
    def in_thread(self) -> bool:
        return bool(self.thread_ts and self.thread_ts != self.ts)


def ts_key(ts: str) -> tuple[int, int]:
    """A Slack ts ("1700000000.000100") as a sortable key, exact (a float loses the microseconds)."""
    seconds, _, micros = ts.partition(".")
    try:
        return int(seconds or 0), int(micros or 0)
    except ValueError:
        return 0, 0


def slack_id(value: Any) -> str | None:
    """An id (channel, user, ts, event id) as Slack sends it: printable ASCII, else None (malformed)."""
    if isinstance(value, str) and value and value.isascii() and value.isprintable():
        return value
    return None


def text_of(message: Mapping[str, Any]) -> str:
    """A message's text; anything but a string (a malformed event) reads as empty."""
    text = message.get("text")
    return text if isinstance(text, str) else ""


def _number(value: Any) -> int:
    """A small non-negative int from our own metadata (0 when malformed)."""
    try:
        return max(int(value or 0), 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def is_spoken(event: Mapping[str, Any], bot_user: str | None, bot_id: str | None) -> bool:
    """A person's new message: no edits, deletions, joins, other bots or our own messages."""
    subtype = event.get("subtype")
    if subtype is not None and (not isinstance(subtype, str) or subtype not in _SPOKEN_SUBTYPES):
        return False
    if event.get("bot_id") or event.get("bot_profile"):
        return False
    user = slack_id(event.get("user"))
    return user is not None and user != bot_user


def mentions(text: str, user_id: str | None) -> bool:
    return bool(user_id) and f"<@{user_id}" in text


def trigger(
    event: Mapping[str, Any],
    team: str,
    bot_user: str | None,
    bot_id: str | None,
) -> Trigger | None:
    """The trigger an ``app_mention`` or ``message`` event carries, if any.

    Follow-ups (thread messages without a mention) come back with kind
    ``followup``: the caller still has to check that the bot answered there.
    """
    if not is_spoken(event, bot_user, bot_id):
        return None
    channel, ts, text = slack_id(event.get("channel")), slack_id(event.get("ts")), text_of(event)
    if not channel or not ts:
        return None
    thread_ts = slack_id(event.get("thread_ts"))
    if event.get("channel_type") == "im" or (event.get("type") == "message" and channel.startswith("D")):
        kind: Kind = "dm"
    elif event.get("type") == "app_mention" or mentions(text, bot_user):
        kind = "mention"
    elif thread_ts and thread_ts != ts:
        kind = "followup"
    else:
        return None
    return Trigger(kind, team, channel, str(event["user"]), ts, text, thread_ts, files_of(event))


def files_of(message: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    """The ``files[]`` of a message (anything malformed left out)."""
    files = message.get("files")
    if not isinstance(files, list):
        return ()
    return tuple(f for f in files if isinstance(f, dict))


def user_ids(texts: Iterable[str]) -> set[str]:
    return {m.group(1) for text in texts for m in _USER_REF.finditer(text)}


def plain_text(text: str, bot_user: str | None, names: Mapping[str, str]) -> str:
    """Slack message text as a person would read it: mentions as names, links as URLs."""

    def user(m: re.Match[str]) -> str:
        if m.group(1) == bot_user:
            return ""
        return "@" + names.get(m.group(1), m.group(1))

    text = _USER_REF.sub(user, text)
    text = _CHANNEL_REF.sub(lambda m: "#" + (m.group(2) or m.group(1)), text)
    text = _SPECIAL_REF.sub(lambda m: "@" + (m.group(1) or (m.group(2) or "group").lstrip("@")), text)
    text = _LINK_REF.sub(lambda m: f"[{m.group(2)}]({m.group(1)})" if m.group(2) else m.group(1), text)
    return clean_text(unescape(text)).strip()  # no lone surrogates: they break UTF-8, SQLite and JSON


def reply_meta(message: Mapping[str, Any]) -> dict[str, Any] | None:
    """The bot's reply metadata on a message, if it carries ours."""
    meta = message.get("metadata")
    if not isinstance(meta, Mapping) or meta.get("event_type") != REPLY_EVENT:
        return None
    payload = meta.get("event_payload")
    return payload if isinstance(payload, dict) else {}


def _is_own(message: Mapping[str, Any], bot_user: str | None, bot_id: str | None) -> bool:
    return (bot_id is not None and message.get("bot_id") == bot_id) or (
        bot_user is not None and message.get("user") == bot_user
    )


def _own_parts(message: Mapping[str, Any], meta: Mapping[str, Any]) -> tuple[str | None, str]:
    """(header question or None, answer text) of one of the bot's messages."""
    text = text_of(message)
    head, foot = _number(meta.get("head")), _number(meta.get("foot"))
    question = text[:head] if head else None
    answer = text[head : len(text) - foot if foot else None]
    return question, answer


def thread_turns(
    messages: Sequence[Mapping[str, Any]],
    bot_user: str | None,
    bot_id: str | None,
    names: Mapping[str, str],
    *,
    labelled: bool = True,
    ids: str = "slack:",
    files: Callable[[Mapping[str, Any]], tuple[Attachment, ...]] = lambda _message: (),
) -> list[Turn]:
    """A thread, oldest first, as turns: people as user turns, the bot's replies as assistant turns.

    ``labelled``: user turns carry the person's display name (shared channels, not DMs).
    ``ids`` prefixes each message's ts to make the turn's ``message_id`` (the token-count cache key).
    ``files`` describes a message's attached files (read later by the core).

    Continuation messages (``part`` > 0) join the reply they continue; other
    bots, placeholders and non-spoken subtypes are left out.
    """
    turns: list[Turn] = []
    parts: list[str] = []  # raw texts of the reply being assembled
    first_ts: str | None = None

    def close() -> None:
        nonlocal parts, first_ts
        if parts:
            text = plain_text(join_parts(parts), bot_user, names)
            if text:
                turns.append(Turn("assistant", text, message_id=f"{ids}{first_ts}"))
        parts, first_ts = [], None

    for message in messages:
        ts = str(message.get("ts", ""))
        if _is_own(message, bot_user, bot_id):
            meta = reply_meta(message)
            if message.get("text") == PLACEHOLDER:
                continue
            if meta is None:  # a bot message without our metadata: take it as one reply
                close()
                parts, first_ts = [text_of(message)], ts
                close()
                continue
            question, answer = _own_parts(message, meta)
            if _number(meta.get("part")) == 0 or not parts:
                close()
                if question and meta.get("asker"):
                    asked = plain_text(question.split(" asked: ", 1)[-1], bot_user, names)
                    author = names.get(str(meta["asker"]), str(meta["asker"])) if labelled else None
                    turns.append(Turn("user", asked, author=author, message_id=f"{ids}{ts}:q"))
                first_ts = ts
            parts.append(answer)
            continue
        close()
        if not is_spoken(message, bot_user, bot_id):
            continue
        text = plain_text(text_of(message), bot_user, names)
        attached = files(message)
        if text or attached:
            user = str(message.get("user"))
            author = names.get(user, user) if labelled else None
            turns.append(Turn("user", text, author=author, message_id=f"{ids}{ts}", attachments=attached))
    close()
    return turns
