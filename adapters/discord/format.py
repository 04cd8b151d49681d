"""Model Markdown -> Discord Markdown, and back to plain turns for history.

Discord renders most of CommonMark, with three gaps this module covers:

* ``@everyone`` / ``@here`` in model output are broken with a zero-width
  space (``allowed_mentions`` already stops the ping; this keeps the text from
  even looking like one);
* GFM tables do not render: they become an aligned code block;
* headings go only to ``###``: deeper ones become ``###``.

Code blocks and inline code are left exactly as written.  Notes go under the
answer as Discord subtext lines (``-# ...``); ``strip_notes`` removes them
when the bot reads its own messages back as history.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence

ZWSP = "\u200b"
NOTE_PREFIX = "-# "
EMPTY_ANSWER = "(no answer)"
WARNING = "\u26a0\ufe0f"  # the warning sign, in front of an error note

_MASS = re.compile(r"@(everyone|here)\b")
_DEEP_HEADING = re.compile(r"^\s{0,3}#{4,6}\s+")
_TABLE_SEP = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)+\|?\s*$|^\s*\|\s*:?-+:?\s*\|\s*$")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1")
_USER_MENTION = re.compile(r"<@!?(\d+)>")


# A streaming reply renders its growing text again at every edit and the same text more than once
# (measure, render, send): whole texts and prose lines are cached.
@functools.lru_cache(maxsize=64)
def render(text: str) -> str:
    """What Discord shows for the model's ``text``."""
    lines = text.split("\n")
    out: list[str] = []
    fence: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped
            out.append(line)
            i += 1
            continue
        if fence is not None:
            out.append(line)
            i += 1
            continue
        table_end = _table_end(lines, i)
        if table_end > i:
            out.extend(_table_block(lines[i:table_end]))
            i = table_end
            continue
        out.append(_prose_line(line))
        i += 1
    return "\n".join(out)


def measure(text: str) -> int:
    return len(render(text))


@functools.lru_cache(maxsize=4096)
def _prose_line(line: str) -> str:
    line = _DEEP_HEADING.sub("### ", line)
    pieces = []
    last = 0
    for match in _INLINE_CODE.finditer(line):
        pieces.append(neutralise(line[last : match.start()]))
        pieces.append(match.group(0))
        last = match.end()
    pieces.append(neutralise(line[last:]))
    return "".join(pieces)


def neutralise(text: str) -> str:
    """Break ``@everyone`` and ``@here`` so they neither ping nor look like a ping."""
    return _MASS.sub(lambda m: f"@{ZWSP}{m.group(1)}", text)


# -- tables ----------------------------------------------------------------------------


def _table_end(lines: list[str], start: int) -> int:
    """Index after a GFM table starting at ``start`` (header, separator, rows), else ``start``."""
    if start + 1 >= len(lines) or "|" not in lines[start] or not _TABLE_SEP.match(lines[start + 1]):
        return start
    end = start + 2
    while end < len(lines) and "|" in lines[end] and lines[end].strip():
        end += 1
    return end


def _cells(row: str) -> list[str]:
    row = row.strip()
    row = row.removeprefix("|")
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", row)]


def _table_block(rows: list[str]) -> list[str]:
    header, body = _cells(rows[0]), [_cells(r) for r in rows[2:]]
    width = max(len(header), *(len(r) for r in body)) if body else len(header)
    table = [r + [""] * (width - len(r)) for r in [header, *body]]
    sizes = [max(len(r[c]) for r in table) for c in range(width)]

    def line(cells: list[str]) -> str:
        return " | ".join(cell.ljust(size) for cell, size in zip(cells, sizes, strict=True)).rstrip()

    rule = "-+-".join("-" * size for size in sizes)
    return ["```", line(table[0]), rule, *(line(r) for r in table[1:]), "```"]


# -- notes -------------------------------------------------------------------------------


def with_notes(body: str, notes: Sequence[str]) -> str:
    """The rendered answer with its notes as subtext lines underneath."""
    footer = "\n".join(NOTE_PREFIX + neutralise(n) for n in notes if n)
    if not body.strip():
        return footer or EMPTY_ANSWER
    return f"{body}\n{footer}" if footer else body


def strip_notes(content: str) -> str:
    """The answer part of one of the bot's messages (its note lines removed)."""
    lines = content.split("\n")
    while lines and lines[-1].startswith(NOTE_PREFIX):
        lines.pop()
    text = "\n".join(lines)
    return "" if text == EMPTY_ANSWER else text


# -- incoming text ---------------------------------------------------------------------------


def question_text(content: str, bot_id: int, names: Mapping[int, str]) -> str:
    """A user's message as the model should read it: no bot mention, other mentions as @names."""

    def name(match: re.Match[str]) -> str:
        uid = int(match.group(1))
        if uid == bot_id:
            return ""
        return "@" + names.get(uid, "someone")

    text = _USER_MENTION.sub(name, content)
    return re.sub(r"[ \t]{2,}", " ", text).strip()
