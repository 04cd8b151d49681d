"""The platform port: what a chat platform implements so the core can show a reply.

The core (``bot.reply.ReplyStream``) owns the life of a reply: when to post,
when to edit, when to continue in a new message, what the final text and its
notes say, and where the messages are (saved in the store as they appear).  A
platform only says how a ``Draft`` looks there and how to write it.

Required (``Surface``):

* ``max_chars``: the length limit of one message, in ``measure`` units;
* ``render(draft) -> str``: the platform text of a draft (escaping, header,
  notes as footer lines);
* ``measure(draft) -> int``: the length of that text in the platform's unit;
* ``post(draft) -> Ref``: write a new message, return where it is;
* ``edit(ref, draft)``: replace a message's text.

Errors are raised as ``bot.errors``: a 429 as ``PlatformRateLimited``, a
deleted message or an expired interaction as ``MessageGone``, a transient
failure as ``PlatformUnavailable``.

Optional capabilities, each with what the core does without it
(``capability`` reads them):

* ``placeholder: bool`` - post a pending draft at once ("thinking…") while the
  provider warms up; without it nothing is posted before the first text.  A
  failed placeholder is retried and never stops the answer.
* ``pending() -> None`` - a pending indicator (typing, a status line), run as
  a task until the first text shows or the reply ends; without it, none.
* ``max_message_age: float`` - seconds after which a message is finished and
  the answer continues in a new one (Slack's native streams expire); without
  it, messages roll over by length only.

* ``max_messages: int`` - the most messages one reply may use (a place that takes only a few):
  the last one ends with the answer cut where it fits and a note saying so
  (``bot.reply.cut_note``); without it, a reply uses as many messages as the answer needs.

* ``delete(ref) -> None`` - delete one of the bot's messages: the extra messages of an answer
  a shorter regenerated one replaces; without it they keep the old text.
* ``controls: bool`` - buttons under a reply (``Draft.controls``, ``bot.controls``): Stop
  while it streams, Regenerate and feedback once it is final; without it, none.

A platform whose library is about to wait on a rate limit raises
``PlatformRateLimited`` for an interim write: the core then slows that reply
down and pauses the shared edit budget.

Recovery after a crash needs no read-back: the core saves the text it last
showed in each message, and finalises from that (``bot.recovery``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

#: Where a message is, as the platform needs it to edit the message later (JSON-able).
Ref = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Draft:
    """One message of a reply as the core wants it shown."""

    text: str  # the answer's Markdown in this message
    part: int = 0  # which message of the reply (0: the first)
    notes: tuple[str, ...] = ()  # short lines under the text (final message only)
    failed: bool = False  # the last note says what went wrong
    final: bool = False  # no more edits will follow
    pending: bool = False  # a placeholder: the answer has not started yet
    #: buttons under the message (``bot.controls``: "stop", "regenerate", "up", "down"), shown by
    #: a surface with the ``controls`` capability; ``key`` names the reply in their values
    controls: tuple[str, ...] = ()
    key: str = ""


class Surface(Protocol):
    """Where one reply is shown.  Adapters implement it; the core drives it."""

    max_chars: int

    def render(self, draft: Draft) -> str: ...

    def measure(self, draft: Draft) -> int: ...

    async def post(self, draft: Draft) -> Ref: ...

    async def edit(self, ref: Ref, draft: Draft) -> None: ...


def capability(surface: object, name: str, default: Any = None) -> Any:
    """An optional capability of ``surface`` (see the module docstring), or ``default``."""
    return getattr(surface, name, default)
