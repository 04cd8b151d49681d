"""Replicas on one database: who owns a request, who takes it over, and in what order answers run.

Store level (both backends): ``take_orphans`` moves only the open requests whose owner
has gone silent, once.  PostgreSQL: two replicas taking over at once split the orphans
(``SKIP LOCKED``); a replica that stops heartbeating has its half answer finished by a
survivor's takeover loop, and a replica starting up leaves a live one's requests alone;
answers of one conversation accepted on two replicas run one after the other, in the
order they were accepted.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bot.leases import Leases
from bot.recovery import INTERRUPTED_NOTE
from bot.runtime import build_router
from bot.service import RelayService
from bot.store import open_store
from bot.surface import Draft
from tests.fakes.sinks import RecordingSurface, incoming


async def _answering(store: Any, owner: str, event: str, conversation: str = "C1:1.0") -> int:
    rid = await store.accept([f"slack:event:{event}"], "slack", conversation, {}, owner)
    assert rid is not None
    await store.update_request(rid, state="answering", place={"channel": "C1"}, messages=[{"ts": event}], shown="half")
    return rid


async def test_only_requests_of_silent_owners_are_taken_over_once(store):
    await store.heartbeat("live")
    live = await _answering(store, "live", "E1")
    silent = await _answering(store, "silent", "E2")  # never heartbeat
    await store.heartbeat("stale")
    stale = await _answering(store, "stale", "E3")
    await asyncio.sleep(0.05)
    await store.heartbeat("live")

    taken = await store.take_orphans("slack", "me", alive_since=time.time() - 0.04)
    assert [r.id for r in taken] == [silent, stale]
    assert all(r.owner == "me" for r in taken)
    assert (await store.request(live)).owner == "live"  # type: ignore[union-attr]
    assert await store.take_orphans("slack", "me", alive_since=time.time() - 0.04) == []  # mine now
    assert await store.take_orphans("discord", "me", alive_since=float("inf")) == []  # other platform


async def test_two_replicas_taking_over_at_once_split_the_orphans(stores):
    """Raced ten times (a pick that raced the other taker's once took rows twice, 3 runs in 25)."""
    await stores[1].heartbeat("a")  # both takers are alive (``Leases`` heartbeats before it takes)
    await stores[2].heartbeat("b")
    for round_ in range(10):
        dead = [
            await _answering(stores[0], f"dead{round_}", f"E{round_}-{n}", conversation=f"C{n}")
            for n in range(40)
        ]
        a, b = await asyncio.gather(
            stores[1].take_orphans("slack", "a", alive_since=time.time() - 60),
            stores[2].take_orphans("slack", "b", alive_since=time.time() - 60),
        )
        assert sorted(r.id for r in a + b) == dead  # every orphan taken, none twice
        owners = {r.id: r.owner for r in a + b}
        for rid in dead:
            assert (await stores[0].request(rid)).owner == owners[rid]  # type: ignore[union-attr]


class Platform:
    """A platform whose messages are ``RecordingSurface``s, one per place."""

    name = "slack"

    def __init__(self) -> None:
        self.edits: list[tuple[dict[str, Any], Draft]] = []

    def surface(self, place: dict[str, Any]) -> Any:
        platform = self

        class Surface(RecordingSurface):
            async def edit(self, ref: dict[str, Any], draft: Draft) -> None:
                platform.edits.append((ref, draft))

        return Surface()

    async def revive(self, origin: dict[str, Any]) -> None:
        return None


async def _service(make_settings: Any, database: str, **leases: float) -> RelayService:
    settings = make_settings(bot_database=database)
    service = RelayService(settings, await open_store(database), build_router(settings))
    service.leases = Leases(service.store, service.owner, service._settle_orphans, **leases)
    return service


async def _close(*services: RelayService) -> None:
    for service in services:
        await service.leases.stop()
        await service.router.aclose()
        await service.store.close()


async def test_a_survivor_finishes_the_half_answer_of_a_replica_that_stopped(make_settings, postgres_url):
    dying = await _service(make_settings, postgres_url, every=0.05, lease=0.5)
    survivor = await _service(make_settings, postgres_url, every=0.05, lease=0.5)
    newcomer = await _service(make_settings, postgres_url, every=0.05, lease=0.5)
    platform = Platform()
    try:
        assert await dying.recover(platform) == 0  # heartbeating from now on
        assert await survivor.recover(platform) == 0
        rid = await _answering(dying.store, dying.owner, "E1")
        assert await newcomer.recover(platform) == 0  # starting up: a live replica's answer is left alone
        assert platform.edits == []

        await dying.leases.stop()  # the replica dies: no more heartbeats
        deadline = time.monotonic() + 30
        while not platform.edits:
            assert time.monotonic() < deadline, "nobody took the orphan over"
            await asyncio.sleep(0.05)
        ((ref, draft),) = platform.edits  # finished once, by one of the two survivors
        assert ref == {"ts": "E1"} and draft.text == "half" and draft.notes == (INTERRUPTED_NOTE,)
        record = await survivor.store.request(rid)
        assert record is not None and record.state == "partial"
        assert record.owner in (survivor.owner, newcomer.owner)
        await asyncio.sleep(0.3)  # several more beats: nobody finishes it again
        assert len(platform.edits) == 1
    finally:
        await _close(dying, survivor, newcomer)


async def test_one_conversation_on_two_replicas_answers_in_arrival_order(make_settings, postgres_url, fake_llm):
    first_replica = await _service(make_settings, postgres_url)
    second_replica = await _service(make_settings, postgres_url)
    try:
        # an earlier question of the conversation, still being answered on the first replica
        earlier = await first_replica.store.accept(["slack:event:E1"], "slack", "C1:1.0", {}, first_replica.owner)
        assert earlier is not None
        await first_replica.store.update_request(earlier, state="answering")

        fake_llm.reply("the later answer")
        surface = RecordingSurface()
        later = asyncio.create_task(
            second_replica.handle(
                incoming([_question()], surface, keys=(("event", "E2"),), conversation="C1:1.0")
            )
        )
        await asyncio.sleep(0.5)  # five polls and more: it is waiting its turn
        assert not later.done() and surface.calls == [] and fake_llm.requests == []

        await first_replica.store.update_request(earlier, state="done")  # the earlier answer ends
        outcome = await asyncio.wait_for(later, 30)
        assert outcome is not None and surface.messages == ["the later answer"]
    finally:
        await _close(first_replica, second_replica)


def _question() -> Any:
    from bot.conversation import Turn

    return Turn("user", "and then?")
