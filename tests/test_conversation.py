"""The token budget: one pass from the newest turn back, system + question always kept."""

from __future__ import annotations

import pytest

from bot import tokens
from bot.conversation import CUT_NOTE, LEFT_OUT_NOTE, Turn, fit
from bot.errors import RelayError, WindowTooSmall
from bot.tokens import TokenCounter


def history(n: int) -> list[Turn]:
    turns = [Turn("system", "You are terse.")]
    for i in range(n):
        turns.append(Turn("user", f"question number {i} " * 5, author=f"user{i % 3}", message_id=f"u{i}"))
        turns.append(Turn("assistant", f"answer number {i} " * 8, message_id=f"a{i}"))
    turns.append(Turn("user", "the newest question", author="ana", message_id="q"))
    return turns


def exact(turns: list[Turn]) -> int:
    return tokens.prompt_tokens([t.content() for t in turns])


def test_everything_fits_and_the_count_is_exact():
    turns = history(5)
    fitted = fit(turns, window=8192, reserve=1024)
    assert fitted.turns == turns
    assert fitted.dropped == 0 and fitted.notes == []
    assert fitted.prompt_tokens == exact(turns)


def test_trims_the_oldest_turns_and_says_so():
    turns = history(50)
    window, reserve = 1500, 500
    fitted = fit(turns, window, reserve)
    assert fitted.dropped > 0
    assert fitted.turns[0] == turns[0]  # system prompt kept
    assert fitted.turns[-1] == turns[-1]  # newest question kept
    kept = fitted.turns[1:]
    assert kept == turns[len(turns) - len(kept) :]  # the newest turns, contiguous
    assert fitted.prompt_tokens == exact(fitted.turns)
    assert fitted.prompt_tokens + reserve <= window
    # one more turn would not have fitted
    bigger = [turns[0], turns[len(turns) - len(kept) - 1], *kept]
    assert exact(bigger) + reserve > window
    assert LEFT_OUT_NOTE in fitted.notes
    assert len(fitted.turns) - 1 + fitted.dropped == len(turns) - 1


def test_counts_are_cached_per_message_id():
    turns = history(200)
    counter = TokenCounter()
    fit(turns, 4000, 500, counter)
    first_misses = counter.misses
    fit(turns, 4000, 500, counter)
    assert counter.misses == first_misses + 1  # only the system prompt has no id
    assert counter.hits >= first_misses - 1


def test_a_question_too_long_alone_is_cut_in_the_middle():
    question = "START " + "filler words here " * 3000 + " END"
    turns = [Turn("system", "sys"), Turn("user", "old"), Turn("assistant", "older answer"), Turn("user", question)]
    fitted = fit(turns, window=2048, reserve=512)
    kept = fitted.turns[-1]
    assert fitted.turns[0].text == "sys"
    assert kept.text.startswith("START") and kept.text.endswith("END")
    assert "tokens cut from the middle" in kept.text
    assert fitted.cut_tokens > 0 and CUT_NOTE in fitted.notes
    assert fitted.dropped == 2
    assert fitted.prompt_tokens == exact(fitted.turns)
    assert fitted.prompt_tokens + 512 <= 2048


def test_a_window_too_small_for_anything_is_an_error():
    with pytest.raises(WindowTooSmall) as info:
        fit([Turn("user", "word " * 500)], window=60, reserve=30)
    assert isinstance(info.value, RelayError) and not isinstance(info.value, ValueError)


def test_needs_a_user_turn():
    with pytest.raises(ValueError):
        fit([Turn("system", "only a system prompt")], 1000, 100)
