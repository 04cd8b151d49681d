"""Accepting questions on SQLite in bursts: one transaction, one commit, for every question that
arrives while the previous transaction runs.

Accepting a question (claiming its dedupe keys and recording the request) is on the path to the
first platform call of every question, and SQLite runs one transaction at a time on the store's
one connection thread: 30 questions arriving at once paid 30 commits and 30 thread hand-offs one
after another.  A question that finds no transaction running is claimed alone, at once; those
that arrive meanwhile wait for it to end and are then claimed together, each in a savepoint of
its own (a duplicate key rolls back that question only).  Errors reach every question of the
failed transaction; each caller's ``waits_for_locks`` then tries its own again.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

_T = TypeVar("_T")
InThread = Callable[[Callable[[sqlite3.Connection], _T]], Awaitable[_T]]


@dataclass(frozen=True, slots=True)
class Claim:
    keys: tuple[str, ...]
    platform: str
    conversation: str
    origin: str  # JSON
    owner: str
    at: float


def claim_all(db: sqlite3.Connection, claims: Sequence[Claim]) -> list[int | None]:
    """Claim each in one transaction: the new request id, or None when a key was taken."""
    db.execute("BEGIN IMMEDIATE")
    try:
        rows = [_claim_one(db, claim) for claim in claims]
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return rows


def _claim_one(db: sqlite3.Connection, claim: Claim) -> int | None:
    db.execute("SAVEPOINT claim")
    for key in claim.keys:
        added = db.execute(
            "INSERT OR IGNORE INTO events(event_id, platform, received_at) VALUES (?, ?, ?)",
            (key, claim.platform, claim.at),
        )
        if added.rowcount != 1:
            db.execute("ROLLBACK TO claim")
            db.execute("RELEASE claim")
            return None
    row = db.execute(
        "INSERT INTO requests(platform, conversation, origin, state, owner, created_at, updated_at) "
        "VALUES (?, ?, ?, 'accepted', ?, ?, ?)",
        (claim.platform, claim.conversation, claim.origin, claim.owner, claim.at, claim.at),
    ).lastrowid
    db.execute("RELEASE claim")
    return row


class Claims:
    """The store's claims: alone when nothing runs, else batched behind the running one."""

    def __init__(self, in_thread: InThread[list[int | None]]) -> None:
        self._in_thread = in_thread
        self._busy = False
        self._queued: list[tuple[Claim, asyncio.Future[int | None]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def claim(self, claim: Claim) -> int | None:
        if self._busy:
            future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
            self._queued.append((claim, future))
            return await future
        self._busy = True
        try:
            (row,) = await self._in_thread(functools.partial(claim_all, claims=[claim]))
        finally:
            self._next()
        return row

    def _next(self) -> None:
        """After a transaction: claim what queued meanwhile (in the background), or be idle."""
        if self._queued:
            self._draining = asyncio.ensure_future(self._drain())
        else:
            self._busy = False

    async def _drain(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                claims = [claim for claim, _ in batch]
                try:
                    rows = await self._in_thread(functools.partial(claim_all, claims=claims))
                except Exception as exc:  # handed to every caller waiting on it, not swallowed
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), row in zip(batch, rows, strict=True):
                    if not future.done():
                        future.set_result(row)
        finally:
            self._busy = False
            for _, future in self._queued:  # cancelled while draining (shutdown)
                future.cancel()
            self._queued = []
