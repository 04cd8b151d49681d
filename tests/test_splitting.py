"""Cutting long answers into messages: safe boundaries, fences closed and reopened, nothing lost."""

from __future__ import annotations

import random

import pytest

from bot.splitting import cut, join_parts, open_fence


def split_all(text: str, limit: int) -> list[str]:
    parts, rest, reopen = [], text, ""
    while len(reopen + rest) > limit:
        c = cut(reopen + rest, limit)
        parts.append(c.head)
        rest, reopen = (reopen + rest)[c.consumed :], c.reopen
    parts.append(reopen + rest)
    return parts


def test_prefers_paragraph_boundaries():
    text = "First paragraph is here.\n\nSecond paragraph is a bit longer than the first one."
    c = cut(text, 40)
    assert c.head == "First paragraph is here.\n\n"
    assert c.reopen == ""


def test_closes_and_reopens_an_open_code_fence():
    code = "\n".join(f"print({i})" for i in range(40))
    text = f"Here is code:\n\n```python\n{code}\n```\nDone."
    parts = split_all(text, 120)
    assert len(parts) > 2
    for part in parts:
        assert len(part) <= 120
        assert open_fence(part) is None  # every message renders with balanced fences
    assert parts[1].startswith("```python\n")
    assert join_parts(parts) == text


@pytest.mark.parametrize("seed", range(20))
def test_random_texts_round_trip(seed: int):
    rng = random.Random(seed)
    words = ["alpha", "beta.", "gamma\n", "\n\n", "```js\nlet x = 1;\n```\n", "ünïcödé", "😀", "x" * 50]
    text = " ".join(rng.choice(words) for _ in range(rng.randint(50, 600)))
    limit = rng.choice([80, 200, 500, 2000])
    parts = split_all(text, limit)
    assert all(len(p) <= limit for p in parts)
    assert join_parts(parts) == text


def test_measure_can_differ_from_len():
    escaped = lambda s: len(s.replace("&", "&amp;"))  # noqa: E731
    text = "& " * 200
    c = cut(text, 100, escaped)
    assert escaped(c.head) <= 100
