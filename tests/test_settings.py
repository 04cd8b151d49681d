"""Settings: the documented variable names, secrets hidden, one clear line per mistake."""

from __future__ import annotations

import re

import pytest

from bot.errors import ConfigError
from bot.settings import Settings, load_settings


def test_names_and_defaults(monkeypatch):
    monkeypatch.setenv("DEEPINFRA_TOKEN", "di-secret")
    monkeypatch.setenv("OPENAI_CONTEXT_WINDOW", "32768")
    monkeypatch.setenv("BOT_PROVIDERS", "deepinfra, openai")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/")
    s = Settings(_env_file=None)
    assert s.provider_order() == ["deepinfra", "openai"]
    assert s.provider("openai").context_window == 32768
    assert s.provider("openai").base_url == "http://127.0.0.1:9/v1"
    assert s.provider("cloudflare").context_window == 24_000
    assert s.provider("dataoorts").context_window == 25_000
    assert s.provider("deepinfra").price_in == 0.13
    assert s.bot_max_tokens == 1024


def test_secrets_never_show(monkeypatch):
    monkeypatch.setenv("DEEPINFRA_TOKEN", "di-very-secret")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-very-secret")
    s = Settings(_env_file=None)
    assert "very-secret" not in repr(s) and "very-secret" not in str(s.model_dump())
    assert s.provider("deepinfra").api_key.get_secret_value() == "di-very-secret"


def test_default_order_is_cheapest_configured_first(monkeypatch):
    monkeypatch.setenv("AIGATEWAY_API_KEY", "k")
    monkeypatch.setenv("DEEPINFRA_TOKEN", "k")
    monkeypatch.setenv("CLOUDFLARE_AUTH_TOKEN", "k")  # no account id: not configured
    assert Settings(_env_file=None).provider_order() == ["deepinfra", "aigateway"]


def test_dotenv_file_is_read(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("BOT_MAX_TOKENS=512\nDEEPINFRA_TOKEN=from-file\n")
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.bot_max_tokens == 512 and s.deepinfra_token.get_secret_value() == "from-file"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BOT_MAX_TOKENS", "lots"), ("OPENAI_CONTEXT_WINDOW", "-5"), ("BOT_PROVIDERS", "openai,chatgpt"),
        ("BOT_LOG_LEVEL", "verbose"),
    ],
)
def test_a_wrong_value_is_one_line_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    message = str(info.value)
    assert message.startswith(name) and "\n" not in message


def test_env_example_documents_every_setting_and_loads_as_is(tmp_path, monkeypatch):
    from pathlib import Path

    example = (Path(__file__).parent.parent / "config" / ".env.example").read_text()
    # "NAME=" to fill in, or "# NAME=default" (a default, commented out)
    documented = {m.group(1) for m in re.finditer(r"^(?:# )?([A-Z][A-Z0-9_]*)=", example, re.M)}
    assert documented == {name.upper() for name in Settings.model_fields}
    (tmp_path / ".env").write_text(example)
    monkeypatch.chdir(tmp_path)
    loaded = load_settings()
    assert loaded.model_dump() == Settings(_env_file=None).model_dump()


def test_readme_table_lists_every_setting():
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    missing = [name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in readme]
    assert missing == []


@pytest.mark.parametrize(("written", "level"), [("debug", "DEBUG"), (" Warning ", "WARNING"), ("INFO", "INFO")])
def test_the_log_level_is_read_in_any_case(monkeypatch, written, level):
    monkeypatch.setenv("BOT_LOG_LEVEL", written)
    assert load_settings(_env_file=None).bot_log_level == level


def test_slack_prompts_and_loading_messages_are_json_lists(monkeypatch):
    monkeypatch.setenv("SLACK_SUGGESTED_PROMPTS", '["Say hi", {"title": "Review", "message": "Review this, please:"}]')
    monkeypatch.setenv("SLACK_LOADING_MESSAGES", '["Reading, slowly…", "Writing…"]')
    s = load_settings(_env_file=None)
    assert [p.model_dump() for p in s.slack_suggested_prompts] == [
        {"title": "Say hi", "message": "Say hi"}, {"title": "Review", "message": "Review this, please:"},
    ]
    assert s.slack_loading_messages == ["Reading, slowly…", "Writing…"]  # commas stay inside a message
    monkeypatch.setenv("SLACK_SUGGESTED_PROMPTS", "[]")
    assert load_settings(_env_file=None).slack_suggested_prompts == []


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SLACK_LOADING_MESSAGES", "Reading, Writing", "must be a JSON list"),
        ("SLACK_SUGGESTED_PROMPTS", '["1", "2", "3", "4", "5"]', "at most 4"),  # Slack shows 4
        ("SLACK_LOADING_MESSAGES", "[" + ", ".join(f'"m{n}"' for n in range(11)) + "]", "at most 10"),
        ("SLACK_SUGGESTED_PROMPTS", '[{"title": "No message"}]', "Field required"),
    ],
)
def test_a_wrong_slack_list_is_one_line_naming_the_variable(monkeypatch, name, value, says):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings(_env_file=None)
    assert str(info.value).startswith(f"{name}: ") and says in str(info.value) and "\n" not in str(info.value)
