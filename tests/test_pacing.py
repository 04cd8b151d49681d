"""The shared edit budget: priorities, the sliding window, and room kept for final edits."""

from __future__ import annotations

import asyncio

from bot.pacing import EditBudget


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def test_final_then_first_text_then_interim():
    budget = EditBudget(per_minute=1200, burst=1)  # one edit per 50 ms
    await budget.acquire()  # empty the bucket
    order: list[str] = []

    async def take(name: str, **kind: bool) -> None:
        await budget.acquire(**kind)
        order.append(name)

    tasks = [asyncio.create_task(take("interim")), asyncio.create_task(take("first", first=True))]
    await settle()
    tasks.append(asyncio.create_task(take("final", urgent=True)))
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert order == ["final", "first", "interim"]


async def test_window_allows_burst_edits_then_waits_for_the_oldest_to_expire():
    budget = EditBudget(per_minute=600, burst=3, window=0.3)
    for _ in range(3):
        await asyncio.wait_for(budget.acquire(), 5)  # bounded, not a speed target
    fourth = asyncio.create_task(budget.acquire())
    await settle()
    assert not fourth.done()  # three in the window already
    await asyncio.wait_for(fourth, 10)
    assert budget.granted == 4


async def test_reserve_keeps_room_for_every_streaming_reply_final_edit():
    budget = EditBudget(per_minute=3, burst=3, window=60.0, reserve=True)
    budget.join()
    budget.join()  # two replies streaming: two final edits must stay possible
    await asyncio.wait_for(budget.acquire(first=True), 5)  # 3 free: one for this, two kept
    interim = asyncio.create_task(budget.acquire())
    await settle()
    assert not interim.done()  # 2 free, both kept for final edits
    await asyncio.wait_for(budget.acquire(urgent=True), 5)  # a final edit takes one at once
    budget.leave()  # that reply is done
    await asyncio.wait_for(budget.acquire(urgent=True), 5)
    budget.leave()
    assert not interim.done()  # nothing left in this minute
    interim.cancel()
    assert budget.granted == 3
