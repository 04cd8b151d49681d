"""Summarised history (``BOT_HISTORY=summary``): a short summary stands in for the turns left out.

When the provider expected to answer (the router's first plan) cannot hold the whole
conversation, ``Summaries.apply``:

1. fits the conversation again with room set aside for a summary (``room``): that decides which
   turns are left out;
2. takes the conversation's summary of exactly those turns from the store, or extends the stored
   one with the turns left out since, or writes one anew.  The same provider writes it, through
   ``Router.attempt`` (retries and circuit breaker as for answers), streamed and collected, with
   a fixed summarising prompt and that room as ``max_tokens``; the turns go in pieces that fit
   its window exactly, at most ``MAX_CALLS`` calls per question (beyond, the oldest turns stay out of the
   summary too, and the note says so);
3. appends the summary to the system prompt and fits again in the real window: the exact count
   includes it.  If even that does not fit, the plainly trimmed plan stays.

Each summary call is recorded in the ledger as a provider call of its own (usage reports, daily
budgets); ``relay_history_summaries{result}`` counts summaries reused, extended, new and failed.  A summary that cannot be made (a provider error, a timeout, the store) costs one log
line: the answer goes on with the history trimmed as usual ("earlier messages were left out").

The cache: one row per conversation, the summary and the fingerprints of the turns it covers.
It is reused while the turns left out are the same, extended when more are left out (the oldest
may since have fallen out of what the platform's history reader reads: they stay covered), and
written anew otherwise (a covered turn was edited, or fewer turns are left out now).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from . import tokens
from .conversation import Fitted, Turn, fit
from .errors import ProviderError, RelayError, WindowTooSmall
from .ledger import Ledger
from .providers.base import ChatRequest, Sampling, Usage
from .providers.router import Plan, Routed, Router
from .store import Store, Summary
from .tokens import TokenCounter

log = logging.getLogger(__name__)

PROMPT = (
    "You summarise the earlier part of a team chat conversation between users and an assistant, so "
    "that the assistant can carry on without it. Keep what later messages may rely on: the questions, "
    "the answers and decisions, names, numbers, code identifiers and anything still open. Write only "
    "the summary, in plain sentences, at most 200 words."
)
#: What the summary follows in the system prompt of the answer.
HEADER = "\n\nSummary of the earlier part of this conversation (its messages are not shown):\n"
#: Between the summary so far and the turns to add, in a summary call that extends one.
SO_FAR = "Summary so far:\n{summary}\n\nMessages that follow it:\n\n"
ROOM = 400  # tokens: max_tokens of a summary call, and the most a summary takes in an answer's window
MAX_CALLS = 4  # summary calls per question
#: A summary call leaves out this fraction of the window more than needed (1/4), so that the next
#: questions find the turns they must leave out summarised already.
AHEAD = 4
TIMEOUT = 30.0  # seconds one summary call may take, retries included
#: With summaries on, how much more history than the largest window the platforms read.
READ_FACTOR = 4
_JOIN = 3  # tokens a line may gain when joined to its label and neighbours (BPE merges)


@dataclass(frozen=True, slots=True)
class Asker:
    """Whose answer the summary is for: the cache key and the ledger's columns."""

    conversation: str  # "slack:C1:1.0", "terminal:s"
    platform: str
    user: str | None
    channel: str
    request_id: int | None = None


def room(window: int) -> int:
    """The longest summary, in tokens, for a window: ``ROOM``, or an eighth of a small window."""
    return min(ROOM, window // 8)


def fingerprint(turn: Turn) -> str:
    return tokens.digest(f"{turn.role}\x00{turn.message_id or ''}\x00{turn.content()}")


class Fingerprints:
    """``fingerprint`` remembered per message id: a long conversation's turns are hashed once, not
    on every question (comparing the text is ~20 times cheaper than hashing it again)."""

    def __init__(self, max_entries: int = 200_000) -> None:
        #: message id -> role, author, text, fingerprint
        self._known: dict[str, tuple[str, str | None, str, str]] = {}
        self._max = max_entries

    def of(self, turn: Turn) -> str:
        key = turn.message_id
        known = self._known.get(key) if key is not None else None
        if known is not None and known[0] == turn.role and known[1] == turn.author and known[2] == turn.text:
            return known[3]
        print_ = fingerprint(turn)
        if key is not None:
            if len(self._known) >= self._max:
                self._known.pop(next(iter(self._known)))
            self._known[key] = (turn.role, turn.author, turn.text, print_)
        return print_


def label(turn: Turn) -> str:
    """What a turn's line in a summary call's transcript starts with (a user turn in a shared
    channel starts with its author already)."""
    if turn.role == "assistant":
        return "Assistant: "
    return "" if turn.author else "User: "


def covered(covers: Sequence[str], prints: Sequence[str]) -> tuple[int, int] | None:
    """How a stored summary covering ``covers`` stands to the turns before the question now
    (``prints``, oldest first): (how many of them it accounts for, from the first; how many of those
    it summarises: fewer when it left the oldest out), or None when it cannot be used (its last
    turn is not among them, or a turn it covers differs now: edited, or another conversation's)."""
    if not covers or covers[-1] not in prints:
        return None
    end = len(prints) - prints[::-1].index(covers[-1])  # just after the last covered turn
    overlap = min(end, len(covers))
    if list(prints[end - overlap : end]) != list(covers[len(covers) - overlap :]):
        return None
    return end, overlap


class Summaries:
    def __init__(self, store: Store, router: Router, ledger: Ledger) -> None:
        self.store = store
        self.router = router
        self.ledger = ledger
        self.fingerprints = Fingerprints()

    async def apply(
        self, routed: Routed, turns: Sequence[Turn], max_tokens: int, counter: TokenCounter, asker: Asker
    ) -> None:
        """Replace ``routed``'s first plan by one whose left-out turns are summarised, when it
        leaves turns out and a summary fits; otherwise (or on any failure) leave it as it is."""
        plan = routed.first
        if plan is None or not plan.fitted.dropped or plan.fitted.cut_tokens:
            return
        if not turns or turns[0].role != "system" or not self.router.breaker(plan.provider.info.name).ready():
            return
        try:
            better = await self._summarised(plan, turns, max_tokens, counter, asker)
        except (RelayError, TimeoutError) as exc:
            log.warning("could not summarise the earlier messages, leaving them out: %s", str(exc) or "timed out")
            self._count("failed")
            return
        if better is not None:
            routed.replace_first(better)

    async def _summarised(
        self, plan: Plan, turns: Sequence[Turn], max_tokens: int, counter: TokenCounter, asker: Asker
    ) -> Plan | None:
        info = plan.provider.info
        window, reserve = info.context_window, min(max_tokens, info.context_window // 2)
        set_aside = room(window) + tokens.count(HEADER) + _JOIN
        narrow = _fit(turns, window - set_aside, reserve, counter, info.date_preamble)
        if narrow is None or not narrow.dropped:
            return None
        question = narrow.turns[-1]
        history = list(turns[1 : 1 + narrow.dropped + len(narrow.turns) - 2])  # the turns before the question
        prints = [self.fingerprints.of(t) for t in history]
        stored = await self.store.summary(asker.conversation)
        known = covered(stored.covers, prints) if stored is not None else None
        if stored is not None and known is not None and known[0] >= narrow.dropped:
            (end, summarised), text = known, stored.text  # it covers what must be left out: no call
            self._count("reused")
        else:  # a call: leave out more than needed, so that the next questions can reuse it
            ahead = _fit(turns, window - set_aside - window // AHEAD, reserve, counter, info.date_preamble)
            end = (ahead or narrow).dropped
            text, summarised = await self._summary_of(history[:end], prints[:end], stored, known, plan, counter, asker)
        system = replace(turns[0], text=turns[0].text + HEADER + text, message_id=None)
        final = fit([system, *history[end:], question], window, reserve, counter, date_preamble=info.date_preamble)
        if final.dropped or final.cut_tokens:
            log.info("the summary of the earlier messages does not fit %s's window: they are left out", info.name)
            return None
        fitted = Fitted(final.turns, end, 0, final.prompt_tokens, summarised=summarised)
        asked = plan.max_tokens
        if info.window_includes_output:
            asked = max(1, min(asked, window - final.prompt_tokens))
        return replace(plan, fitted=fitted, max_tokens=asked)

    async def _summary_of(
        self,
        left_out: list[Turn],
        prints: list[str],
        stored: Summary | None,
        known: tuple[int, int] | None,
        plan: Plan,
        counter: TokenCounter,
        asker: Asker,
    ) -> tuple[str, int]:
        """A summary of ``left_out``: the stored one extended (``known``: how it covers their
        beginning), or a new one; and how many of the turns it covers."""
        name = plan.provider.info.name
        if stored is not None and known is not None:
            end, overlap = known
            pieces = self._pieces(left_out[end:], plan, counter)
            if len(pieces) <= MAX_CALLS:
                text = await self._write(pieces, stored.text, plan, asker)
                await self._keep(asker, Summary((*stored.covers, *prints[end:]), text, name))
                self._count("extended")
                return text, overlap + len(prints) - end
        pieces = self._pieces(left_out, plan, counter)[:MAX_CALLS]
        pieces.reverse()  # packed newest first: written oldest first
        text = await self._write(pieces, None, plan, asker)
        count = sum(len(p) for p in pieces)
        await self._keep(asker, Summary(tuple(prints[len(prints) - count :]), text, name))
        self._count("new")
        return text, count

    def _pieces(self, turns: list[Turn], plan: Plan, counter: TokenCounter) -> list[list[str]]:
        """``turns`` as transcript lines in pieces a summary call can hold, packed from the newest
        (so ``[:MAX_CALLS]`` keeps the newest); each piece's lines oldest first."""
        info = plan.provider.info
        longest = room(info.context_window)
        fixed = tokens.prompt_tokens([PROMPT, ""], date_preamble=info.date_preamble) + longest  # the answer
        fixed += tokens.count(SO_FAR) + longest + _JOIN  # the summary so far (from the second call on)
        space = info.context_window - fixed
        if space < 64:
            raise WindowTooSmall(f"{info.name}'s window leaves no room to summarise")
        pieces: list[list[str]] = []
        piece: list[str] = []
        used = 0
        for turn in reversed(turns):
            content, start = turn.content(), label(turn)
            text = start + content
            cost = counter.count(content, turn.message_id) + tokens.count(start) + _JOIN
            if cost > space:
                text, cost = clip(text, space - _JOIN), space
            if piece and used + cost > space:
                pieces.append(piece)
                piece, used = [], 0
            piece.insert(0, text)
            used += cost
        if piece:
            pieces.append(piece)
        return pieces

    async def _write(self, pieces: list[list[str]], so_far: str | None, plan: Plan, asker: Asker) -> str:
        """One summary call per piece, each extending the summary so far."""
        summary = so_far
        for piece in pieces:
            transcript = "\n\n".join(piece)
            content = SO_FAR.format(summary=summary) + transcript if summary else transcript
            summary = await self._call(content, plan, asker)
        assert summary is not None
        return summary

    async def _call(self, content: str, plan: Plan, asker: Asker) -> str:
        info = plan.provider.info
        turns = [Turn("system", PROMPT), Turn("user", content)]
        prompt = tokens.prompt_tokens([PROMPT, content], date_preamble=info.date_preamble)
        longest = room(info.context_window)
        if prompt + longest > info.context_window:  # the pieces are sized with margins: never expected
            raise WindowTooSmall(f"a summary request of {prompt} tokens does not fit {info.name}'s window")
        request = ChatRequest(turns, longest, Sampling(), time.monotonic() + TIMEOUT, plan.model)
        parts: list[str] = []
        usage: Usage | None = None
        deltas = self.router.attempt(plan.provider, request, fallback=True)
        try:
            async with asyncio.timeout(TIMEOUT):
                async for delta in deltas:
                    parts.append(delta.text)
                    usage = delta.usage or usage
        finally:
            closer = getattr(deltas, "aclose", None)  # the HTTP response, when it timed out mid-stream
            if closer is not None:
                await closer()
        text = "".join(parts).strip()
        if usage is None:
            usage = Usage(prompt, tokens.count(text))
        await self.ledger.record_call(asker.platform, asker.user, asker.channel, asker.request_id, info, usage)
        if not text:
            raise ProviderError(info.display, "empty summary", hint="it returned no text")
        return clip(text, longest)

    def _count(self, result: str) -> None:
        self.ledger.metrics.summaries.labels(result).inc()

    async def _keep(self, asker: Asker, summary: Summary) -> None:
        try:
            await self.store.save_summary(asker.conversation, summary)
        except RelayError as exc:  # used for this answer all the same; the next one writes it again
            log.warning("could not store the summary of the earlier messages: %s", exc)


def _fit(turns: Sequence[Turn], window: int, reserve: int, counter: TokenCounter, preamble: bool) -> Fitted | None:
    """``turns`` fitted to ``window`` without cutting the question; None when it would be cut."""
    try:
        fitted = fit(turns, window, reserve, counter, date_preamble=preamble)
    except WindowTooSmall:
        return None
    return None if fitted.cut_tokens else fitted


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` tokens (its head and tail, the middle marked), exactly counted."""
    ids = tokens.encode(text)
    if len(ids) <= limit:
        return text
    marker = " […] "
    keep = limit - tokens.count(marker) - 2
    while keep > 0:
        tail = keep // 4  # a quarter from the end: how a long message ends often matters
        out = tokens.decode(ids[: keep - tail]) + marker + tokens.decode(ids[len(ids) - tail :] if tail else [])
        if tokens.count(out) <= limit:
            return out
        keep -= 4
    return ""
