"""Exact Llama 3 token counts, offline.

The tokenizer file (``bot/data/llama3_tokenizer.model``, from Meta's
llama-models 0.3.0, see ``bot/data/NOTICE``) is loaded with tiktoken once per
process.  User text is always encoded as plain text: a typed ``<|eot_id|>``
counts as the seven ordinary tokens it is made of and never raises.

Chat-template overhead (``reference/providers.md``): 1 BOS, 5 tokens per
message (header + ``<|eot_id|>``), 4 for the generation prompt and, when the
provider's template adds it, a 20-token date preamble in the system block.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
from collections.abc import Sequence
from importlib import resources

import tiktoken
from tiktoken.load import load_tiktoken_bpe

PAT_STR = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
NAMED_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
    "<|image|>",
]
NUM_SPECIALS = 256
BASE_VOCAB = 128_000

BOS = 1
PER_MESSAGE = 5
GENERATION_PROMPT = 4
DATE_PREAMBLE = 20

# Meta splits input so tiktoken's regex never sees pathological runs.
_MAX_CHUNK = 400_000
_MAX_RUN = 25_000
_LONG_RUN = re.compile(rf"\s{{{_MAX_RUN},}}|\S{{{_MAX_RUN},}}")


_loading = threading.Lock()
_ready: list[tiktoken.Encoding] = []  # the loaded encoding, once there is one


def encoding() -> tiktoken.Encoding:
    """The Llama 3 encoding (128,256 ids).  Loading takes about half a second.

    Thread-safe: ``open_service`` loads it in a thread while the platforms
    connect (``warm_up``); a caller that comes meanwhile waits for that load.
    Once loaded, no lock is taken (this is on every count).
    """
    if _ready:
        return _ready[0]
    with _loading:
        if not _ready:
            _ready.append(_load())
        return _ready[0]


async def warm_up() -> None:
    """Load the tokenizer off the event loop, so the first answer does not pay for it."""
    await asyncio.to_thread(encoding)


def _load() -> tiktoken.Encoding:
    path = resources.files("bot.data") / "llama3_tokenizer.model"
    with resources.as_file(path) as real_path:
        ranks = load_tiktoken_bpe(str(real_path))
    reserved = [f"<|reserved_special_token_{i}|>" for i in range(2, NUM_SPECIALS - len(NAMED_SPECIALS) + 2)]
    specials = {tok: BASE_VOCAB + i for i, tok in enumerate(NAMED_SPECIALS + reserved)}
    return tiktoken.Encoding(
        name="llama3", pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens=specials
    )


def _chunks(text: str) -> list[str]:
    if len(text) <= _MAX_RUN:
        return [text]
    pieces: list[str] = []
    for start in range(0, len(text), _MAX_CHUNK):
        block = text[start : start + _MAX_CHUNK]
        last = 0
        for match in _LONG_RUN.finditer(block):
            pieces.append(block[last : match.start()])
            run = match.group()
            pieces.extend(run[i : i + _MAX_RUN] for i in range(0, len(run), _MAX_RUN))
            last = match.end()
        pieces.append(block[last:])
    return [p for p in pieces if p]


def encode(text: str) -> list[int]:
    """Token ids of ``text`` as plain text (special-token strings included)."""
    enc = encoding()
    if len(text) <= _MAX_RUN:
        return enc.encode_ordinary(text)
    return [tok for piece in _chunks(text) for tok in enc.encode_ordinary(piece)]


def decode(ids: Sequence[int]) -> str:
    return encoding().decode(list(ids))


def count(text: str) -> int:
    return len(encode(text))


def digest(text: str) -> str:
    """A short stable fingerprint of a message text, for the persistent count cache."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


def fixed_overhead(*, date_preamble: bool = True) -> int:
    """Tokens the chat template adds whatever the messages: BOS + generation prompt (+ preamble)."""
    return BOS + GENERATION_PROMPT + (DATE_PREAMBLE if date_preamble else 0)


def prompt_tokens(contents: Sequence[str], *, date_preamble: bool = True, has_system: bool = True) -> int:
    """Exact prompt size of a rendered message list (contents in order).

    With the date preamble, Llama 3.1's template always emits a system block,
    so a list without a system message still pays its 5-token header.
    """
    total = fixed_overhead(date_preamble=date_preamble)
    total += sum(PER_MESSAGE + count(c) for c in contents)
    if date_preamble and not has_system:
        total += PER_MESSAGE
    return total


class TokenCounter:
    """Counts message texts, remembering the count per platform message id.

    The cache holds the text it counted, so an edited message is counted again.
    Messages without an id are counted every time (they are rare: the newest
    question of a one-shot ``ask``).
    """

    def __init__(self, max_entries: int = 200_000) -> None:
        self._cache: dict[str, tuple[str, int]] = {}
        self._max = max_entries
        self.hits = 0
        self.misses = 0
        #: counts made since the last ``take_fresh``, for the persistent cache
        self._fresh: list[tuple[str, str, int]] = []

    def count(self, text: str, message_id: str | None = None) -> int:
        if message_id is not None:
            cached = self._cache.get(message_id)
            if cached is not None and (cached[0] is text or cached[0] == text):
                self.hits += 1
                return cached[1]
        n = count(text)
        self.misses += 1
        if message_id is not None:
            if len(self._cache) >= self._max:
                self._cache.pop(next(iter(self._cache)))
            self._cache[message_id] = (text, n)
            self._fresh.append((message_id, text, n))
        return n

    def known(self, message_id: str, text: str) -> bool:
        cached = self._cache.get(message_id)
        return cached is not None and cached[0] == text

    def take_fresh(self) -> list[tuple[str, str, int]]:
        fresh, self._fresh = self._fresh, []
        return fresh

    def remember(self, message_id: str, text: str, n: int, *, fresh: bool = False) -> None:
        """Seed the cache from a persisted count (``fresh``: one made elsewhere, to persist)."""
        self._cache[message_id] = (text, n)
        if fresh:
            self._fresh.append((message_id, text, n))
