"""Handle one request end to end, the same way for every front end.

An adapter turns a platform event into a ``Request`` (the conversation so far,
ending with the user's question) and a ``Sink``; ``RelayService.answer`` does
the rest: check access and quotas, apply the channel's settings, fit the
history to the provider's window, stream the answer through the router into a
``ReplyStream``, and keep the reply's state, usage and cost in the store.

The service also owns the background tasks adapters start (``spawn``), so a
shutdown can let replies in flight finish and finalise the rest (``drain``),
and finalises replies a crash left unfinished (``recover``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from . import tokens
from .access import AccessPolicy, Admission, Caller
from .channel_config import ChannelConfig, load_file
from .conversation import Turn
from .errors import Blocked, EmptyPrompt, QuotaReached, RelayError, StreamInterrupted
from .logs import REQUEST_ID
from .metrics import Metrics
from .pacing import EditBudget
from .providers.base import Usage
from .providers.registry import sampling_of
from .providers.router import Routed, Router
from .reply import INTERRUPT_TIMEOUT, ReplyOutcome, ReplyStream, Sink
from .settings import Settings
from .store import ReplyRecord, Store, UsageRecord
from .tokens import TokenCounter

log = logging.getLogger(__name__)

INTERRUPTED_NOTE = "(interrupted — ask again)"


@dataclass(slots=True)
class Request:
    platform: str  # "slack", "discord", "terminal"
    channel: str
    turns: list[Turn]  # oldest first, ending with the user's question; no system turn
    thread: str | None = None
    user_id: str | None = None
    #: set when the store keeps this conversation's history (the terminal)
    conversation_key: str | None = None
    system_prompt: str | None = None
    provider: str | None = None  # force one provider (``ask --provider``)
    max_tokens: int | None = None
    workspace: str | None = None  # Slack team, Discord guild
    roles: frozenset[str] = frozenset()
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def question(self) -> Turn | None:
        return self.turns[-1] if self.turns and self.turns[-1].role == "user" else None

    def caller(self) -> Caller:
        return Caller(self.platform, self.user_id, self.channel, self.workspace, self.roles)


class _Tracked:
    """Passes every call to the sink and stores where its messages are, as they appear."""

    def __init__(self, sink: Sink, save: Callable[[dict[str, object]], Awaitable[None]]) -> None:
        self._sink = sink
        self._save = save
        self._saved: object = None
        self.max_chars = sink.max_chars

    def measure(self, text: str) -> int:
        return self._sink.measure(text)

    async def _track(self) -> None:
        locator = getattr(self._sink, "locator", None)
        where = locator() if callable(locator) else None
        if where and where != self._saved:
            self._saved = where
            await self._save(where)

    async def start(self) -> None:
        await self._sink.start()
        await self._track()

    async def update(self, text: str) -> None:
        await self._sink.update(text)
        await self._track()

    async def split(self, text: str) -> None:
        await self._sink.split(text)

    async def finish(self, text: str, notes: Sequence[str]) -> None:
        await self._sink.finish(text, notes)

    async def fail(self, text: str, notes: Sequence[str], error: RelayError) -> None:
        await self._sink.fail(text, notes, error)


class RelayService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        router: Router,
        counter: TokenCounter | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.router = router
        self.counter = counter or TokenCounter()
        self.metrics = metrics or Metrics()
        self.access = AccessPolicy(settings, store)
        self.channel_files = load_file(settings.bot_channel_config) if settings.bot_channel_config else {}
        self.sampling = sampling_of(settings)
        self.accepting = True
        #: platform name -> connected? (adapters keep it current; /healthz reads it)
        self.health: dict[str, bool] = {}
        self._locks: dict[tuple[str, str, str | None], asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.in_flight = 0

    # -- background work ------------------------------------------------------------------

    def spawn(self, work: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any] | None:
        """Run ``work`` in the background, tracked for shutdown; None once shutting down."""
        if not self.accepting:
            work.close()
            return None
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def drain(self, grace: float | None = None) -> int:
        """Stop taking work; let tasks finish within ``grace`` s, then cancel (finalising
        their replies as interrupted).  Returns how many had to be cancelled."""
        self.accepting = False
        grace = self.settings.bot_shutdown_grace if grace is None else grace
        pending = set(self._tasks)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:  # each finalises as interrupted within INTERRUPT_TIMEOUT; never wait much longer
            await asyncio.wait(pending, timeout=INTERRUPT_TIMEOUT + 5)
        return len(pending)

    async def recover(self, platform: str, finalise: Callable[[ReplyRecord], Awaitable[None]]) -> int:
        """Finalise replies a crash left pending/streaming: ``finalise`` edits the platform message."""
        records = await self.store.unfinished_replies(platform)
        for record in records:
            try:
                await finalise(record)
            except RelayError as exc:
                log.warning("could not finalise reply %s after a restart: %s", record.id, exc)
            await self.store.update_reply(record.id, state="interrupted", error="interrupted by a restart")
        return len(records)

    # -- one request ----------------------------------------------------------------------------

    async def answer(
        self,
        request: Request,
        sink: Sink,
        *,
        interval: float | None = None,
        budget: EditBudget | None = None,
    ) -> ReplyOutcome:
        """Answer ``request`` into ``sink``.  Never raises a ``RelayError``: the sink shows it."""
        REQUEST_ID.set(request.request_id)
        key = (request.platform, request.channel, request.thread)
        lock = self._locks.setdefault(key, asyncio.Lock())
        self.in_flight += 1
        try:
            async with lock:  # one answer at a time per thread, in arrival order
                return await self._answer(request, sink, interval, budget)
        finally:
            self.in_flight -= 1
            if not lock.locked() and not getattr(lock, "_waiters", None):
                self._locks.pop(key, None)

    async def _answer(
        self, request: Request, sink: Sink, interval: float | None, budget: EditBudget | None
    ) -> ReplyOutcome:
        worst_tokens, worst_cost = self._reservation(request)
        try:
            admission = await self.access.admit(
                request.caller(), reserve_tokens=worst_tokens, reserve_cost=worst_cost
            )
        except Blocked:
            log.info("ignored a request from a blocked caller")
            return ReplyOutcome(state="failed", messages=0)
        except QuotaReached as exc:
            self.metrics.refused.labels(request.platform).inc()
            return await ReplyStream(sink).run(_failing(exc))
        try:
            return await self._answer_admitted(request, sink, interval, budget, admission)
        finally:
            admission.settle()  # after _record: the usage is in the ledger (or there was none)

    def _reservation(self, request: Request) -> tuple[int, float]:
        """A first worst case (tokens, cost), before the history is fitted: the output cap plus
        about 4 characters a token of the question.  ``grow`` makes it exact after routing."""
        question = request.question
        prompt = len(question.text) // 4 if question is not None else 0
        out = request.max_tokens or self.settings.bot_max_tokens
        cost = max((p.info.cost(Usage(prompt, out)) for p in self.router.providers), default=0.0)
        return prompt + out, cost

    async def _answer_admitted(
        self,
        request: Request,
        sink: Sink,
        interval: float | None,
        budget: EditBudget | None,
        admission: Admission,
    ) -> ReplyOutcome:
        opening = asyncio.ensure_future(self.store.open_reply(request.platform, request.channel, request.thread))

        async def save_locator(where: dict[str, object]) -> None:
            await self.store.update_reply(await asyncio.shield(opening), locator=where)

        stream = ReplyStream(
            _Tracked(sink, save_locator),
            interval=self.settings.bot_edit_interval if interval is None else interval,
            budget=budget,
            max_chars=self.settings.bot_message_limit,
        )
        # The first platform call (typing, status, placeholder) is what the user sees first:
        # it goes out while the store and the router do their part.
        starting = asyncio.ensure_future(stream.sink.start())
        try:
            routed = await self._route(request)
            admission.grow(*routed.worst_case())
            await starting
        except RelayError as exc:
            await _settled(starting)
            return await self._refuse(await opening, stream, exc)
        except asyncio.CancelledError:
            await _settled(starting)
            await self._refuse(await opening, stream, StreamInterrupted("The bot", hint="it was restarted; ask again"))
            raise
        reply_id = await opening
        await self.store.update_reply(reply_id, state="streaming")
        started = time.monotonic()  # time to first token is counted from here
        fitted = routed.fitted
        log.info(
            "reply %s: %s/%s, %d turns (%d dropped)",
            reply_id, request.platform, request.channel,
            len(fitted.turns) if fitted else 0, fitted.dropped if fitted else 0,
        )
        try:
            outcome = await stream.run(routed, notes=lambda: routed.notes)
        except asyncio.CancelledError:  # shutdown: the stream tried to show "interrupted"
            if stream.outcome.final_at is not None:  # else stays open: the next start finalises it
                await self.store.update_reply(reply_id, state="interrupted", error="interrupted by shutdown")
            raise
        await self._save_counts()
        await self._record(request, reply_id, routed, outcome, started)
        return outcome

    async def channel_settings(self, platform: str, channel: str) -> dict[str, str]:
        """A channel's own settings: the config file's, overridden by ``/relay config``."""
        rows = dict(self.channel_files.get((platform, channel), {}))
        rows.update(await self.store.channel_settings(platform, channel))
        return rows

    async def _route(self, request: Request) -> Routed:
        question = request.question
        if question is None or not question.text.strip():
            raise EmptyPrompt()
        config = ChannelConfig.from_rows(await self.channel_settings(request.platform, request.channel))
        system = request.system_prompt or config.system_prompt or self.settings.bot_system_prompt
        turns = [Turn("system", system), *request.turns]
        max_tokens = request.max_tokens or config.max_tokens or self.settings.bot_max_tokens
        sampling = self.sampling
        if config.temperature is not None:
            sampling = replace(sampling, temperature=config.temperature)
        await self._load_counts(turns)
        return self.router.answer(
            turns, max_tokens, self.counter, sampling, request.provider, order=config.providers or None
        )

    async def _record(
        self, request: Request, reply_id: int, routed: Routed, outcome: ReplyOutcome, started: float
    ) -> None:
        info, fitted = routed.provider, routed.fitted
        state = {"complete": "done", "partial": "interrupted", "failed": "failed"}[outcome.state]
        if outcome.final_at is None:
            state = "streaming"  # the final edit never landed: the next start finalises it
        await self.store.update_reply(
            reply_id,
            state=state,
            provider=info.name if info else None,
            model=info.model if info else None,
            error=outcome.error.user_message if outcome.error else None,
        )
        usage, cost = Usage(0, 0), 0.0
        if info is not None and fitted is not None:
            usage = outcome.usage or Usage(fitted.prompt_tokens, tokens.count(outcome.text) if outcome.text else 0)
            cost = info.cost(usage)
            await self.store.record_usage(
                UsageRecord(
                    platform=request.platform,
                    provider=info.name,
                    model=info.model,
                    user_id=request.user_id,
                    channel=request.channel,
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    cost_usd=cost,
                    reply_id=reply_id,
                )
            )
        self.metrics.observe(
            request.platform, outcome, info, started, usage.prompt_tokens, usage.completion_tokens, cost
        )
        question = request.question
        if request.conversation_key and outcome.text and question is not None:
            await self.store.add_turns(request.conversation_key, [question, Turn("assistant", outcome.text)])
        if outcome.error is not None:
            log.warning("reply %s ended %s: %s", reply_id, outcome.state, outcome.error)

    async def _refuse(self, reply_id: int, stream: ReplyStream, error: RelayError) -> ReplyOutcome:
        """Finish a reply that could not start, with the error as its note."""
        outcome = await stream.run(_failing(error))
        await self.store.update_reply(reply_id, state="failed", error=error.user_message)
        self.metrics.errors.labels(type(error).__name__).inc()
        return outcome

    # -- token-count cache ---------------------------------------------------------------------

    async def _load_counts(self, turns: Sequence[Turn]) -> None:
        """Seed the in-memory count cache from the store for ids it does not know."""
        missing = {
            t.message_id: t for t in turns if t.message_id and not self.counter.known(t.message_id, t.content())
        }
        if not missing:
            return
        for mid, (dig, n) in (await self.store.cached_counts(list(missing))).items():
            content = missing[mid].content()
            if tokens.digest(content) == dig:
                self.counter.remember(mid, content, n)

    async def _save_counts(self) -> None:
        fresh = self.counter.take_fresh()
        if fresh:
            await self.store.save_counts([(mid, tokens.digest(text), n) for mid, text, n in fresh])


async def _settled(task: asyncio.Future[Any]) -> None:
    """Wait for ``task`` to end, whatever its outcome (the caller is failing the reply anyway)."""
    if not task.done():
        await asyncio.wait({task})
    if not task.cancelled() and task.exception() is not None:
        log.warning("the reply could not start: %s", task.exception())


async def _failing(error: RelayError):  # type: ignore[no-untyped-def]
    """An answer stream that fails at once: drives a sink straight to its error state."""
    raise error
    yield  # pragma: no cover - makes this an async generator
