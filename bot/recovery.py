"""After a restart: settle every request a crash left open, on every platform the same way.

A request is open from the moment its question is accepted until its reply
is final.  Each open request of a platform whose owner is gone (a restart, or
another replica that died: ``bot.leases``) is first taken over, then:

* nothing was shown yet: a recent question is answered now (through the
  normal pipeline, so ordering and quotas hold); an old one, or one the
  adapter cannot rebuild, gets a short note saying it was not answered;
* a reply was half shown: its last message is finalised from the text the
  core saved, with the "interrupted" note (no read-back from the platform).

Nothing accepted stays silent, nothing is answered twice: a request is
settled once, then it is final.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from .controls import key as control_key
from .errors import RelayError
from .incoming import Incoming, Platform
from .reply import ReplyOutcome, ReplyStream
from .store import RequestRecord, Store
from .surface import Draft

log = logging.getLogger(__name__)

INTERRUPTED_NOTE = "(interrupted — ask again)"
NOT_ANSWERED_NOTE = "(I was restarted before I could answer this; please ask again)"
#: A question accepted at most this long ago is answered after a restart; older ones get a note.
REANSWER_WITHIN = 600.0
#: How long one message's final edit is retried at start-up before it is posted anew.
PATIENCE = 20.0

Reanswer = Callable[[RequestRecord, Incoming], Awaitable[ReplyOutcome | None]]


async def recover(
    store: Store, platform: Platform, owner: str, reanswer: Reanswer, alive_since: float
) -> int:
    """Take over and settle the open requests of ``platform`` whose owner has been silent since
    ``alive_since`` (``bot.leases``); how many were settled."""
    records = await store.take_orphans(platform.name, owner, alive_since)
    for record in records:
        try:
            await _settle(store, platform, record, reanswer)
        except RelayError as exc:
            log.warning("could not settle request %s after a restart: %s", record.id, exc)
            await store.update_request(record.id, state="failed", error=f"not settled after a restart: {exc}")
    return len(records)


async def _settle(store: Store, platform: Platform, record: RequestRecord, reanswer: Reanswer) -> None:
    if record.messages:
        await _finish_interrupted(store, platform, record)
        return
    incoming = None
    if time.time() - record.created_at <= REANSWER_WITHIN:
        try:
            incoming = await platform.revive(record.origin)
        except RelayError as exc:
            log.warning("request %s could not be rebuilt: %s", record.id, exc)
    if incoming is not None:
        await store.update_request(record.id, state="accepted")
        log.info("request %s: answering a question a restart left unanswered", record.id)
        await reanswer(record, incoming)
        return
    await _note_unanswered(store, platform, record)


async def _finish_interrupted(store: Store, platform: Platform, record: RequestRecord) -> None:
    # keyed, without buttons: a Stop the message showed when the process died goes with this edit
    stream = ReplyStream(platform.surface(record.place), patience=PATIENCE, controls=control_key(record.id, None))
    draft = Draft(record.shown, record.part, (INTERRUPTED_NOTE,), failed=True, final=True)
    await stream.finish_message(record.messages[-1], draft)  # retried; a message gone is posted anew
    state = "partial" if record.shown.strip() else "failed"
    messages = [*record.messages[:-1], *stream.refs]
    await store.update_request(record.id, state=state, messages=messages, error="interrupted by a restart")


async def _note_unanswered(store: Store, platform: Platform, record: RequestRecord) -> None:
    place = record.place or record.origin.get("place")
    if not place:
        await store.update_request(record.id, state="failed", error="not answered: no place to say so")
        return
    stream = ReplyStream(platform.surface(place))
    outcome = await stream.fail(_Unanswered(NOT_ANSWERED_NOTE))
    # shown, or never showable: final either way (a note that cannot land is not retried at every start)
    state = "failed" if outcome.final_at is not None or outcome.undeliverable else "accepted"
    await store.update_request(record.id, state=state, messages=stream.refs, error="not answered before a restart")


class _Unanswered(RelayError):
    pass
