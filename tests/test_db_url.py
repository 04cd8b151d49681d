"""``BOT_DATABASE``: a SQLite path or a PostgreSQL URL, and the URL named without its password."""

from __future__ import annotations

import pytest

from bot.db_url import is_postgres, redact, scrub
from bot.settings import Settings


@pytest.mark.parametrize(
    ("database", "postgres"),
    [
        ("postgresql://u:p@h:5432/db", True),
        ("postgres://u@h/db", True),
        ("POSTGRESQL://h/db", True),
        ("llama-relay.db", False),
        ("/data/llama-relay.db", False),
        (":memory:", False),
        ("mysql://u:p@h/db", False),
    ],
)
def test_which_backend(database, postgres):
    assert is_postgres(database) is postgres


@pytest.mark.parametrize(
    ("database", "shown"),
    [
        ("postgresql://relay:s3cret@db:5432/relay", "postgresql://relay:***@db:5432/relay"),
        ("postgres://relay:p%40ss@db/relay", "postgres://relay:***@db/relay"),
        ("postgresql://relay:p@ss:w@db/relay", "postgresql://relay:***@db/relay"),  # unencoded @ and :
        ("postgresql://relay@db/relay", "postgresql://relay@db/relay"),
        ("postgresql://db/relay?password=s3cret&sslmode=require", "postgresql://db/relay?password=***&sslmode=require"),
        ("/data/llama-relay.db", "/data/llama-relay.db"),
    ],
)
def test_redact_masks_every_password(database, shown):
    assert redact(database) == shown


def test_scrub_removes_the_password_from_any_text():
    url = "postgresql://relay:p%40ss-word@db/relay"
    text = f"could not connect to {url}; the password p@ss-word was refused (p%40ss-word)"
    assert scrub(text, url) == "could not connect to postgresql://relay:***@db/relay; the password *** was refused (***)"


def test_settings_take_a_url_or_a_path_and_never_show_the_password(tmp_path):
    url = "postgresql://relay:s3cret@db:5432/relay"
    settings = Settings(_env_file=None, bot_database=url)
    assert settings.bot_database == url
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings)
    assert Settings(_env_file=None, bot_database=tmp_path / "x.db").bot_database == str(tmp_path / "x.db")
    assert Settings(_env_file=None).bot_database == "llama-relay.db"


def test_a_password_someone_forgot_to_percent_encode_is_still_hidden():
    for url, secret in (
        ("postgresql://relay:pa/ss@db.internal/relay", "pa/ss"),
        ("postgresql://relay:a#b@db.internal:5432/relay", "a#b"),
        ("postgres://relay:x?y@db.internal/relay", "x?y"),
    ):
        shown = redact(url)
        assert secret not in shown and shown.startswith("postgres") and "relay:***@db.internal" in shown
        assert scrub(f"could not connect to {url}: invalid", url).count(secret) == 0
