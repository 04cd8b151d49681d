"""Locks around the SQLite file: waiting out another connection's, and one ``serve`` per file.

``LockWait`` keeps other statements off the shared connection while an explicit
transaction is open (``in_transaction``), and runs an operation again, with backoff, while SQLite answers
"database is locked/busy" (a backup, an admin's ``BEGIN IMMEDIATE``, a long
write elsewhere), for at most ``BOT_DATABASE_WAIT`` seconds in all; then it
raises ``StoreUnavailable``.  The ``waits_for_locks`` decorator puts a method of
the store under it.  Only whole operations are retried: a failed statement
outside a transaction changed nothing, and a transaction that failed was rolled
back by its method, so running the method again is safe.

``ProcessLock`` is an exclusive, non-blocking ``flock`` on ``<database>.lock``
with the holder's PID in it, so a second long-running process on the same file
refuses to start instead of "recovering" the first one's live answers.
"""

from __future__ import annotations

import asyncio
import contextvars
import fcntl
import functools
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from .errors import StoreInUse, StoreUnavailable

log = logging.getLogger(__name__)

DEFAULT_WAIT = 60.0  # seconds one operation may wait for a lock held elsewhere in all
BUSY_TIMEOUT = 5.0  # seconds SQLite itself waits on a lock before it answers "locked"
FIRST_PAUSE, LONGEST_PAUSE = 0.05, 1.0  # backoff between two attempts, seconds

_T = TypeVar("_T")
_P = ParamSpec("_P")
# Set while an operation runs under a LockWait: an operation it calls is retried as part of it.
_INSIDE: contextvars.ContextVar[bool] = contextvars.ContextVar("store_lock_wait", default=False)


def is_lock_error(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED (with any extended code): another connection holds a lock."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc)
    return "is locked" in text or "is busy" in text


class LockWait:
    """Runs operations on one database, waiting out other connections' locks up to ``bound`` s."""

    def __init__(self, database: str, bound: float = DEFAULT_WAIT) -> None:
        self.database = database
        self.bound = bound
        self._waiters = 0
        self._since = 0.0
        # Held for the whole of an explicit transaction: another coroutine's statement queued on
        # the shared connection meanwhile would become part of it (and be rolled back with it).
        # Single statements wait for it only while a transaction is open; otherwise they go
        # straight to the connection's queue.
        self._transaction = asyncio.Lock()

    async def run(self, operation: Callable[[], Awaitable[_T]], *, transaction: bool = False) -> _T:
        if _INSIDE.get():  # the outer operation retries as a whole
            return await operation()
        token = _INSIDE.set(True)
        try:
            return await self._retry(functools.partial(self._attempt, operation, transaction))
        finally:
            _INSIDE.reset(token)

    async def _attempt(self, operation: Callable[[], Awaitable[_T]], transaction: bool) -> _T:
        if transaction or self._transaction.locked():
            async with self._transaction:
                return await operation()
        # No await before the operation queues its statement: no transaction can begin in between.
        return await operation()

    async def _retry(self, operation: Callable[[], Awaitable[_T]]) -> _T:
        deadline = time.monotonic() + self.bound
        pause, waiting, done = FIRST_PAUSE, False, False
        try:
            while True:
                try:
                    result = await operation()
                    done = True
                    return result
                except sqlite3.OperationalError as exc:
                    if not is_lock_error(exc):
                        raise
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise StoreUnavailable(
                            f"{self.database} stayed locked by another connection for more than "
                            f"{self.bound:g} s (BOT_DATABASE_WAIT)"
                        ) from exc
                    if not waiting:
                        waiting = True
                        self._begin_wait()
                await asyncio.sleep(min(pause, left))
                pause = min(pause * 2, LONGEST_PAUSE)
        finally:
            if waiting:
                self._end_wait(done)

    def _begin_wait(self) -> None:
        self._waiters += 1
        if self._waiters == 1:
            self._since = time.monotonic()
            log.warning(
                "store: %s is locked by another connection; waiting up to %g s (BOT_DATABASE_WAIT)",
                self.database,
                self.bound,
            )

    def _end_wait(self, done: bool) -> None:
        self._waiters -= 1
        if self._waiters == 0 and done:
            log.info("store: %s: lock released after %.1f s", self.database, time.monotonic() - self._since)


class _WaitsForLocks(Protocol):
    _lock_wait: LockWait


_S = TypeVar("_S", bound=_WaitsForLocks)


def waits_for_locks(
    method: Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]]:
    """Run a store method under its ``_lock_wait``: a lock held elsewhere is waited out, not fatal."""
    return _under_lock_wait(method, transaction=False)


def in_transaction(
    method: Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]]:
    """``waits_for_locks`` for a method that runs an explicit transaction (``BEGIN`` … ``COMMIT``)."""
    return _under_lock_wait(method, transaction=True)


def _under_lock_wait(
    method: Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]], *, transaction: bool
) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]]:
    @functools.wraps(method)
    async def waiting(self: _S, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        operation = functools.partial(method, self, *args, **kwargs)
        return await self._lock_wait.run(operation, transaction=transaction)

    waiting.waits_for_locks = True  # type: ignore[attr-defined]  # tests check every method has it
    return waiting


class ProcessLock:
    """An exclusive ``flock`` on ``<database>.lock``, the holder's PID written in it."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, database: str) -> ProcessLock:
        """Take the lock at once or raise ``StoreInUse`` naming the file and the holder's PID."""
        path = Path(f"{database}.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise StoreInUse(
                f"BOT_DATABASE: {database} is in use by another llama-relay serve (PID {holder}); "
                "stop it, or give this one its own BOT_DATABASE"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        mine = f"{os.getpid()}\n".encode()
        os.pwrite(fd, mine, 0)
        os.ftruncate(fd, len(mine))
        return cls(fd, path)

    def release(self) -> None:
        """Closing the descriptor releases the lock; the file stays (removing it would race)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _read_pid(fd: int) -> str:
    text = os.pread(fd, 64, 0).decode("ascii", "replace")
    first = text.splitlines()[0].strip() if text.strip() else ""
    return first if first.isdigit() else "unknown"
