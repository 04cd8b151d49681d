"""Answer requests end to end, the same way for every platform: the inbound pipeline.

``handle`` takes an adapter's ``Incoming`` and runs, in this order:

1. allowlists and block lists (no platform call, no write: a caller who may not ask costs
   nothing);
2. the adapter's relevance check, if any (e.g. "did the bot answer in this thread?");
3. claim + request record, one transaction (a redelivered event stops here);
4. quotas (a refusal is shown where the answer would have gone);
5. one answer at a time per conversation, in arrival order;
6. the history, read within the core's token budget with the core's counter;
7. the answer: the first platform call (typing, status, placeholder), then the
   files of the conversation read into their turns (``bot.attachments``), channel
   settings, fit to the provider's window (with ``BOT_HISTORY=summary``, the turns left out
   summarised: ``bot.summary``), stream through the router into a ``ReplyStream``, then the
   request's final state, usage and cost.

``answer`` is step 7 alone (the terminal, tests).  Background tasks live in
``bot.tasks``, the ledger in ``bot.ledger``, restart recovery in
``bot.recovery``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from . import recovery, tokens
from .attachments import FILES_KEY, Attachments
from .access import AccessPolicy, Admission, Caller, DailyUsage
from .channel_config import ChannelConfig, load_file
from .controls import Controls, Press, Streaming
from .controls import key as control_key
from .conversation import Turn
from .errors import Blocked, EmptyPrompt, NothingReadable, QuotaReached, RelayError, StoreUnavailable
from .incoming import Incoming, Platform
from .leases import Leases
from .ledger import Ledger
from .logs import REQUEST_ID
from .metrics import Metrics
from .pacing import EditPacer
from .providers.base import Usage
from .providers.registry import sampling_of
from .providers.router import Routed, Router
from .reply import ReplyOutcome, ReplyStream, Save
from .settings import Settings
from .shared_pacing import edit_budget
from .store import RequestRecord, Store
from .summary import READ_FACTOR, Asker, Summaries
from .surface import Ref, Surface, capability
from .tasks import Tasks
from .tokens import TokenCounter

log = logging.getLogger(__name__)

MIN_HISTORY_BUDGET = 512
#: Replicas (shared database): how often a queued request looks whether its turn has come, and
#: how long at most it waits for the requests of its conversation accepted before it.
ORDER_POLL = 0.1
ORDER_WAIT = 300.0
#: request state for each final reply state
FINAL_STATES = {"complete": "done", "partial": "partial", "failed": "failed", "stopped": "stopped"}


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
    #: a regenerated answer: the provider of the old one goes last (``bot.controls``)
    rotate_from: str | None = None

    @property
    def question(self) -> Turn | None:
        return self.turns[-1] if self.turns and self.turns[-1].role == "user" else None

    def caller(self) -> Caller:
        return Caller(self.platform, self.user_id, self.channel, self.workspace, self.roles)


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
        self.metrics = metrics or Metrics(settings.replica_name())
        self.ledger = Ledger(store, self.metrics)
        self.summaries = Summaries(store, router, self.ledger)
        #: this process: requests it accepted are its own; recovery settles only others'
        self.owner = f"{settings.replica_name()}/{uuid.uuid4().hex[:12]}"
        self.access = AccessPolicy(settings, store, owner=self.owner)
        self.tasks = Tasks(settings.bot_shutdown_grace)
        self.channel_files = load_file(settings.bot_channel_config, settings) if settings.bot_channel_config else {}
        self.sampling = sampling_of(settings)
        self.attachments = Attachments(settings)
        self.leases = Leases(store, self.owner, self._settle_orphans)
        self.controls = Controls(store, self.access, self.metrics, self.owner)
        #: platform name -> connected? (adapters report it; /healthz reads it)
        self.health: dict[str, bool] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._budgets: dict[str, EditPacer] = {}
        self.in_flight = 0

    # -- the port adapters see -------------------------------------------------------------

    @property
    def accepting(self) -> bool:
        return self.tasks.accepting

    def spawn(self, work: Any, name: str | None = None) -> asyncio.Task[Any] | None:
        return self.tasks.spawn(work, name)

    async def drain(self, grace: float | None = None) -> int:
        cancelled = await self.tasks.drain(grace)
        await self.stop()  # heartbeats go on while answers finish, not after
        return cancelled

    async def stop(self) -> None:
        """End the background work: heartbeats, and what shared edit budgets keep up to date."""
        await self.leases.stop()
        await self.controls.close()
        for budget in self._budgets.values():
            await budget.aclose()

    def edit_budget(
        self, key: str, per_minute: float, *, burst: int | None = None, window: float | None = None,
        reserve: bool = False, adapt: bool = False,
    ) -> EditPacer:
        """The edit budget ``key`` names (``slack:T1:chat.update``), made on first use: shared by
        every replica on a shared database, in this process otherwise (``bot.shared_pacing``)."""
        budget = self._budgets.get(key)
        if budget is None:
            budget = edit_budget(
                self.store, key, self.owner, per_minute, burst=burst, window=window, reserve=reserve, adapt=adapt
            )
            self._budgets[key] = budget
        return budget

    def report_health(self, platform: str, up: bool) -> None:
        self.health[platform] = up

    async def window_notes(self) -> list[str]:
        """For the operator at start (serve, chat, ask): each window a server says is smaller than
        configured (used from now on), and each window ``BOT_MAX_TOKENS`` leaves no room in."""
        said = await self.router.check_windows()
        system = await asyncio.to_thread(tokens.count, self.settings.bot_system_prompt)
        return [*said, *self.router.room_notes(self.settings.bot_max_tokens, system)]

    def may_ask(self, caller: Caller) -> bool:
        """Whether ``caller`` is on the allowlists: a slash command refuses politely at once when not.

        A blocked caller passes here and meets silence in ``handle``, as everywhere else.
        """
        return self.access.allowed(caller)

    async def relay_command(self, caller: Caller, text: str) -> str:
        """``/relay …`` as standard Markdown, for the caller's eyes only."""
        from .commands import relay_command  # commands reads the service: imported when used

        return await relay_command(self, caller, text)

    async def usage_today(self, caller: Caller) -> DailyUsage:
        """The caller's usage today and their daily budget (``AccessPolicy.usage_today``)."""
        return await self.access.usage_today(caller)

    def relay_suggestions(self, caller: Caller, text: str) -> list[str]:
        """Completions of a half-typed ``/relay`` text (``bot.commands.suggestions``)."""
        from .commands import suggestions  # commands reads the service: imported when used

        return suggestions(self, caller, text)

    async def press(self, platform: Platform, press: Press) -> str | None:
        """A control pressed on a reply (``bot.controls``): what to tell the presser privately, or None."""
        return await self.controls.press(platform, press, self._answer_again)

    async def reanswer(
        self, platform: Platform, reply_key: str, incoming: Incoming, edit: str, asked_at: float
    ) -> bool:
        """The asker edited a question: answer it again into its answer (``bot.controls``)."""
        return await self.controls.reanswer(platform, reply_key, incoming, edit, asked_at, self._answer_again)

    async def streaming_at(
        self, platform: str, ref: Ref | None, where: Mapping[str, Any],
        asker: Callable[[dict[str, Any]], str | None],
    ) -> Streaming | None:
        """The answer streaming into the message ``ref`` (a 🛑 reaction's target), if any."""
        return await self.controls.streaming_at(platform, ref, where, asker)

    async def _answer_again(self, request_id: int, incoming: Incoming) -> None:
        self.spawn(self._process(request_id, incoming), name=f"again-{request_id}")

    async def recover(self, platform: Platform) -> int:
        """Settle what a restart (or a replica that died) left open on ``platform``, and with a
        shared database keep doing so (``bot.leases``, ``bot.recovery``)."""
        await self.controls.show_feedback()  # /metrics shows the stored votes from the start
        return await self.leases.start(platform)

    async def _settle_orphans(self, platform: Platform, alive_since: float) -> int:
        return await recovery.recover(self.store, platform, self.owner, self._reanswer, alive_since)

    @functools.cached_property
    def _history_budget(self) -> int:
        s = self.settings
        windows = [s.provider(name).context_window for name in s.provider_order()]
        budget = max(max(windows, default=8192) - s.bot_max_tokens, MIN_HISTORY_BUDGET)
        return budget * READ_FACTOR if s.bot_history == "summary" else budget  # older turns: summarised

    def history_budget(self) -> int:
        """The most history any configured provider could take, in tokens; ``READ_FACTOR`` times that
        with summaries on (the older part is summarised).  Settings do not change while the service
        runs: worked out once, off every question's path to its first call."""
        return self._history_budget

    # -- the pipeline ----------------------------------------------------------------------

    async def handle(self, incoming: Incoming) -> ReplyOutcome | None:
        """Run one incoming event through the pipeline (see the module docstring)."""
        caller = incoming.caller
        if not self.access.admits(caller):
            log.info("ignored a request from a caller not allowed to ask")
            return None
        if incoming.relevant is not None and not await incoming.relevant():
            return None
        keys = [f"{caller.platform}:{kind}:{value}" for kind, value in incoming.keys]
        try:
            request_id = await self.store.accept(
                keys, caller.platform, incoming.conversation, incoming.origin, self.owner
            )
        except StoreUnavailable as exc:  # waited out BOT_DATABASE_WAIT: say so rather than drop it
            log.error("%s: could not record a question: %s", caller.platform, exc)
            return await ReplyStream(await incoming.open([])).fail(exc)
        if request_id is None:
            log.info("%s: %s delivered again; already handled", caller.platform, keys[0] if keys else "event")
            return None
        return await self._process(request_id, incoming)

    async def _reanswer(self, record: RequestRecord, incoming: Incoming) -> ReplyOutcome | None:
        self.spawn(self._process(record.id, incoming), name=f"recovered-{record.id}")
        return None

    async def _process(self, request_id: int, incoming: Incoming) -> ReplyOutcome | None:
        caller = incoming.caller
        REQUEST_ID.set(f"{caller.platform}-{request_id}")
        try:  # the worst case is reserved now and grown to the real prompt once it is fitted
            admission = await self.access.admit(
                caller, reserve_tokens=self.settings.bot_max_tokens, reserve_cost=self._worst_cost()
            )
        except Blocked:
            await self.store.update_request(request_id, state="ignored")
            return None
        except QuotaReached as exc:
            self.metrics.refused.labels(caller.platform).inc()
            return await self._refuse(request_id, incoming, exc)
        self.in_flight += 1
        try:
            async with self._turn(caller.platform, incoming.conversation, request_id):
                return await self._answer_incoming(request_id, incoming, admission)
        finally:
            await admission.settle()  # after the ledger has the usage (or there was none)
            self.in_flight -= 1

    @asynccontextmanager
    async def _turn(self, platform: str, conversation: str, request_id: int) -> AsyncIterator[None]:
        """One answer at a time per conversation, in arrival order.

        In one process a lock per conversation does it.  Replicas sharing a database wait
        instead until no request of the conversation accepted before this one is open (request
        ids are handed out as questions are accepted); a request left open by a replica that
        died is settled by the takeover (``bot.leases``) within about ``LEASE`` seconds.  A
        request untouched for ``ORDER_STALE`` (its final edit never landed: it stays open for
        the next start) no longer counts, and the wait is bounded by ``ORDER_WAIT`` anyway.
        """
        if self.store.shared:
            await self._wait_for_earlier(platform, conversation, request_id)
            yield
            return
        key = (platform, conversation)
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and not getattr(lock, "_waiters", None):
                self._locks.pop(key, None)

    async def _wait_for_earlier(self, platform: str, conversation: str, request_id: int) -> None:
        deadline = time.monotonic() + ORDER_WAIT
        while await self.store.earlier_open(platform, conversation, request_id):
            if time.monotonic() > deadline:
                log.warning("request %s: an earlier request of its conversation is still open; going ahead", request_id)
                return
            await asyncio.sleep(ORDER_POLL)

    def _worst_cost(self) -> float:
        """The cost of the longest answer at the dearest provider (before the prompt is known)."""
        out = self.settings.bot_max_tokens
        return max((p.info.cost(Usage(0, out)) for p in self.router.providers), default=0.0)

    async def _answer_incoming(
        self, request_id: int, incoming: Incoming, admission: Admission
    ) -> ReplyOutcome | None:
        caller = incoming.caller
        try:
            turns = await incoming.read(self.history_budget(), self.counter)
        except RelayError as exc:
            log.warning("%s: could not read the conversation: %s", caller.platform, exc)
            turns = None
        if turns is None:
            await self.store.update_request(request_id, state="ignored")
            return None
        surface = await incoming.open(turns)
        request = Request(
            caller.platform,
            caller.channel,
            turns,
            thread=incoming.conversation,
            user_id=caller.user,
            workspace=caller.workspace,
            roles=caller.roles,
            provider=incoming.provider,
            conversation_key=incoming.conversation_key,
            request_id=f"{caller.platform}-{request_id}",
            rotate_from=incoming.rotate_from,
        )
        outcome = await self.answer(
            request,
            surface,
            interval=incoming.interval,
            budget=incoming.budget,
            request_id=request_id,
            admission=admission,
            replaces=incoming.replaces,
        )
        if incoming.after is not None:
            await incoming.after(outcome)
        return outcome

    async def _refuse(self, request_id: int, incoming: Incoming, error: RelayError) -> ReplyOutcome:
        surface = await incoming.open([])
        stream = self._stream(surface, request_id, incoming.interval, incoming.budget, controls=False)
        outcome = await stream.fail(error)
        await self._settle(request_id, outcome)
        if incoming.after is not None:
            await incoming.after(outcome)
        return outcome

    # -- one answer --------------------------------------------------------------------------

    async def answer(
        self,
        request: Request,
        surface: Surface,
        *,
        interval: float | None = None,
        budget: EditPacer | None = None,
        request_id: int | None = None,
        admission: Admission | None = None,
        replaces: list[Ref] | None = None,
        stop: asyncio.Event | None = None,
    ) -> ReplyOutcome:
        """Answer ``request`` into ``surface`` (into the messages ``replaces`` names, when given).
        Never raises a ``RelayError``: the reply shows it.

        ``stop`` set (Ctrl-C in the terminal) ends the answer as a Stop press does: the provider's
        stream is closed, the text so far stays with "stopped by you", and its usage is recorded."""
        if request_id is None:
            conversation = request.thread or request.channel
            request_id = await self.store.accept((), request.platform, conversation, {}, self.owner)
            assert request_id is not None  # no keys: nothing to collide with
        REQUEST_ID.set(request.request_id)
        stream = self._stream(surface, request_id, interval, budget, asker=request.user_id)
        if replaces is not None:
            stream.resume(replaces)
        with self.controls.live(request_id, request.platform, stream), _stopped_when(stop, stream):
            return await self._answer(request, stream, request_id, admission)

    async def _answer(
        self, request: Request, stream: ReplyStream, request_id: int, admission: Admission | None
    ) -> ReplyOutcome:
        # The first platform call (typing, status, placeholder) is what the user sees first:
        # it goes out while the store and the router do their part, and is sent before them.
        stream.start()
        try:
            await asyncio.sleep(0)
            routed, file_notes = await self._route(request, request_id)
            if admission is not None:
                await admission.grow(*routed.worst_case())
            await self.store.update_request(request_id, state="answering")
        except RelayError as exc:
            outcome = await stream.fail(exc)
            await self._settle(request_id, outcome)
            return outcome
        except asyncio.CancelledError:
            await stream.interrupted()
            raise
        started = time.monotonic()  # time to first token is counted from here
        fitted = routed.fitted
        log.info(
            "request %s: %s/%s, %d turns (%d dropped)",
            request_id, request.platform, request.channel,
            len(fitted.turns) if fitted else 0, fitted.dropped if fitted else 0,
        )
        try:
            outcome = await stream.run(routed, notes=lambda: [*file_notes, *routed.notes])
        except asyncio.CancelledError:  # shutdown: the stream tried to show "interrupted"
            if stream.outcome.final_at is not None:  # else stays open: the next start finalises it
                await self.store.update_request(request_id, state="partial", error="interrupted by shutdown")
            raise
        await self._save_counts()
        await self.ledger.record(request.platform, request.user_id, request.channel, request_id, routed, outcome, started)
        await self._settle(request_id, outcome, routed)
        question = request.question
        if request.conversation_key and outcome.text and question is not None:
            await self.store.add_turns(request.conversation_key, [question, Turn("assistant", outcome.text)])
        return outcome

    def _stream(
        self, surface: Surface, request_id: int, interval: float | None, budget: EditPacer | None,
        *, asker: str | None = None, controls: bool = True,
    ) -> ReplyStream:
        return ReplyStream(
            surface,
            interval=self.settings.bot_edit_interval if interval is None else interval,
            budget=budget,
            max_chars=self.settings.bot_message_limit,
            save=self._saver(request_id, surface),
            controls=control_key(request_id, asker) if controls else None,
        )

    def _saver(self, request_id: int, surface: Surface) -> Save:
        """Saves where the reply's messages are as they appear (and, once, where the reply goes)."""
        place: dict[str, Any] | None = capability(surface, "place", {})

        async def save(messages: list[Ref], shown: str, part: int) -> None:
            nonlocal place
            if place is not None:
                await self.store.update_request(request_id, messages=messages, shown=shown, part=part, place=place)
                place = None
            else:
                await self.store.update_request(request_id, messages=messages, shown=shown, part=part)

        return save

    async def _settle(self, request_id: int, outcome: ReplyOutcome, routed: Routed | None = None) -> None:
        """The request's final state (or still "answering" when the final text never landed)."""
        info = routed.provider if routed is not None else None
        shown = outcome.final_at is not None or outcome.undeliverable  # else the next start settles it
        state = FINAL_STATES[outcome.state] if shown else "answering"
        await self.store.update_request(
            request_id,
            state=state,
            provider=info.name if info else None,
            model=info.model if info else None,
            error=outcome.error.user_message if outcome.error else None,
        )
        if outcome.error is not None:
            if routed is None:  # with a route, the ledger counted it
                self.metrics.errors.labels(type(outcome.error).__name__).inc()
            log.warning("request %s ended %s: %s", request_id, outcome.state, outcome.error)

    async def channel_settings(self, platform: str, channel: str) -> dict[str, str]:
        """A channel's own settings: the config file's, overridden by ``/relay config``."""
        rows = dict(self.channel_files.get((platform, channel), {}))
        rows.update(await self.store.channel_settings(platform, channel))
        return rows

    async def _route(self, request: Request, request_id: int) -> tuple[Routed, list[str]]:
        """The routed answer, and notes about the question's files (``bot.attachments``)."""
        turns, said = await self.attachments.read(request.turns)
        question = turns[-1] if turns and turns[-1].role == "user" else None
        if question is None or not question.text.strip():
            raise NothingReadable(said) if said else EmptyPrompt()
        notes = [f"({note})" for note in said]
        config = ChannelConfig.from_rows(await self.channel_settings(request.platform, request.channel))
        system = request.system_prompt or config.system_prompt or self.settings.bot_system_prompt
        turns = [Turn("system", system), *turns]
        max_tokens = request.max_tokens or config.max_tokens or self.settings.bot_max_tokens
        sampling = self.sampling
        if config.temperature is not None:
            sampling = replace(sampling, temperature=config.temperature)
        await self._load_counts(turns)
        await self._count_files(turns)
        order: Sequence[str] | None = config.providers or None
        if request.rotate_from:
            order = rotated(order or [p.info.name for p in self.router.providers], request.rotate_from)
        for note in await self.router.check_windows():  # the first answer asks a local server its window
            log.warning("%s", note)
        routed = self.router.answer(
            turns, max_tokens, self.counter, sampling, request.provider, order=order, model=config.model
        )
        if self.settings.bot_history == "summary":
            asker = Asker(
                request.conversation_key or f"{request.platform}:{request.thread or request.channel}",
                request.platform, request.user_id, request.channel, request_id,
            )
            await self.summaries.apply(routed, turns, max_tokens, self.counter, asker)
        return routed, notes

    # -- token-count cache -------------------------------------------------------------------

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

    async def _count_files(self, turns: Sequence[Turn]) -> None:
        """Messages with files are long texts (100 ms per 400k characters): counted in a thread,
        off the event loop, so that the fit finds them cached."""
        for turn in turns:
            key, content = turn.message_id, turn.content()
            if key and key.endswith(FILES_KEY) and not self.counter.known(key, content):
                n = await asyncio.to_thread(tokens.count, content)
                self.counter.remember(key, content, n, fresh=True)

    async def _save_counts(self) -> None:
        fresh = self.counter.take_fresh()
        if fresh:
            await self.store.save_counts([(mid, tokens.digest(text), n) for mid, text, n in fresh])


def rotated(order: Sequence[str], last: str) -> list[str]:
    """``order`` rotated so that ``last`` comes last (a regenerated answer asks the next provider
    first); unchanged when ``last`` is not in it."""
    names = list(order)
    if last not in names:
        return names
    n = names.index(last) + 1
    return names[n:] + names[:n]


@contextmanager
def _stopped_when(stop: asyncio.Event | None, stream: ReplyStream) -> Iterator[None]:
    """While the answer lasts, ``stop`` set stops it as a Stop press by its asker would."""
    if stop is None:
        yield
        return

    async def watch() -> None:
        await stop.wait()
        stream.stop("you")

    watcher = asyncio.ensure_future(watch())
    try:
        yield
    finally:
        watcher.cancel()
