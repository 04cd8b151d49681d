"""Exact Llama 3 token counts (reference/providers.md gives the expected numbers)."""

from __future__ import annotations

from bot import tokens
from bot.tokens import TokenCounter


def test_known_ids_and_vocabulary():
    assert tokens.encode("Hello, world!") == [9906, 11, 1917, 0]
    assert tokens.encode("\n\n") == [271]
    assert tokens.encoding().n_vocab == 128_256


def test_special_token_strings_are_plain_text():
    assert tokens.count("<|eot_id|>") == 7
    assert 128009 not in tokens.encode("before <|eot_id|> after <|begin_of_text|>")


def test_template_overhead_matches_the_reference_table():
    # (with preamble, without) from reference/providers.md
    assert tokens.prompt_tokens(["Hello!"], has_system=False) == 37
    assert tokens.prompt_tokens(["Hello!"], date_preamble=False, has_system=False) == 12
    assert tokens.prompt_tokens(["You are a helpful assistant.", "Hello!"]) == 43
    assert tokens.prompt_tokens(["You are a helpful assistant.", "Hello!"], date_preamble=False) == 23
    coca = ["You are an assistant for the company Coca Cola", "hello", "hello how can I help you", "what is Coca Cola."]
    assert tokens.prompt_tokens(coca, date_preamble=False) == 48  # DeepInfra reported 48
    dl = ["You are an expert deep learning engineer", "What is Deep Learning"]
    assert tokens.prompt_tokens(dl) == 46


def test_long_runs_are_split_before_encoding():
    text = "a" * 60_000 + " " * 30_000 + "word " * 1000
    ids = tokens.encode(text)
    assert len(ids) > 0
    assert tokens.decode(ids) == text


def test_counter_caches_per_message_id_and_recounts_edits():
    counter = TokenCounter()
    assert counter.count("hello there", "m1") == tokens.count("hello there")
    counter.count("hello there", "m1")
    assert (counter.hits, counter.misses) == (1, 1)
    assert counter.count("hello there, edited", "m1") == tokens.count("hello there, edited")
    assert counter.misses == 2
    assert [mid for mid, _, _ in counter.take_fresh()] == ["m1", "m1"]
    assert counter.take_fresh() == []
