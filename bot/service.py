"""Handle one request end to end, the same way for every front end.

An adapter turns a platform event into a ``Request`` (the conversation so far,
ending with the user's question) and a ``Sink``; ``RelayService.answer`` does
the rest: fit the history to the provider's window, stream the answer through
the router into a ``ReplyStream``, keep the reply's state, usage and cost in
the store, and return what happened.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import tokens
from .conversation import Turn
from .errors import EmptyPrompt, RelayError
from .pacing import EditBudget
from .providers.base import Sampling, Usage
from .providers.router import Router
from .reply import ReplyOutcome, ReplyStream, Sink
from .settings import Settings
from .store import SqliteStore, UsageRecord
from .tokens import TokenCounter

log = logging.getLogger(__name__)


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
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def question(self) -> Turn | None:
        return self.turns[-1] if self.turns and self.turns[-1].role == "user" else None


def sampling_from(settings: Settings) -> Sampling:
    return Sampling(
        temperature=settings.bot_temperature,
        top_p=settings.bot_top_p,
        top_k=settings.bot_top_k,
        min_p=settings.bot_min_p,
        seed=settings.bot_seed,
        stop=tuple(settings.bot_stop),
        presence_penalty=settings.bot_presence_penalty,
        frequency_penalty=settings.bot_frequency_penalty,
        repetition_penalty=settings.bot_repetition_penalty,
    )


class RelayService:
    def __init__(
        self,
        settings: Settings,
        store: SqliteStore,
        router: Router,
        counter: TokenCounter | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.router = router
        self.counter = counter or TokenCounter()
        self.sampling = sampling_from(settings)
        self._locks: dict[tuple[str, str, str | None], asyncio.Lock] = {}
        self.in_flight = 0

    async def answer(
        self,
        request: Request,
        sink: Sink,
        *,
        interval: float | None = None,
        budget: EditBudget | None = None,
    ) -> ReplyOutcome:
        """Answer ``request`` into ``sink``.  Never raises a ``RelayError``: the sink shows it."""
        key = (request.platform, request.channel, request.thread)
        lock = self._locks.setdefault(key, asyncio.Lock())
        self.in_flight += 1
        try:
            async with lock:  # one answer at a time per thread, in arrival order
                return await self._answer(request, sink, interval, budget)
        finally:
            self.in_flight -= 1
            if not lock.locked() and not lock._waiters:  # type: ignore[attr-defined]
                self._locks.pop(key, None)

    async def _answer(
        self, request: Request, sink: Sink, interval: float | None, budget: EditBudget | None
    ) -> ReplyOutcome:
        reply_id = await self.store.open_reply(request.platform, request.channel, request.thread)
        stream = ReplyStream(
            sink,
            interval=self.settings.bot_edit_interval if interval is None else interval,
            budget=budget,
            max_chars=self.settings.bot_message_limit,
        )
        question = request.question
        if question is None or not question.text.strip():
            return await self._refuse(reply_id, stream, EmptyPrompt())
        turns = [Turn("system", request.system_prompt or self.settings.bot_system_prompt), *request.turns]
        max_tokens = request.max_tokens or self.settings.bot_max_tokens
        try:
            await self._load_counts(turns)
            routed = self.router.answer(turns, max_tokens, self.counter, self.sampling, request.provider)
            await sink.start()
        except RelayError as exc:
            return await self._refuse(reply_id, stream, exc)
        await self.store.update_reply(reply_id, state="streaming")
        log.info(
            "reply %s: %s/%s, %d turns (%d dropped)",
            request.request_id,
            request.platform,
            request.channel,
            len(routed.fitted.turns) if routed.fitted else 0,
            routed.fitted.dropped if routed.fitted else 0,
        )
        outcome = await stream.run(routed, notes=routed.fitted.notes if routed.fitted else ())
        await self._save_counts()
        info = routed.provider
        state = {"complete": "done", "partial": "interrupted", "failed": "failed"}[outcome.state]
        await self.store.update_reply(
            reply_id,
            state=state,
            provider=info.name if info else None,
            model=info.model if info else None,
            error=outcome.error.user_message if outcome.error else None,
        )
        if info is not None and routed.fitted is not None:
            usage = outcome.usage or Usage(
                routed.fitted.prompt_tokens, tokens.count(outcome.text) if outcome.text else 0
            )
            await self.store.record_usage(
                UsageRecord(
                    platform=request.platform,
                    provider=info.name,
                    model=info.model,
                    user_id=request.user_id,
                    channel=request.channel,
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    cost_usd=info.cost(usage),
                    reply_id=reply_id,
                )
            )
        if request.conversation_key and outcome.text:
            await self.store.add_turns(
                request.conversation_key, [question, Turn("assistant", outcome.text)]
            )
        if outcome.error is not None:
            log.warning("reply %s ended %s: %s", request.request_id, outcome.state, outcome.error)
        return outcome

    async def _refuse(self, reply_id: int, stream: ReplyStream, error: RelayError) -> ReplyOutcome:
        """Finish a reply that could not start, with the error as its note."""

        async def nothing():  # an empty answer stream that fails at once
            raise error
            yield  # pragma: no cover

        outcome = await stream.run(nothing())
        await self.store.update_reply(reply_id, state="failed", error=error.user_message)
        return outcome

    async def _load_counts(self, turns: Sequence[Turn]) -> None:
        """Seed the in-memory count cache from the store for ids it does not know."""
        missing = {t.message_id: t for t in turns if t.message_id and not self.counter.known(t.message_id, t.content())}
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
