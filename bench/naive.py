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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import bot.service
from bot.errors import PlatformError, PlatformRateLimited, RelayError
from bot.providers.base import Delta
from bot.reply import ReplyOutcome, ReplyStream


class NaiveStream(ReplyStream):
    async def run(
        self, deltas: AsyncIterator[Delta], notes: Sequence[str] | Callable[[], Sequence[str]] = ()
    ) -> ReplyOutcome:
        self._notes = notes
        self.budget = None
        src, out = self._src, self._outcome
        error: RelayError | None = None
        try:
            async for delta in deltas:
                if delta.text:
                    src.pieces.append(delta.text)
                    src.version += 1
                    await _until_landed(self.sink.update, await self._roll_over(self._current()))
                    out.edits += 1
                if delta.usage is not None:
                    src.usage = delta.usage
                if delta.finish_reason is not None:
                    src.finish_reason = delta.finish_reason
        except RelayError as exc:
            error = exc
        await self._finalise(error)
        return out


async def _until_landed(call: Callable[[str], Awaitable[None]], text: str) -> None:
    """One edit, retried after each 429 (as a platform library's built-in retry does)."""
    while True:
        try:
            await call(text)
            return
        except PlatformRateLimited as exc:
            await asyncio.sleep(exc.retry_after)
        except PlatformError:
            return


def main() -> int:
    bot.service.ReplyStream = NaiveStream  # type: ignore[misc]
    from bot.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
