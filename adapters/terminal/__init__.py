"""The terminal front end: ``ask`` (one question) and ``chat`` (a stored conversation).

Both go through ``RelayService`` and ``ReplyStream`` like Slack and Discord.
stdout carries only the answer, written as it arrives; notes and errors go
to stderr.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import TextIO

from bot.conversation import Turn
from bot.errors import RelayError
from bot.reply import ReplyOutcome
from bot.service import RelayService, Request

CHAT_HELP = "Commands: /reset starts over, /quit leaves (or Ctrl-D)."


class TerminalSink:
    """Writes the growing answer to ``out``, only the part not yet written."""

    max_chars = 1 << 30

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._written = 0

    def measure(self, text: str) -> int:
        return len(text)

    async def start(self) -> None:
        return None

    def _write(self, text: str) -> None:
        if len(text) > self._written:
            self.out.write(text[self._written :])
            self.out.flush()
            self._written = len(text)

    async def update(self, text: str) -> None:
        self._write(text)

    async def split(self, text: str) -> None:
        self._write(text)
        self._written = 0

    async def finish(self, text: str, notes: Sequence[str]) -> None:
        self._end(text, notes)

    async def fail(self, text: str, notes: Sequence[str], error: RelayError) -> None:
        self._end(text, notes)

    def _end(self, text: str, notes: Sequence[str]) -> None:
        self._write(text)
        if self._written:
            self.out.write("\n")
            self.out.flush()
        for note in notes:
            self.err.write(f"{note}\n")
        self.err.flush()


async def ask(service: RelayService, question: str, provider: str | None = None) -> int:
    """Answer one question on stdout.  Exit status 0 when the answer is complete."""
    request = Request(
        platform="terminal",
        channel="ask",
        turns=[Turn("user", question.strip())],
        provider=provider,
        user_id="terminal",
    )
    outcome = await service.answer(request, TerminalSink(), interval=0.0)
    return _status(outcome)


def _status(outcome: ReplyOutcome) -> int:
    return 0 if outcome.state == "complete" else 1


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
        outcome = await service.answer(request, TerminalSink(), interval=0.0)
        status = status or _status(outcome)
    return status
