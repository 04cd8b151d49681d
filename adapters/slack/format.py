"""Model Markdown -> what Slack shows, with every crowd ping neutralised.

Two targets:

* ``to_mrkdwn``: classic ``text`` (mrkdwn) for the ``chat.update`` path.
  ``&``, ``<`` and ``>`` are escaped, which disarms every control sequence
  (``<!channel>``, ``<!here>``, ``<!everyone>``, ``<!subteam^…>``, ``<@U…>``);
  bold, italics, strike, links, headings, lists and code blocks are converted,
  and tables (which mrkdwn lacks) become code blocks so their columns line up.
* ``to_markdown``: standard Markdown for ``markdown_text`` (native streaming),
  where only the control sequences are broken up with a zero-width space.

Plain ``@here`` / ``@channel`` / ``@everyone`` get a zero-width space too, so a
client that resolves plain names still pings nobody.  All functions are pure.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

ZWSP = "\u200b"

_FENCE = re.compile(r"^[ \t]*```")
_CROWD = re.compile(r"@(here|channel|everyone)\b", re.IGNORECASE)
_CONTROL = re.compile(r"<([!@#])")
_INLINE_CODE = re.compile(r"`[^`\n]+`")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^\s)<>|]+|mailto:[^\s)<>|]+)\)")
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.+?)[ \t#]*$")
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+")
_QUOTE = re.compile(r"^((?:&gt;[ \t]?)+)")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*|__(?=\S)(.+?)(?<=\S)__")
_ITALIC = re.compile(r"(?<![*\w])\*(?=[^\s*])(.+?)(?<=[^\s*])\*(?![*\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
_HOLE = "\ue000{}\ue001"
_HOLE_RE = re.compile("\ue000(\\d+)\ue001")
_BOLD_MARK = "\ue002"


def escape(text: str) -> str:
    """Slack's three control characters, escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def quiet_crowds(text: str) -> str:
    """``@here`` -> ``@\u200bhere``: plain crowd names that never resolve to a ping."""
    return _CROWD.sub(lambda m: "@" + ZWSP + m.group(1), text)


def to_markdown(md: str) -> str:
    """Standard Markdown for ``markdown_text``, with control sequences broken up."""
    return quiet_crowds(_CONTROL.sub(lambda m: "<" + ZWSP + m.group(1), md))


# A streaming reply renders a growing text again at every edit, and the same draft up to three
# times (measure, render, send): whole texts and single lines are cached, all but the last line of
# a growing text are the same as last time.
@functools.lru_cache(maxsize=64)
def to_mrkdwn(md: str) -> str:
    """Convert the model's Markdown to Slack mrkdwn (safe to post as ``text``)."""
    out: list[str] = []
    prose: list[str] = []
    in_code = False
    for line in md.split("\n"):
        if _FENCE.match(line):
            if not in_code:
                out.extend(_prose(prose))
                prose = []
                out.append("```")  # mrkdwn takes no language tag
            else:
                out.append("```")
            in_code = not in_code
            continue
        if in_code:
            out.append(escape(line))
        else:
            prose.append(line)
    out.extend(_prose(prose))
    return "\n".join(out)


def _prose(lines: Sequence[str]) -> list[str]:
    """Prose lines converted; a Markdown table (no such thing in mrkdwn) becomes a code block."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        end = i
        while end < len(lines) and _TABLE_ROW.match(lines[end]):
            end += 1
        if end - i >= 2 and _TABLE_RULE.match(lines[i + 1]):
            out.extend(["```", *(escape(row.strip()) for row in lines[i:end]), "```"])
            i = end
        else:
            out.append(_line(lines[i]))
            i += 1
    return out


@functools.lru_cache(maxsize=4096)
def _line(line: str) -> str:
    holes: list[str] = []

    def hold(text: str) -> str:
        holes.append(text)
        return _HOLE.format(len(holes) - 1)

    line = _INLINE_CODE.sub(lambda m: hold(escape(m.group(0))), line)
    line = _LINK.sub(
        lambda m: hold(f"<{m.group(2).replace('&', '&amp;')}|{quiet_crowds(escape(m.group(1)))}>"), line
    )
    line = quiet_crowds(escape(line))
    heading = _HEADING.match(line)
    if heading:
        title = _BOLD.sub(lambda m: m.group(1) or m.group(2), heading.group(1))
        line = f"{_BOLD_MARK}{title}{_BOLD_MARK}"
    else:
        line = _BULLET.sub(lambda m: f"{m.group(1)}• ", line)
        line = _QUOTE.sub(lambda m: ">" * m.group(1).count("&gt;") + " ", line)
        line = _BOLD.sub(lambda m: f"{_BOLD_MARK}{m.group(1) or m.group(2)}{_BOLD_MARK}", line)
        line = _ITALIC.sub(lambda m: f"_{m.group(1)}_", line)
        line = _STRIKE.sub(lambda m: f"~{m.group(1)}~", line)
    line = line.replace(_BOLD_MARK, "*")
    return _HOLE_RE.sub(lambda m: holes[int(m.group(1))], line)


def footer(notes: Sequence[str]) -> str:
    """Notes under an answer, as an italic footer (mrkdwn), escaped."""
    if not notes:
        return ""
    return "\n\n" + "\n".join(f"_{quiet_crowds(escape(note))}_" for note in notes)


def markdown_footer(notes: Sequence[str]) -> str:
    if not notes:
        return ""
    return "\n\n" + "\n".join(f"*{to_markdown(note)}*" for note in notes)


def utf8_len(text: str) -> int:
    """Bytes in UTF-8; a lone surrogate counts as the 3 bytes of the U+FFFD it becomes."""
    return len(text.encode("utf-8", "surrogatepass"))


def clip_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (on a character boundary), with "…" if cut."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore").rstrip() + "…"
