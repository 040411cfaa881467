from __future__ import annotations

import re
from pathlib import Path

import pytest

from chatwoot_mirror import Config, ConfigError
from chatwoot_mirror.config import VARIABLES

BASE = {"CHATWOOT_URL": "https://chat.example.com", "CHATWOOT_INBOX_ID": "Hk2uR9bWq7mZcX4tYp1sLe8D"}


def load(**extra: str) -> Config:
    return Config.from_env({**BASE, **extra}, dotenv=False)


def error_for(**extra: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        Config.from_env({**BASE, **extra}, dotenv=False)
    return info.value


def test_minimal_config_has_documented_defaults():
    config = load()
    assert config.url == "https://chat.example.com"
    assert config.inbox_identifier == "Hk2uR9bWq7mZcX4tYp1sLe8D"
    assert config.enabled is True
    assert config.resolved_policy == "reopen"
    assert config.bot_prefix == "🤖 "
    assert config.br_ninth_digit is True
    assert config.has_bot_token is False


def test_trailing_slash_is_dropped_and_subpath_kept():
    assert load(CHATWOOT_URL="https://example.com/chatwoot/").url == "https://example.com/chatwoot"


@pytest.mark.parametrize("suffix", ["/public/api/v1", "/public/api/v1/", "/api/v1"])
def test_url_with_api_path_names_variable_and_fix(suffix):
    err = error_for(CHATWOOT_URL="https://chat.example.com" + suffix)
    assert err.variable == "CHATWOOT_URL"
    assert "'https://chat.example.com'" in str(err)


def test_url_without_scheme_is_refused():
    assert error_for(CHATWOOT_URL="chat.example.com").variable == "CHATWOOT_URL"


def test_missing_url():
    with pytest.raises(ConfigError, match="CHATWOOT_URL"):
        Config.from_env({"CHATWOOT_INBOX_ID": "abc"}, dotenv=False)


def test_missing_inbox_identifier_explains_where_to_find_it():
    with pytest.raises(ConfigError) as info:
        Config.from_env({"CHATWOOT_URL": "https://x.example"}, dotenv=False)
    assert info.value.variable == "CHATWOOT_INBOX_ID"
    assert "Inbox Identifier" in str(info.value)


def test_numeric_inbox_id_is_refused():
    err = error_for(CHATWOOT_INBOX_ID="7")
    assert err.variable == "CHATWOOT_INBOX_ID" and "Inbox Identifier" in str(err)


def test_alias_is_accepted_and_contradiction_refused():
    config = Config.from_env(
        {"CHATWOOT_URL": "https://x.example", "CHATWOOT_INBOX_IDENTIFIER": "tok"}, dotenv=False
    )
    assert config.inbox_identifier == "tok"
    assert error_for(CHATWOOT_INBOX_IDENTIFIER="other").variable == "CHATWOOT_INBOX_IDENTIFIER"


def test_account_id_without_token_is_refused():
    err = error_for(CHATWOOT_ACCOUNT_ID="1")
    assert err.variable == "CHATWOOT_ACCOUNT_ID" and "CHATWOOT_BOT_TOKEN" in str(err)


def test_token_without_account_id_is_refused():
    err = error_for(CHATWOOT_BOT_TOKEN="secret")
    assert err.variable == "CHATWOOT_ACCOUNT_ID"
    assert "secret" not in str(err)


def test_non_numeric_account_id():
    assert error_for(CHATWOOT_ACCOUNT_ID="acme", CHATWOOT_BOT_TOKEN="t").variable == (
        "CHATWOOT_ACCOUNT_ID"
    )


def test_bot_token_with_account_enables_bot_replies():
    config = load(CHATWOOT_ACCOUNT_ID="1", CHATWOOT_BOT_TOKEN="t")
    assert config.has_bot_token and config.account_id == 1


@pytest.mark.parametrize(
    "variable,value",
    [
        ("CHATWOOT_RESOLVED_POLICY", "sometimes"),
        ("CHATWOOT_ENABLED", "maybe"),
        ("CHATWOOT_BR_NINTH_DIGIT", "sim"),
        ("CHATWOOT_READ_TIMEOUT", "ten"),
        ("CHATWOOT_CONNECT_TIMEOUT", "0"),
        ("CHATWOOT_DEFAULT_COUNTRY_CODE", "brazil"),
    ],
)
def test_bad_values_name_their_variable(variable, value):
    assert error_for(**{variable: value}).variable == variable


def test_disabled_skips_validation():
    config = Config.from_env({"CHATWOOT_ENABLED": "false"}, dotenv=False)
    assert config.enabled is False


def test_dotenv_file_is_read_and_environment_wins(tmp_path: Path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "CHATWOOT_URL=https://from-file.example\nCHATWOOT_INBOX_ID=filetoken\n"
        "CHATWOOT_RESOLVED_POLICY=new\n"
    )
    config = Config.from_env({"CHATWOOT_RESOLVED_POLICY": "reopen"}, dotenv=str(env_file))
    assert config.url == "https://from-file.example"
    assert config.inbox_identifier == "filetoken"
    assert config.resolved_policy == "reopen"


def test_repr_hides_secrets():
    config = load(
        CHATWOOT_ACCOUNT_ID="1", CHATWOOT_BOT_TOKEN="bot-SECRET", CHATWOOT_HMAC_TOKEN="hmac-SECRET"
    )
    assert "SECRET" not in repr(config)
    assert "Hk2uR9bWq7mZcX4tYp1sLe8D" not in repr(config)


def test_env_example_documents_every_variable():
    text = (Path(__file__).parent.parent / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^#?\s*(CHATWOOT_[A-Z_]+)=", text, re.M))
    assert documented == set(VARIABLES)


def test_every_setting_is_declared_once_and_the_readme_table_is_made_from_it():
    import dataclasses

    from chatwoot_mirror.config import INBOX_ALIAS, settings_table

    declared = [f for f in dataclasses.fields(Config) if f.metadata]
    assert len(declared) == len(dataclasses.fields(Config))  # no field without its variable
    assert set(VARIABLES) == {f.metadata["chatwoot_mirror"].variable for f in declared} | {
        INBOX_ALIAS}
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- settings-table:start -->\n")[1].split(
        "\n<!-- settings-table:end -->")[0]
    assert block == settings_table(), "regenerate with chatwoot_mirror.config.settings_table()"


def test_defaults_of_the_declarations_are_what_from_env_gives():
    config = load()
    for name, value in (("workers", 4), ("max_requests_per_minute", 2400),
                        ("bot_prefix", "🤖 "), ("handoff_keywords", None),
                        ("media_allowed_hosts", ()), ("db_path", "./chatwoot_mirror.db")):
        assert getattr(config, name) == value
    assert load(CHATWOOT_HANDOFF_KEYWORDS="").handoff_keywords == ()
    assert load(CHATWOOT_TEXT_HANDOFF="").text("handoff") == ""
    assert load(CHATWOOT_DEFAULT_COUNTRY_CODE="+55").default_country_code == "55"
    assert load(CHATWOOT_RESOLVED_POLICY="NEW").resolved_policy == "new"


@pytest.mark.parametrize("content,problem", [
    ('{"kinds": {"reaction": "curtiu {emoji}"}}',
     "kinds.reaction: unknown placeholder {emoji} (it may use {text}, {type})"),
    ('{"not_delivered": "falhou: {reason"}', "not_delivered: "),
    ('{"greeting": "oi"}', "greeting: not a text"),
    ('{"who": ["cliente", "bot"]}', "who: must be a list of 4 strings"),
    ('{"failures": {"131047": 5}}', "failures: must be an object of strings"),
    ('["kinds"]', "must hold a JSON object of texts"),
    ("{'kinds': 1}", "is not UTF-8 JSON"),
])
def test_a_bad_texts_file_fails_at_start_naming_the_variable_and_the_key(
        tmp_path, content, problem):
    path = tmp_path / "texts.json"
    path.write_text(content, encoding="utf-8")
    error = error_for(CHATWOOT_TEXTS_FILE=str(path))
    assert error.variable == "CHATWOOT_TEXTS_FILE" and problem in error.problem
    missing = error_for(CHATWOOT_TEXTS_FILE=str(tmp_path / "nope.json"))
    assert missing.variable == "CHATWOOT_TEXTS_FILE" and "cannot read" in missing.problem


def test_a_texts_file_changes_only_what_it_names(tmp_path):
    path = tmp_path / "texts.json"
    path.write_text('{"kinds": {"reaction": "curtiu com {text}"}, "from_phone": "[loja] ", '
                    '"failures": {"131047": "janela fechada {sic}"}, "handoff": ""}',
                    encoding="utf-8")
    texts = load(CHATWOOT_TEXTS_FILE=str(path)).texts
    assert texts.kinds["reaction"] == "curtiu com {text}"
    assert texts.kinds["edit"] == "editou: {text}"  # the table's other entries stay
    assert texts.failures["131047"] == "janela fechada {sic}"  # never formatted: any braces
    assert texts.failures["131026"].startswith("o número não recebe")
    assert texts.from_phone == "[loja] " and texts.handoff == ""
    spanish = load(CHATWOOT_TEXTS_FILE=str(path), CHATWOOT_LANGUAGE="es").texts
    assert spanish.kinds["edit"] == "editó: {text}" and spanish.from_phone == "[loja] "


def test_a_customer_text_with_a_placeholder_it_cannot_fill_fails_at_start():
    error = error_for(CHATWOOT_TEXT_NO_AGENT="Seu protocolo: {protocolo}")
    assert error.variable == "CHATWOOT_TEXT_NO_AGENT" and "{protocolo}" in error.problem
    assert load(CHATWOOT_TEXT_NO_AGENT="Protocolo {protocol}").text("no_agent") == (
        "Protocolo {protocol}")
