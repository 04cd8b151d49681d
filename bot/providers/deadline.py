"""Deadlines around a provider's stream of deltas: the first token, and the whole turn.

httpx's read timeout only bounds the gap between two reads, and keep-alive
comments reset it, so a provider that sends keep-alives forever (or accepts
the connection and never answers the headers, for the read timeout each
try) would take minutes to give up on.  ``within`` bounds two things:

* the time to the first item (``first``: the first-token deadline, per try);
  a provider silent that long is a ``ProviderTimeout`` that is retryable on
  its own, so the router decides whether to retry it or move on;
* the whole answer (``deadline``, shared by retries and failover): once it
  passes, nothing can beat it, so the error is final.

It arms one timer at a time (no task per delta, which would cost more than
parsing the delta): when a deadline passes while the stream waits on the
network, that wait is cancelled (like ``asyncio.timeout``, but only inside
the wait, never while the caller runs); when it passes between deltas, the
next step stops.  The first item disarms the first-token timer before it is
handed on, so a slow caller never turns into a first-token timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

from .. import errors
from .http import Describe

T = TypeVar("T")

FIRST = "first token"
TURN = "turn"


class _Watch:
    __slots__ = ("fired", "waiting")

    def __init__(self) -> None:
        self.fired: str | None = None  # which deadline passed
        self.waiting: asyncio.Task[object] | None = None  # the task blocked on the stream

    def fire(self, which: str) -> None:
        self.fired = which
        if self.waiting is not None:
            self.waiting.cancel(msg=f"{which} deadline")


def _arm(watch: _Watch, when: float, which: str) -> asyncio.TimerHandle:
    delay = max(0.0, when - time.monotonic())
    return asyncio.get_running_loop().call_later(delay, watch.fire, which)


async def within(
    items: AsyncIterator[T],
    deadline: float,
    who: Describe,
    started: Callable[[], bool],
    *,
    first: float | None = None,
) -> AsyncIterator[T]:
    """Pass ``items`` on until the monotonic ``deadline``; then a typed timeout error.

    ``first`` (monotonic, optional) bounds the wait for the first item.  Before
    the first token (``started()`` false) a turn timeout is a final
    ``ProviderTimeout``, after it a ``StreamInterrupted``.
    """
    watch = _Watch()
    early = first is not None and first < deadline
    handle = _arm(watch, first, FIRST) if early and first is not None else _arm(watch, deadline, TURN)
    got_first = False
    iterator = aiter(items)
    try:
        while True:
            if watch.fired:
                raise _expired(who, watch.fired, started())
            task = asyncio.current_task()
            watch.waiting = task
            try:
                item = await anext(iterator)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if watch.fired and task is not None and task.uncancel() == 0:
                    raise _expired(who, watch.fired, started()) from None
                raise
            finally:
                watch.waiting = None
            if not got_first:
                got_first = True
                if watch.fired:  # too late (the stream swallowed the cancellation): not passed on
                    raise _expired(who, watch.fired, False)
                if early:  # from now on only the whole turn is bounded
                    handle.cancel()
                    handle = _arm(watch, deadline, TURN)
            yield item
    finally:
        handle.cancel()
        closer = getattr(iterator, "aclose", None)
        if closer is not None:
            await closer()


def _expired(who: Describe, which: str, started: bool) -> errors.ProviderError:
    if started:
        return errors.StreamInterrupted(who.display, "turn timeout", hint="the answer took too long")
    if which == FIRST:
        return first_token_timeout(who)
    error = errors.ProviderTimeout(who.display, "turn timeout", hint="the answer took too long; try again")
    error.retryable = False  # the deadline is the request's, not the attempt's: a retry cannot beat it
    return error


def first_token_timeout(who: Describe) -> errors.ProviderTimeout:
    """No text within the first-token deadline: retryable, but the router prefers to move on."""
    hint = "it sent nothing in time; try again"
    return errors.ProviderTimeout(who.display, "no first token in time", hint=hint)
