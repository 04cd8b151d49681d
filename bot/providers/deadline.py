"""The whole-turn timeout around a provider's stream of deltas.

httpx's read timeout only bounds the gap between two reads, and keep-alive
comments reset it, so a provider that sends keep-alives forever would never
time out.  ``within`` bounds the whole answer.  It arms one timer per stream
(no task per delta, which would cost more than parsing the delta): when the
deadline passes while the stream waits on the network, that wait is
cancelled (like ``asyncio.timeout``, but only inside the wait, never while
the caller runs); when it passes between deltas, the next step stops.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from .. import errors
from .http import Describe

T = TypeVar("T")


class _Watch:
    __slots__ = ("fired", "waiting")

    def __init__(self) -> None:
        self.fired = False
        self.waiting: asyncio.Task[object] | None = None  # the task blocked on the stream

    def fire(self) -> None:
        self.fired = True
        if self.waiting is not None:
            self.waiting.cancel(msg="turn deadline")


async def within(
    items: AsyncIterator[T], deadline: float, who: Describe, started: Callable[[], bool]
) -> AsyncIterator[T]:
    """Pass ``items`` on until the monotonic ``deadline``; then a typed timeout error.

    Before the first token (``started()`` false) the error is a retryable
    ``ProviderTimeout``, after it a ``StreamInterrupted``.
    """
    watch = _Watch()
    handle = asyncio.get_running_loop().call_later(max(0.0, deadline - time.monotonic()), watch.fire)
    iterator = aiter(items)
    try:
        while True:
            if watch.fired:
                raise _expired(who, started())
            task = asyncio.current_task()
            watch.waiting = task
            try:
                item = await anext(iterator)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if watch.fired and task is not None and task.uncancel() == 0:
                    raise _expired(who, started()) from None
                raise
            finally:
                watch.waiting = None
            yield item
    finally:
        handle.cancel()
        closer = getattr(iterator, "aclose", None)
        if closer is not None:
            await closer()


def _expired(who: Describe, started: bool) -> errors.ProviderError:
    if started:
        return errors.StreamInterrupted(who.display, "turn timeout", hint="the answer took too long")
    error = errors.ProviderTimeout(who.display, "turn timeout", hint="the answer took too long; try again")
    error.retryable = False  # the deadline is the request's, not the attempt's: a retry cannot beat it
    return error
