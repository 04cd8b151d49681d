"""The store on both backends (a SQLite file, a PostgreSQL database): migrations, exactly-once,
conversations, token counts, request records, settings, the ledger.

Every test here runs twice, through ``open_store`` as the bot opens ``BOT_DATABASE``
(``make_store``/``store`` in ``conftest.py``).  SQLite-only behaviour (WAL, file locks)
is tested in ``test_store_locks.py``; PostgreSQL-only behaviour in ``test_store_postgres.py``.
"""

from __future__ import annotations

import asyncio
import sqlite3

from bot.conversation import Turn
from bot.store import MIGRATIONS, Summary, UsageRecord


async def test_migrations_are_versioned_and_idempotent(make_store):
    store = await make_store()
    assert await store.schema_version() == len(MIGRATIONS)
    await store.close()
    store = await make_store()  # opening again applies nothing twice
    assert await store.schema_version() == len(MIGRATIONS)


async def test_a_new_sqlite_file_is_in_wal_mode(tmp_path):
    from bot.store import open_store

    path = tmp_path / "s.db"
    await (await open_store(path)).close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_ping_is_a_round_trip(store):
    assert await store.ping() is True


async def test_events_are_claimed_once_even_across_restarts(make_store):
    store = await make_store()
    assert await store.claim_event("Ev1", "slack") is True
    assert await store.claim_event("Ev1", "slack") is False
    await store.close()
    store = await make_store()
    assert await store.claim_event("Ev1", "slack") is False
    assert await store.claim_event("Ev2", "slack") is True


async def test_conversations_keep_turns_in_order_and_reset(store):
    await store.add_turns("terminal:a", [Turn("user", "hi"), Turn("assistant", "hello")])
    await store.add_turns("terminal:a", [Turn("user", "<|eot_id|> and ünïcode", author="Bob", message_id="m9")])
    await store.add_turns("terminal:b", [Turn("user", "other")])
    turns = await store.load_turns("terminal:a")
    assert [(t.role, t.text, t.author) for t in turns] == [
        ("user", "hi", None),
        ("assistant", "hello", None),
        ("user", "<|eot_id|> and ünïcode", "Bob"),
    ]
    assert turns[2].message_id == "m9"
    assert all(t.message_id.startswith("terminal:a#") for t in turns[:2])  # row ids key the count cache
    assert len({t.message_id for t in turns}) == 3
    await store.reset_conversation("terminal:a")
    assert await store.load_turns("terminal:a") == []
    assert len(await store.load_turns("terminal:b")) == 1
    await store.add_turns("terminal:a", [Turn("user", "again")])  # a reset conversation starts over
    assert [t.text for t in await store.load_turns("terminal:a")] == ["again"]


async def test_token_counts_persist_and_are_replaced(store):
    await store.save_counts([("m1", "d1", 12), ("m2", "d2", 7)])
    assert await store.cached_counts(["m1", "m2", "m3"]) == {"m1": ("d1", 12), "m2": ("d2", 7)}
    await store.save_counts([("m1", "d1b", 13)])  # the text was edited: a new count
    assert await store.cached_counts(["m1"]) == {"m1": ("d1b", 13)}
    assert await store.cached_counts([]) == {}
    many = [(f"id{n}", "d", n) for n in range(1200)]  # more than one SQLite chunk of 500
    await store.save_counts(many)
    assert len(await store.cached_counts([m for m, _, _ in many])) == 1200


async def test_request_records_and_usage_ledger(store):
    rid = await store.accept(["slack:event:Ev1"], "slack", "C1:123.4", {"trigger": {"ts": "123.4"}}, "me")
    assert rid is not None
    await store.update_request(rid, state="answering", messages=[{"ts": "123.5"}], shown="half", part=0)
    (open_,) = await store.open_requests("slack")
    assert (open_.id, open_.state, open_.messages, open_.shown) == (rid, "answering", [{"ts": "123.5"}], "half")
    assert open_.origin == {"trigger": {"ts": "123.4"}} and open_.owner == "me"
    await store.update_request(rid, state="done", provider="deepinfra", model="m", place={"channel": "C1"})
    assert await store.open_requests("slack") == []
    record = await store.request(rid)
    assert record is not None and (record.state, record.place) == ("done", {"channel": "C1"})
    assert await store.request(rid + 1000) is None
    for user, cost in (("U1", 0.5), ("U1", 0.25), ("U2", 1.0)):
        await store.record_usage(UsageRecord("slack", "deepinfra", "m", user, "C1", 100, 50, cost, rid))
    by_user = {t.key: t for t in await store.usage_totals("user")}
    assert by_user["U1"].requests == 2 and by_user["U1"].cost_usd == 0.75
    assert by_user["U2"].prompt_tokens == 100 and by_user["U2"].completion_tokens == 50
    assert [t.key for t in await store.usage_totals("user")] == ["U2", "U1"]  # most expensive first
    assert [t.key for t in await store.usage_totals("provider", user="U2", channel="C1")] == ["deepinfra"]
    assert await store.usage_of("user", "U1", since=0) == (300, 0.75)
    assert await store.usage_of("channel", "C9", since=0) == (0, 0.0)
    assert await store.usage_of("user", "U1", since=2**40) == (0, 0.0)  # nothing recorded after then


async def test_summaries_are_kept_per_conversation_replaced_and_reset(make_store):
    store = await make_store()
    assert await store.summary("terminal:a") is None
    await store.add_turns("terminal:a", [Turn("user", "hi")])
    await store.save_summary("terminal:a", Summary(("f1", "f2"), "They said hi. ünïcode", "openai"))
    await store.save_summary("slack:C1:1.0", Summary(("f9",), "Another thread.", "deepinfra"))
    await store.save_summary("terminal:a", Summary(("f1", "f2", "f3"), "Extended.", "openai"))
    await store.close()
    store = await make_store()  # kept across restarts
    assert await store.summary("terminal:a") == Summary(("f1", "f2", "f3"), "Extended.", "openai")
    await store.reset_conversation("terminal:a")  # /reset forgets the summary with the turns
    assert await store.summary("terminal:a") is None and await store.load_turns("terminal:a") == []
    assert await store.summary("slack:C1:1.0") == Summary(("f9",), "Another thread.", "deepinfra")


async def test_update_request_refuses_unknown_fields(store):
    import pytest

    rid = await store.accept(["k"], "slack", "c", {}, "me")
    with pytest.raises(ValueError, match="unknown request fields"):
        await store.update_request(rid, colour="red")


async def test_channel_settings_set_replace_and_clear(store):
    await store.set_channel_setting("slack", "C1", "model", "a")
    await store.set_channel_setting("slack", "C1", "model", "b")
    await store.set_channel_setting("slack", "C1", "prompt", "be brief")
    await store.set_channel_setting("discord", "C1", "model", "other platform")
    assert await store.channel_settings("slack", "C1") == {"model": "b", "prompt": "be brief"}
    await store.set_channel_setting("slack", "C1", "model", None)
    assert await store.channel_settings("slack", "C1") == {"prompt": "be brief"}
    assert await store.channel_settings("slack", "C2") == {}


async def test_accept_claims_every_key_or_none(store):
    first = await store.accept(["slack:event:Ev1", "slack:message:C1:1.0"], "slack", "c", {}, "me")
    # the same message arriving as another event: one key is taken, so nothing is written
    again = await store.accept(["slack:event:Ev2", "slack:message:C1:1.0"], "slack", "c", {}, "me")
    assert first is not None and again is None
    assert [r.id for r in await store.open_requests("slack")] == [first]
    assert await store.accept(["slack:event:Ev2"], "slack", "c", {}, "me") is not None  # Ev2 was rolled back
    assert await store.claim_event("slack:event:Ev1", "slack") is False  # accept's claims are claims


async def test_concurrent_accepts_and_updates_do_not_interleave_transactions(store):
    first = await store.accept(["k:0"], "discord", "c", {}, "me")
    assert first is not None
    results = await asyncio.gather(
        *(store.accept([f"k:{n % 10}"], "discord", "c", {}, "me") for n in range(40)),
        *(store.update_request(first, shown=f"text {n}") for n in range(10)),
    )
    accepted = [r for r in results[:40] if r is not None]
    assert len(accepted) == 9  # k:1 .. k:9 once each; k:0 was taken before
    assert len(await store.open_requests("discord")) == 10
    record = await store.request(first)
    assert record is not None and record.shown.startswith("text ")


async def test_questions_accepted_at_once_each_get_their_own_record(store):
    # SQLite claims the questions arriving while a transaction runs together (bot.sqlite_claims):
    # each caller still gets the id of its own request, and a repeated key only its own None.
    ids = await asyncio.gather(
        *(store.accept([f"slack:event:E{n}", f"slack:message:C1:{n % 25}"], "slack", f"C1:{n}", {"n": n}, "me")
          for n in range(30))
    )
    for n in range(5):  # the message n and the message n + 25 are the same message: one is answered
        assert (ids[n] is None) != (ids[n + 25] is None)
    taken = [i for i in ids if i is not None]
    assert len(set(taken)) == 25
    for n, request_id in enumerate(ids):
        if request_id is not None:
            record = await store.request(request_id)
            assert record is not None and record.origin == {"n": n} and record.conversation == f"C1:{n}"


async def test_a_stop_press_marks_only_an_open_request_once(store):
    open_id = await store.accept(["k:1"], "slack", "C1:1", {}, "me")
    done_id = await store.accept(["k:2"], "slack", "C1:2", {}, "me")
    await store.update_request(done_id, state="done")
    assert await store.request_stop(open_id, "Ada") is True
    assert await store.request_stop(open_id, "Grace") is False  # the first press stands
    assert await store.request_stop(done_id, "Ada") is False  # ended already
    assert await store.request_stop(999, "Ada") is False
    assert await store.stops([open_id, done_id, 999]) == {open_id: "Ada"}
    assert await store.stops([]) == {}


async def test_votes_one_per_person_per_answer_changeable_with_provider_and_model(store):
    first = await store.accept(["k:1"], "slack", "C1:1", {}, "me")
    second = await store.accept(["k:2"], "discord", "C2", {}, "me")
    unanswered = await store.accept(["k:3"], "slack", "C1:3", {}, "me")
    await store.update_request(first, state="done", provider="openai", model="llama")
    await store.update_request(second, state="stopped", provider="deepinfra", model="llama-di")
    await store.update_request(unanswered, state="failed")
    assert await store.vote(first, "slack", "U1", 1) == "openai"
    assert await store.vote(first, "slack", "U1", 1) == "openai"  # pressed twice: one vote
    assert await store.vote(first, "slack", "U2", 1) == "openai"
    assert await store.vote(second, "discord", "U1", 1) == "deepinfra"
    assert await store.vote(second, "discord", "U1", -1) == "deepinfra"  # changed its mind
    assert await store.vote(unanswered, "slack", "U1", 1) is None  # no provider answered it
    assert await store.vote(404, "slack", "U1", 1) is None
    assert await store.vote(first, "discord", "U1", 1) is None  # another platform's answer
    assert await store.vote_totals("provider") == {"openai": (2, 0), "deepinfra": (0, 1)}
    assert await store.vote_totals("model") == {"llama": (2, 0), "llama-di": (0, 1)}
    assert await store.vote_totals("user") == {}

