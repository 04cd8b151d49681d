"""Conversation turns and the token budget that trims them to a context window.

``fit`` walks once from the newest turn back, adds turns while they fit, and
always keeps the system prompt and the newest user turn, cutting that one in
the middle (with a visible marker) when alone it is too long.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from . import tokens
from .attachments import Attachment
from .errors import WindowTooSmall
from .tokens import TokenCounter

Role = Literal["system", "user", "assistant"]

_SURROGATE = re.compile("[\ud800-\udfff]")
CUT_MARKER = "\n\n[… {n} tokens cut from the middle of this message …]\n\n"
LEFT_OUT_NOTE = "(earlier messages were left out)"
SUMMARISED_NOTE = "(earlier messages were summarised to fit)"
PART_SUMMARISED_NOTE = "(earlier messages were summarised to fit; some were left out)"
CUT_NOTE = "(your message was too long: its middle was cut)"


def clean_text(text: str) -> str:
    """Replace lone surrogates (invalid in UTF-8, refused by SQLite and JSON peers) with U+FFFD."""
    if text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of a conversation, oldest first in every list."""

    role: Role
    text: str
    author: str | None = None  # display name of a user in a shared channel
    message_id: str | None = None  # platform id: the token-count cache key
    #: files not read yet (``bot.attachments`` puts their text into ``text`` before the fit)
    attachments: tuple[Attachment, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", clean_text(self.text))
        if self.author is not None:
            object.__setattr__(self, "author", clean_text(self.author))

    def content(self) -> str:
        """What the model reads: user turns in shared channels carry their author."""
        if self.role == "user" and self.author:
            return f"{self.author}: {self.text}"
        return self.text

    def as_message(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content()}


@dataclass(frozen=True, slots=True)
class Fitted:
    """The messages to send, and what was left out to get there."""

    turns: list[Turn]
    dropped: int  # older turns left out
    cut_tokens: int  # tokens cut from the middle of the newest user turn
    prompt_tokens: int  # exact size of the prompt, template included
    #: of the ``dropped`` turns, how many a summary in the system prompt stands for (``bot.summary``)
    summarised: int = 0

    @property
    def notes(self) -> list[str]:
        notes = []
        if self.dropped and self.summarised:
            notes.append(SUMMARISED_NOTE if self.summarised >= self.dropped else PART_SUMMARISED_NOTE)
        elif self.dropped:
            notes.append(LEFT_OUT_NOTE)
        if self.cut_tokens:
            notes.append(CUT_NOTE)
        return notes

    def messages(self) -> list[dict[str, str]]:
        return [t.as_message() for t in self.turns]


def fit(
    turns: Sequence[Turn],
    window: int,
    reserve: int,
    counter: TokenCounter | None = None,
    *,
    date_preamble: bool = True,
) -> Fitted:
    """Trim ``turns`` (oldest first) so that prompt + ``reserve`` <= ``window``.

    The system prompt (a leading ``system`` turn) and the newest user turn are
    always kept.  Counts come from ``counter`` (cached per message id).
    """
    counter = counter or TokenCounter()
    system = turns[0] if turns and turns[0].role == "system" else None
    rest = list(turns[1:] if system else turns)
    newest_user = max((i for i, t in enumerate(rest) if t.role == "user"), default=None)
    if newest_user is None:
        raise ValueError("a conversation needs at least one user turn")
    # Anything after the newest user turn (there should be nothing) is not sent.
    rest = rest[: newest_user + 1]

    budget = window - reserve - tokens.fixed_overhead(date_preamble=date_preamble)
    if system is not None:
        budget -= tokens.PER_MESSAGE + counter.count(system.content(), system.message_id)
    elif date_preamble:
        budget -= tokens.PER_MESSAGE  # Llama 3.1 always renders a system block

    question = rest[-1]
    question_cost = tokens.PER_MESSAGE + counter.count(question.content(), question.message_id)
    cut = 0
    if question_cost > budget:
        question, cut = _cut_middle(question, budget - tokens.PER_MESSAGE)
        question_cost = tokens.PER_MESSAGE + tokens.count(question.content())
    budget -= question_cost

    kept: list[Turn] = []
    for turn in reversed(rest[:-1]):
        cost = tokens.PER_MESSAGE + counter.count(turn.content(), turn.message_id)
        if cost > budget:
            break
        budget -= cost
        kept.append(turn)
    kept.reverse()

    dropped = len(rest) - 1 - len(kept)
    out = ([system] if system else []) + kept + [question]
    used = window - reserve - budget
    return Fitted(turns=out, dropped=dropped, cut_tokens=cut, prompt_tokens=used)


def _cut_middle(turn: Turn, room: int) -> tuple[Turn, int]:
    """Keep the head and tail of ``turn`` so its content fits ``room`` tokens."""
    prefix = f"{turn.author}: " if turn.role == "user" and turn.author else ""
    room -= tokens.count(prefix)
    ids = tokens.encode(turn.text)
    marker_cost = tokens.count(CUT_MARKER.format(n=len(ids))) + 2  # +2: joins may merge differently
    keep = room - marker_cost
    if keep < 16:
        raise WindowTooSmall(f"only {room} tokens are left for the question")
    # Decoding a slice can split a character; re-count and shrink until it fits.
    while True:
        head, tail = ids[: keep // 2], ids[len(ids) - (keep - keep // 2) :]
        removed = len(ids) - len(head) - len(tail)
        text = tokens.decode(head) + CUT_MARKER.format(n=removed) + tokens.decode(tail)
        if tokens.count(prefix + text) <= room:
            return replace(turn, text=text, message_id=None), removed
        keep -= 8
