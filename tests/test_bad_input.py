"""Property tests: any text a platform or a provider may hand us goes through the core intact."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.conversation import Turn, fit
from bot.splitting import cut, join_parts
from bot.store_sqlite import SqliteStore

nasty_text = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x1F)),  # control characters
    st.sampled_from(["<|eot_id|>", "<|begin_of_text|>", "\ud800 lone", "x\udfff", "\x00", "```", "<!channel>"]),
    st.builds(lambda a, b: a + "<|eot_id|>" + b, st.text(), st.text()),
)


@given(st.lists(nasty_text, min_size=1, max_size=8))
@settings(max_examples=150, deadline=None)
def test_fit_never_raises_and_keeps_the_question(texts):
    turns = [Turn("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(texts)]
    turns.append(Turn("user", texts[-1] or "q"))
    fitted = fit(turns, window=4096, reserve=512)
    expected = re.sub("[\ud800-\udfff]", "\ufffd", texts[-1] or "q")
    assert fitted.turns[-1].text == expected


@given(nasty_text, st.integers(min_value=40, max_value=400))
@settings(max_examples=150, deadline=None)
def test_splitting_round_trips_any_text(text, limit):
    parts, rest, reopen = [], text, ""
    while len(reopen + rest) > limit:
        c = cut(reopen + rest, limit)
        assert c.consumed > 0
        parts.append(c.head)
        rest, reopen = (reopen + rest)[c.consumed :], c.reopen
    parts.append(reopen + rest)
    assert join_parts(parts) == text


def test_store_keeps_turns_with_lone_surrogates_and_huge_text(tmp_path):
    import asyncio

    async def scenario():
        store = await SqliteStore.open(tmp_path / "b.db")
        big = "x" * 1_000_000
        await store.add_turns("k", [Turn("user", "bad \ud800 text"), Turn("assistant", big)])
        turns = await store.load_turns("k")
        await store.close()
        return turns

    turns = asyncio.run(scenario())
    assert turns[0].text == "bad \ufffd text" and len(turns[1].text) == 1_000_000


@given(st.text(min_size=1))
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_question_of_any_text_fits_a_small_window(text):
    fitted = fit([Turn("user", text * 50)], window=600, reserve=100)
    assert fitted.prompt_tokens + 100 <= 600
