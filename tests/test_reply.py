"""ReplyStream: paced edits, one in flight, rollover, and a final state whatever happens."""

from __future__ import annotations

import asyncio

import pytest

from bot.errors import PlatformRateLimited, ProviderUnavailable, StreamInterrupted
from bot.pacing import EditBudget
from bot.providers.base import Delta, Usage
from bot.reply import ReplyStream, cut_note
from bot.splitting import join_parts
from tests.fakes.sinks import RecordingSurface


async def deltas(pieces, *, delay=0.0, finish="stop", error=None, after=None):
    for n, piece in enumerate(pieces):
        if error is not None and n == after:
            raise error
        if delay:
            await asyncio.sleep(delay)
        yield Delta(text=piece)
    if error is not None and after is None:
        raise error
    if finish:
        yield Delta(finish_reason=finish, usage=Usage(10, len(pieces)))


async def test_first_text_at_once_then_coalesced_edits():
    sink = RecordingSurface()
    pieces = [f"w{i} " for i in range(100)]
    loop = asyncio.get_running_loop()
    began = loop.time()
    out = await ReplyStream(sink, interval=0.2).run(deltas(pieces, delay=0.005))
    elapsed = loop.time() - began
    updates = [t for kind, t in sink.calls if kind == "update"]
    assert updates[0] == "w0 "  # shown as soon as it arrived
    assert len(updates) <= elapsed / 0.2 + 1  # one edit per interval however slow the machine is
    assert len(updates) < len(pieces)
    assert sink.calls[-1] == ("finish", "".join(pieces))
    assert out.state == "complete" and out.text == "".join(pieces)
    assert out.usage == Usage(10, 100)


async def test_one_edit_in_flight_and_latest_text_wins():
    sink = RecordingSurface(edit_delay=0.03)
    pieces = [f"{i} " for i in range(60)]
    await ReplyStream(sink, interval=0.0).run(deltas(pieces, delay=0.002))
    assert sink.max_in_flight == 1
    texts = [t for _, t in sink.calls[1:]]
    assert texts == sorted(texts, key=len)  # never goes back to older text
    assert sink.messages == ["".join(pieces)]


async def test_rolls_over_into_continuation_messages():
    sink = RecordingSurface(max_chars=300)
    code = "\n".join(f"    value_{i} = compute({i})" for i in range(40))
    answer = "Intro paragraph.\n\n```python\n" + code + "\n```\n\nAnd a closing paragraph. " * 3
    out = await ReplyStream(sink, interval=0.0).run(deltas(list(answer), delay=0))
    assert len(sink.messages) > 3 and out.messages == len(sink.messages)
    assert all(len(m) <= 300 for m in sink.messages)
    assert join_parts(sink.messages) == answer
    assert all(m.count("```") % 2 == 0 for m in sink.messages)


@pytest.mark.parametrize("error", [None, StreamInterrupted("DeepInfra", "reset", hint="ask again")], ids=["complete", "cut"])
async def test_a_surface_with_few_messages_ends_the_answer_in_its_last_one_with_a_note(error):
    """``max_messages``: the last message allowed takes what fits, closes an open fence and says
    the answer was cut, beside any other note; no message past it is ever posted."""
    sink = RecordingSurface(max_chars=300)
    sink.max_messages = 3  # type: ignore[attr-defined]
    code = "\n".join(f"    value_{i} = compute({i})" for i in range(60))
    answer = "Intro paragraph.\n\n```python\n" + code + "\n```\n\nThe end."
    out = await ReplyStream(sink, interval=0.0).run(deltas(list(answer), error=error, after=len(answer) - 1))
    assert len(sink.messages) == 3 and out.messages == 3
    assert all(m.count("```") % 2 == 0 for m in sink.messages)  # the fence is closed in the last one
    assert sink.notes[-1] == cut_note(3) and len(sink.notes) == (1 if error is None else 2)
    assert sink.measure(sink.drafts[-1]) <= 300  # the notes fit beside the text
    shown = join_parts(sink.messages)
    assert answer.startswith(shown.removesuffix("\n```")) and len(shown) > 2 * 250


async def test_stream_cut_mid_answer_keeps_partial_text_with_a_note():
    sink = RecordingSurface()
    err = StreamInterrupted("DeepInfra", "reset", hint="the answer is incomplete")
    out = await ReplyStream(sink, interval=0.0).run(deltas(["Hello ", "wor"], error=err))
    assert sink.calls[-1] == ("fail", "Hello wor")
    assert sink.notes == [err.user_message]
    assert out.state == "partial" and out.text == "Hello wor"


async def test_failure_before_any_text_leaves_an_error_note():
    sink = RecordingSurface()
    err = ProviderUnavailable("AIGateway", status=503, hint="try again shortly")
    out = await ReplyStream(sink).run(deltas(["x"], error=err, after=0), notes=["(earlier messages were left out)"])
    assert sink.calls[-1] == ("fail", "")
    assert sink.notes == ["(earlier messages were left out)", "AIGateway is unavailable (503): try again shortly"]
    assert out.state == "failed"


async def test_end_without_finish_reason_is_an_interruption():
    sink = RecordingSurface()
    out = await ReplyStream(sink, interval=0.0).run(deltas(["partial"], finish=None))
    assert out.state == "partial"
    assert sink.calls[-1][0] == "fail" and "cut" in sink.notes[-1]


async def test_platform_429s_are_honoured_and_the_final_text_arrives():
    sink = RecordingSurface(rate_limit_every=2)
    pieces = [f"t{i} " for i in range(40)]
    out = await ReplyStream(sink, interval=0.01).run(deltas(pieces, delay=0.005))
    assert out.rate_limited >= 1
    assert sink.messages == ["".join(pieces)]
    assert out.state == "complete"


async def test_cancellation_finalises_as_interrupted():
    sink = RecordingSurface()

    async def endless():
        yield Delta(text="started ")
        await asyncio.sleep(3600)
        yield Delta(text="never")

    task = asyncio.create_task(ReplyStream(sink, interval=0.0).run(endless()))
    while not sink.messages:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sink.calls[-1] == ("fail", "started ")
    assert "ask again" in sink.notes[-1]


async def test_shared_budget_serves_final_edits_first():
    budget = EditBudget(per_minute=600, burst=1)  # one token per 0.1 s
    order: list[str] = []
    await budget.acquire()  # empty the bucket

    async def take(name: str, urgent: bool):
        await budget.acquire(urgent=urgent)
        order.append(name)

    waiting = [asyncio.create_task(take(f"interim{i}", False)) for i in range(3)]
    await asyncio.sleep(0)
    waiting.append(asyncio.create_task(take("final", True)))
    await asyncio.gather(*waiting)
    assert order[0] == "final"
    assert budget.granted == 5


async def test_budget_pause_blocks_everyone():
    budget = EditBudget(per_minute=6000, burst=5)
    budget.pause(0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await budget.acquire()
    assert loop.time() - start >= 0.15  # a lower bound on waiting, not a speed target


async def test_a_failed_split_during_streaming_does_not_abort_the_answer():
    from bot.errors import PlatformUnavailable

    class FlakySplit(RecordingSurface):
        failures = 1

        async def edit(self, ref, draft):
            if draft.final and self.failures:  # the first message's final text, as the answer rolls over
                self.failures -= 1
                raise PlatformUnavailable("slack chat.update: internal_error")
            await super().edit(ref, draft)

    sink = FlakySplit(max_chars=100)
    answer = "".join(f"sentence {i}. " for i in range(40))
    out = await ReplyStream(sink, interval=0.0).run(deltas(list(answer), delay=0))
    assert out.state == "complete"
    assert join_parts(sink.messages) == answer
    assert "internal_error" not in " ".join(sink.notes)


async def test_cancelled_while_the_final_edit_waits_still_shows_interrupted():
    tried = asyncio.Event()

    class SlowFinish(RecordingSurface):
        async def _call(self, draft):
            if draft.final and not draft.failed:
                tried.set()
                raise PlatformRateLimited(retry_after=30)  # the final edit would wait 30 s
            await super()._call(draft)

    sink = SlowFinish()
    task = asyncio.create_task(ReplyStream(sink, interval=0.0).run(deltas(["almost ", "done"])))
    await asyncio.wait_for(tried.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sink.calls[-1] == ("fail", "almost done")
    assert "ask again" in sink.notes[-1]


async def test_no_room_left_in_the_message_still_ends_with_the_notes():
    class Crowded(RecordingSurface):
        def measure(self, draft):
            return super().measure(draft) + 95  # a header takes almost the whole message

    sink = Crowded(max_chars=100)
    out = await ReplyStream(sink, interval=0.0).run(deltas(["x" * 50]))
    assert sink.calls[-1][0] in ("finish", "fail") and out.final_at is not None


async def test_a_message_deleted_mid_answer_gets_the_whole_answer_in_one_new_message():
    from bot.errors import MessageGone

    class Deleted(RecordingSurface):
        async def edit(self, ref, draft):
            if ref["index"] == 0:
                raise MessageGone("deleted by someone")
            await super().edit(ref, draft)

    sink = Deleted()
    pieces = [f"w{i} " for i in range(40)]
    out = await ReplyStream(sink, interval=0.0).run(deltas(pieces, delay=0.005))
    assert out.state == "complete" and out.messages == 2  # the first message, and one replacement
    assert sink.messages[-1] == "".join(pieces) and sink.calls[-1] == ("finish", "".join(pieces))


async def test_a_saved_message_is_finished_after_a_rate_limit_or_posted_anew_when_gone():
    from bot.errors import MessageGone
    from bot.surface import Draft

    class Flaky(RecordingSurface):
        def __init__(self, error):
            super().__init__()
            self.error = error
            self.messages = ["half an"]

        async def edit(self, ref, draft):
            if self.error is not None:
                error, self.error = self.error, (None if isinstance(self.error, PlatformRateLimited) else self.error)
                raise error
            await super().edit(ref, draft)

    note = Draft("half an", notes=("(interrupted — ask again)",), failed=True, final=True)
    limited = Flaky(PlatformRateLimited(retry_after=0.05))
    await ReplyStream(limited, patience=5).finish_message({"index": 0}, note)
    assert limited.messages == ["half an"] and limited.notes == ["(interrupted — ask again)"]
    gone = Flaky(MessageGone("deleted"))
    stream = ReplyStream(gone, patience=5)
    await stream.finish_message({"index": 0}, note)
    assert gone.messages == ["half an", "half an"] and stream.refs == [{"index": 0}, {"index": 1}]


# -- controls: buttons and Stop ----------------------------------------------------------------


class Watched:
    """A provider stream that says whether it was started and whether it was closed."""

    def __init__(self, pieces: list[str], delay: float) -> None:
        self.pieces, self.delay = pieces, delay
        self.started = self.closed = False
        self.sent = 0

    async def __aiter__(self):
        self.started = True
        try:
            for piece in self.pieces:
                await asyncio.sleep(self.delay)
                self.sent += 1
                yield Delta(text=piece)
            yield Delta(finish_reason="stop")
        finally:
            self.closed = True


async def test_stop_mid_stream_keeps_the_text_closes_the_stream_and_ends_stopped():
    sink = RecordingSurface(controls=True)
    source = Watched([f"w{i} " for i in range(200)], 0.01)
    stream = ReplyStream(sink, interval=0.02, controls="7:U1")
    run = asyncio.ensure_future(stream.run(source.__aiter__()))
    while source.sent < 5:
        await asyncio.sleep(0.01)
    assert stream.stop("Ada") is True
    assert stream.stop("Grace") is False  # one stop
    out = await run
    assert out.state == "stopped" and out.error is None and out.notes == ["stopped by Ada"]
    assert source.closed and source.sent < 200
    assert out.text.startswith("w0 w1 w2 w3 w4 ") and sink.messages == [out.text]
    interim = [d.controls for d in sink.drafts if not d.final]
    assert interim[0] == () and set(interim[1:]) == {("stop",)}  # the first text goes out bare, then Stop
    assert sink.drafts[-1].controls == ("regenerate", "up", "down") and sink.drafts[-1].key == "7:U1"
    assert stream.stop("Ada") is False  # ended already


async def test_stop_before_the_first_token_never_starts_the_provider_stream():
    sink = RecordingSurface(controls=True, placeholder=True)
    source = Watched(["never"], 0.0)
    stream = ReplyStream(sink, controls="7:U1")
    stream.start()
    assert stream.stop("Ada") is True
    out = await stream.run(source.__aiter__())
    assert not source.started and out.state == "stopped" and out.text == ""
    assert sink.notes == ["stopped by Ada"]


async def test_buttons_follow_the_reply_stop_while_streaming_none_on_a_finished_part_or_a_failure():
    sink = RecordingSurface(controls=True, max_chars=50)
    out = await ReplyStream(sink, interval=0.0, controls="1:U1").run(deltas([f"word{i} " for i in range(30)]))
    finals = [d for d in sink.drafts if d.final]
    assert out.state == "complete" and len(finals) >= 2
    assert all(d.controls == () for d in finals[:-1])  # finished parts: no Stop left behind
    assert finals[-1].controls == ("regenerate", "up", "down")

    sink = RecordingSurface(controls=True)
    await ReplyStream(sink, controls="2:U1").run(deltas([], finish=None, error=ProviderUnavailable("X")))
    assert sink.drafts[-1].failed and sink.drafts[-1].controls == ()

    sink = RecordingSurface()  # a surface without buttons gets none
    await ReplyStream(sink, controls="3:U1").run(deltas(["hi"]))
    assert all(d.controls == () and d.key == "" for d in sink.drafts)
