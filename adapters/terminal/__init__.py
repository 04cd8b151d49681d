"""The terminal front end: ``ask`` (one question) and ``chat`` (a stored conversation).

Both go through ``RelayService`` and ``ReplyStream`` like Slack and Discord: the
terminal is one more ``Surface``.
stdout carries only the answer, written as it arrives; notes and errors go
to stderr.  In ``chat``, Ctrl-C stops the answer in progress (its text so far
stays, with "stopped by you"), and at the ``you>`` prompt ends the session at once,
like ``/quit``: stdin is read without a blocking thread, so nothing waits for
Enter and no line is swallowed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from bot.conversation import Turn
from bot.reply import ReplyOutcome
from bot.service import RelayService, Request
from bot.surface import Draft, Ref

CHAT_HELP = "Commands: /reset starts over, /quit leaves (or Ctrl-D, or Ctrl-C); Ctrl-C stops an answer."


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
    stop = asyncio.Event()  # Ctrl-C: the answer so far, then "stopped by you"
    with on_ctrl_c(stop.set):
        outcome = await service.answer(request, TerminalSurface(), interval=0.0, stop=stop)
    return _status(outcome)


@contextmanager
def on_ctrl_c(callback: Callable[[], None]) -> Iterator[None]:
    """``callback`` on SIGINT instead of KeyboardInterrupt, where signals can be handled (the
    main thread; elsewhere Ctrl-C keeps Python's default)."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGINT, callback)
    except (ValueError, RuntimeError):  # not the main thread
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _status(outcome: ReplyOutcome) -> int:
    """0 only for a whole answer: one cut by the length limit (``BOT_MAX_TOKENS``) is not complete."""
    return 0 if outcome.state == "complete" and outcome.finish_reason != "length" else 1


class Lines:
    """stdin's lines, read when the event loop sees them arrive (no thread blocked in ``readline``).

    A regular file (``chat < questions.txt``) cannot be watched; it never blocks, so its lines
    are read directly.
    """

    def __init__(self, stream: TextIO) -> None:
        self._fd = stream.fileno()
        self._buffer = b""
        self._eof = False
        self._arrived = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        try:
            self._loop.add_reader(self._fd, self._read)
            self._watched = True
        except (PermissionError, OSError):  # a regular file
            self._watched = False

    def _read(self) -> None:
        try:
            chunk = os.read(self._fd, 65536)
        except OSError:  # the terminal went away: the end of the input
            chunk = b""
        if not chunk:
            self._eof = True
            self._loop.remove_reader(self._fd)
        self._buffer += chunk
        self._arrived.set()

    async def readline(self) -> str:
        """The next line with its newline; "" at the end of the input."""
        while b"\n" not in self._buffer and not self._eof:
            if not self._watched:
                self._read()
                continue
            self._arrived.clear()
            await self._arrived.wait()
        line, sep, rest = self._buffer.partition(b"\n")
        self._buffer = rest
        return (line + sep).decode("utf-8", "replace")

    def close(self) -> None:
        if self._watched and not self._eof:
            self._loop.remove_reader(self._fd)


class CtrlC:
    """SIGINT during ``chat``: stops the answer in progress, or, at the prompt, ends the session."""

    def __init__(self) -> None:
        self.answer: asyncio.Event | None = None  # set to stop the answer in progress
        self.leave = asyncio.Event()

    def __call__(self) -> None:
        if self.answer is not None:
            self.answer.set()
        else:
            self.leave.set()


async def _line_or_leave(lines: Lines, ctrl_c: CtrlC) -> str | None:
    """The next line; None when Ctrl-C ends the session first."""
    reading = asyncio.ensure_future(lines.readline())
    leaving = asyncio.ensure_future(ctrl_c.leave.wait())
    await asyncio.wait({reading, leaving}, return_when=asyncio.FIRST_COMPLETED)
    leaving.cancel()
    if reading.done():
        return reading.result()
    reading.cancel()
    return None


async def chat(service: RelayService, session: str, provider: str | None = None) -> int:
    """A conversation stored under ``session``; one user turn per line when stdin is not a terminal."""
    key = f"terminal:{session}"
    interactive = sys.stdin.isatty()
    if interactive:
        history = await service.store.load_turns(key)
        resumed = f" (resuming {len(history)} messages)" if history else ""
        print(f"Session {session!r}{resumed}. {CHAT_HELP}", file=sys.stderr)
    ctrl_c, lines = CtrlC(), Lines(sys.stdin)
    try:
        with on_ctrl_c(ctrl_c):
            return await _converse(service, session, provider, lines, ctrl_c, interactive)
    finally:
        lines.close()


async def _converse(
    service: RelayService, session: str, provider: str | None, lines: Lines, ctrl_c: CtrlC, interactive: bool
) -> int:
    key = f"terminal:{session}"
    status = 0
    while True:
        if interactive:
            print("you> ", end="", file=sys.stderr, flush=True)
        line = await _line_or_leave(lines, ctrl_c)
        if line is None:  # Ctrl-C at the prompt
            print(file=sys.stderr)
            break
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
        ctrl_c.answer = asyncio.Event()
        try:
            outcome = await service.answer(request, TerminalSurface(), interval=0.0, stop=ctrl_c.answer)
        finally:
            ctrl_c.answer = None
        status = status or _status(outcome)
    return status
