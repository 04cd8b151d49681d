"""The terminal front end: ``ask`` (one question) and ``chat`` (a stored conversation).

Both go through ``RelayService`` and ``ReplyStream`` like Slack and Discord: the
terminal is one more ``Surface``.
stdout carries only the answer, written as it arrives; notes and errors go
to stderr.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import TextIO

from bot.conversation import Turn
from bot.reply import ReplyOutcome
from bot.service import RelayService, Request
from bot.surface import Draft, Ref

CHAT_HELP = "Commands: /reset starts over, /quit leaves (or Ctrl-D)."


class TerminalSurface:
    """Writes the growing answer to ``out``, only the part not yet written; notes go to ``err``."""

    max_chars = 1 << 30

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._written = 0

    def render(self, draft: Draft) -> str:
        """What the terminal shows: the answer on stdout, then (when final) a newline and the notes."""
        if not draft.final:
            return draft.text
        return "\n".join([draft.text, *draft.notes]) + "\n"  # the closing newline: never a repeat

    def measure(self, draft: Draft) -> int:
        return len(draft.text)

    async def post(self, draft: Draft) -> Ref:
        self._written = 0
        self._show(draft)
        return {}

    async def edit(self, ref: Ref, draft: Draft) -> None:
        self._show(draft)

    def _show(self, draft: Draft) -> None:
        text = draft.text
        if len(text) > self._written:
            self.out.write(text[self._written :])
            self.out.flush()
            self._written = len(text)
        if draft.final:
            self._end(draft.notes)

    def _end(self, notes: Sequence[str]) -> None:
        if self._written:
            self.out.write("\n")
            self.out.flush()
        for note in notes:
            self.err.write(f"{note}\n")
        self.err.flush()


async def ask(service: RelayService, question: str, provider: str | None = None) -> int:
    """Answer one question on stdout.  Exit status 0 when the answer is complete (not cut short)."""
    request = Request(
        platform="terminal",
        channel="ask",
        turns=[Turn("user", question.strip())],
        provider=provider,
        user_id="terminal",
    )
    outcome = await service.answer(request, TerminalSurface(), interval=0.0)
    return _status(outcome)


def _status(outcome: ReplyOutcome) -> int:
    """0 only for a whole answer: one cut by the length limit (``BOT_MAX_TOKENS``) is not complete."""
    return 0 if outcome.state == "complete" and outcome.finish_reason != "length" else 1


async def chat(service: RelayService, session: str, provider: str | None = None) -> int:
    """A conversation stored under ``session``; one user turn per line when stdin is not a terminal."""
    key = f"terminal:{session}"
    interactive = sys.stdin.isatty()
    status = 0
    if interactive:
        history = await service.store.load_turns(key)
        resumed = f" (resuming {len(history)} messages)" if history else ""
        print(f"Session {session!r}{resumed}. {CHAT_HELP}", file=sys.stderr)
    while True:
        if interactive:
            print("you> ", end="", file=sys.stderr, flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            break
        if text == "/reset":
            await service.store.reset_conversation(key)
            print("(conversation cleared)", file=sys.stderr)
            continue
        history = await service.store.load_turns(key)
        request = Request(
            platform="terminal",
            channel=f"chat:{session}",
            turns=[*history, Turn("user", text)],
            conversation_key=key,
            provider=provider,
            user_id="terminal",
        )
        outcome = await service.answer(request, TerminalSurface(), interval=0.0)
        status = status or _status(outcome)
    return status
