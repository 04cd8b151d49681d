"""The naive baseline bot: ``python -m bench.naive serve``.

The same process, adapters and fakes as ``python -m bot serve``, with one
thing swapped: the reply loop.  ``NaiveStream`` does what a simple bot does,
an edit per provider delta, awaited in line (waiting out every 429 before the
next delta is read), and no shared budget.  It still continues past the
platform's length limit and always writes the final text, so its replies can
be compared with ours word for word.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence

import bot.service
from bot.errors import PlatformError, PlatformRateLimited, RelayError
from bot.providers.base import Delta
from bot.reply import ReplyOutcome, ReplyStream
from bot.surface import Draft


class NaiveStream(ReplyStream):
    """An edit per delta, awaited in line; no budget, no pacing, no hold.

    What it shares with ``ReplyStream`` is only what any bot needs to show the
    same text: the placeholder or typing indicator the service starts
    (``start``), the cut into a new message past the length limit, and the
    final text.  Where the reply is goes to the store once per message posted
    (as the pre-refactor service saved a message's locator), not on every
    write: a naive loop has no crash recovery to feed.
    """

    _saved = 0  # messages whose place has been saved

    async def run(
        self, deltas: AsyncIterator[Delta], notes: Sequence[str] | Callable[[], Sequence[str]] = ()
    ) -> ReplyOutcome:
        self.start()
        self._notes = notes
        self.budget = None
        src, out = self._src, self._outcome
        error: RelayError | None = None
        try:
            try:
                async for delta in deltas:
                    if delta.text:
                        if out.first_delta_at is None:
                            out.first_delta_at = time.monotonic()
                        src.pieces.append(delta.text)
                        src.version += 1
                        await self._placed()
                        await self._until_landed(await self._roll_over(self._current_text()))
                        out.edits += 1
                        if out.first_visible_at is None:
                            out.first_visible_at = time.monotonic()
                    if delta.usage is not None:
                        src.usage = delta.usage
                    if delta.finish_reason is not None:
                        src.finish_reason = delta.finish_reason
            except RelayError as exc:
                error = exc
            await self._finalise(error)
        finally:
            self._stop_pending()
            if self._placing is not None and not self._placing.done():
                self._placing.cancel()
        return out

    async def _until_landed(self, text: str) -> None:
        """One edit, retried after each 429 (as a platform library's built-in retry does)."""
        while True:
            try:
                await self._write(Draft(text, self._part))
                return
            except PlatformRateLimited as exc:
                await asyncio.sleep(exc.retry_after)
            except PlatformError:
                return

    async def _save(self, shown: str) -> None:
        if len(self.refs) != self._saved:
            self._saved = len(self.refs)
            await super()._save(shown)


def main() -> int:
    bot.service.ReplyStream = NaiveStream  # type: ignore[misc]
    from bot.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
