"""Where to cut a long answer so it continues in a new message.

A cut lands on the best boundary available (paragraph, line, sentence, word,
then anywhere), never leaves a code fence open: a fence open at the cut is
closed at the end of the first part and reopened, with its language, at the
start of the next.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

Measure = Callable[[str], int]

FENCE = "```"
_CLOSE = "\n```"
# Boundaries in order of preference; each is searched in the last part of the room.
_BOUNDARIES = ("\n\n", "\n", ". ", " ")
_SEARCH_FRACTION = 0.3


@dataclass(frozen=True, slots=True)
class Cut:
    head: str  # text of the finished message (fence closed if needed)
    consumed: int  # how many characters of the input the head used
    reopen: str  # text the next message starts with ("```python\n" or "")


def open_fence(text: str) -> str | None:
    """The opening line of the code fence still open at the end of ``text``, if any."""
    opening: str | None = None
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith(FENCE):
            opening = None if opening is not None else stripped
    return opening


def _longest_prefix(text: str, limit: int, measure: Measure) -> int:
    """Largest p with measure(text[:p]) <= limit (measure grows with p)."""
    lo, hi = 0, min(len(text), limit * 4 if measure is not len else limit)
    hi = min(hi, len(text))
    if measure(text[:hi]) <= limit:
        return hi
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if measure(text[:mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


def cut(text: str, limit: int, measure: Measure = len) -> Cut:
    """Cut ``text`` (whose measure exceeds ``limit``) into a head that fits and the rest.

    The boundary's whitespace stays at the end of the head, so the parts joined
    with ``join_parts`` give back the original text.
    """
    room = _longest_prefix(text, limit - len(_CLOSE), measure)
    if room <= 0:
        raise ValueError("limit too small to hold any text")
    floor = int(room * (1 - _SEARCH_FRACTION))
    inside_code = open_fence(text[:room]) is not None
    position = 0
    for boundary in _BOUNDARIES[1:2] if inside_code else _BOUNDARIES:
        found = text.rfind(boundary, floor, room - len(boundary) + 1)
        if found > 0:
            position = found + len(boundary)
            break
    if position <= 0:
        position = room
        if text[position - 1] == "\r":  # never split a "\r\n"
            position -= 1
    head = text[:position]
    fence = open_fence(head)
    if fence is None:
        return Cut(head=head, consumed=position, reopen="")
    return Cut(head=head + _CLOSE, consumed=position, reopen=fence + "\n")


def join_parts(parts: list[str]) -> str:
    """Undo ``cut``: join message texts, removing the fences added at each cut."""
    if not parts:
        return ""
    out = [parts[0]]
    for prev, part in itertools.pairwise(parts):
        if prev.endswith(_CLOSE):
            fence = open_fence(prev[: -len(_CLOSE)])
            if fence is not None and part.startswith(fence + "\n"):
                out[-1] = out[-1][: -len(_CLOSE)]
                part = part[len(fence) + 1 :]
        out.append(part)
    return "".join(out)
