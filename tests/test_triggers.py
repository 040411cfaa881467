"""Automatic handoff from the bot's side: keywords, max bot turns, business hours, texts."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from freezegun import freeze_time

from chatwoot_mirror import Config, ConfigError, Mirror
from chatwoot_mirror.relay import AgentMessage
from chatwoot_mirror.testing import FakeChatwoot
from chatwoot_mirror.texts import DEFAULTS, LANGUAGES
from chatwoot_mirror.triggers import BusinessHours, Keywords

PHONE = "5511987654321"


@pytest.mark.parametrize("text,found", [
    ("Quero falar com um ATENDENTE", "atendente"),
    ("quero falar com um atendênte!", "atendente"),
    ("Humano, por favor", "humano"),
    ("preciso de uma pessoa", "pessoa"),
    ("I want a human", "human"),
    ("hablar con un asesor", "asesor"),
    ("quero falar com alguém", "falar com alguem"),
    ("os humanos são legais", None),     # whole words only
    ("desumano", None),
    ("agentes de viagem", None),
    ("", None),
])
def test_default_keywords_whole_words_any_case_or_accent(text, found):
    from chatwoot_mirror.texts import all_default_keywords

    assert Keywords(all_default_keywords()).find(text) == found


def test_custom_and_empty_keyword_lists():
    assert Keywords(["Falar com Gerente"]).find("posso falar   com gerente?") == "falar com gerente"
    assert Keywords([]).find("atendente") is None


def test_every_language_ships_every_text():
    for language in LANGUAGES:
        texts = DEFAULTS[language]
        assert texts.handoff and texts.resume and texts.after_hours and texts.keywords


def test_business_hours_in_the_configured_timezone():
    hours = BusinessHours.parse("mon-fri 08:00-18:00;sat 09:00-12:00", "America/Sao_Paulo")
    # 2026-11-23 is a Monday; São Paulo is UTC-3
    assert hours.is_open(datetime(2026, 11, 23, 11, 0, tzinfo=timezone.utc))      # 08:00
    assert not hours.is_open(datetime(2026, 11, 23, 10, 59, tzinfo=timezone.utc))  # 07:59
    assert not hours.is_open(datetime(2026, 11, 23, 21, 0, tzinfo=timezone.utc))   # 18:00
    assert hours.is_open(datetime(2026, 11, 28, 12, 30, tzinfo=timezone.utc))      # sat 09:30
    assert not hours.is_open(datetime(2026, 11, 29, 13, 0, tzinfo=timezone.utc))   # sunday


@pytest.mark.parametrize("extra,variable", [
    ({"business_hours": "mon-fri 08:00-18:00"}, "CHATWOOT_TIMEZONE"),
    ({"business_hours": "mon-fri 08:00-18:00", "timezone": "Mars/Olympus"}, "CHATWOOT_TIMEZONE"),
    ({"business_hours": "weekdays 8-18", "timezone": "UTC"}, "CHATWOOT_BUSINESS_HOURS"),
    ({"business_hours": "mon 18:00-08:00", "timezone": "UTC"}, "CHATWOOT_BUSINESS_HOURS"),
    ({"business_hours": "mon 25:00-26:00", "timezone": "UTC"}, "CHATWOOT_BUSINESS_HOURS"),
    ({"language": "fr"}, "CHATWOOT_LANGUAGE"),
    ({"max_bot_turns": -1}, "CHATWOOT_MAX_BOT_TURNS"),
])
def test_trigger_settings_fail_at_start_up(extra, variable):
    with pytest.raises(ConfigError) as info:
        Config(url="https://x.example", inbox_identifier="tok", **extra)
    assert info.value.variable == variable


def test_texts_from_the_environment_and_empty_turns_one_off():
    config = Config.from_env({
        "CHATWOOT_URL": "https://x.example", "CHATWOOT_INBOX_ID": "tok",
        "CHATWOOT_LANGUAGE": "es", "CHATWOOT_TEXT_AFTER_HOURS": "",
        "CHATWOOT_HANDOFF_KEYWORDS": "gerente, supervisor",
    }, dotenv=False)
    assert config.text("handoff") == DEFAULTS["es"].handoff
    assert config.text("after_hours") == ""
    assert config.handoff_keywords == ("gerente", "supervisor")


@pytest.fixture
def cw():
    with FakeChatwoot() as chatwoot:
        yield chatwoot


def make(cw: FakeChatwoot, tmp_path, **extra) -> tuple[Mirror, list[AgentMessage]]:
    config = Config(url=cw.url, inbox_identifier=cw.inbox_identifier, account_id=1,
                    bot_token=cw.bot_token, db_path=str(tmp_path / "m.db"),
                    max_requests_per_minute=0, **extra)
    mirror = Mirror(config)
    sent: list[AgentMessage] = []
    mirror.on_agent_message(lambda m: sent.append(m) or None)
    return mirror, sent


def test_keyword_hands_over_and_tells_the_customer(cw, tmp_path):
    mirror, sent = make(cw, tmp_path)
    assert mirror.handoff_reason(PHONE, "quero um atendente") == "keyword_detected"
    assert not mirror.is_paused(PHONE)  # handoff_reason changes nothing
    mirror.log_exchange(PHONE, "qual o horário?", "Das 8h às 18h.")
    assert not mirror.is_paused(PHONE)
    mirror.log_incoming(PHONE, "quero falar com um atendente")
    assert mirror.is_paused(PHONE)
    assert mirror.flush()
    assert [m.text for m in sent] == [DEFAULTS["pt-BR"].handoff]
    assert sent[0].kind == "notice" and sent[0].contact.phone_number == "+5511987654321"
    public = [(m["content"], m["sender"]["type"]) for m in cw.messages() if not m["private"]]
    assert public[-1] == (DEFAULTS["pt-BR"].handoff, "agent_bot")  # mirrored as the bot's
    mirror.close()


def test_bot_side_handoff_opens_the_conversation_for_humans(tmp_path):
    with FakeChatwoot(bot_active=True) as cw:
        mirror, sent = make(cw, tmp_path, api_token=cw.user_token)
        mirror.log_exchange(PHONE, "qual o horário?", "Das 8h às 18h.")
        assert mirror.flush()
        [conv] = cw.conversations()
        assert conv["status"] == "pending"  # the bot's queue
        cw.emulator.conversations[conv["id"]].labels = ["vip"]
        cw.emulator.conversations[conv["id"]].custom_attributes = {"order_id": "A-1029"}
        assert mirror.handoff(PHONE, note="Cliente pediu reembolso")
        assert mirror.flush()
        [conv] = cw.conversations()
        assert conv["status"] == "open"
        assert conv["labels"] == ["vip", "bot-handoff"]  # merged, not replaced
        assert conv["custom_attributes"] == {"order_id": "A-1029",
                                             "handoff_reason": "user_request"}
        [note] = [m for m in cw.messages() if m["private"]]
        assert note["content"].splitlines() == [
            "Conversa transferida pelo bot (motivo: pedido de atendimento). Últimas mensagens:",
            "Cliente pediu reembolso",
            "Cliente: qual o horário?",
            "Bot: Das 8h às 18h.",
            f"Bot: {DEFAULTS['pt-BR'].handoff}",
        ]
        assert note["sender"]["type"] == "agent_bot"
        # agent 3 is online: no ticket text
        assert [m.text for m in sent] == [DEFAULTS["pt-BR"].handoff]
        mirror.resume(PHONE)
        assert mirror.flush()
        assert any(r[1].endswith("/toggle_typing_status") for r in cw.requests)
        mirror.close()


def test_nobody_online_gives_the_customer_a_protocol_number(cw, tmp_path):
    for agent in cw.emulator.agents.values():
        agent.availability_status = "offline"
    mirror, sent = make(cw, tmp_path, api_token=cw.user_token, language="en")
    mirror.log_incoming(PHONE, "I need a human")
    assert mirror.flush()
    assert mirror.flush()  # the ticket is queued by the worker once the handoff is done
    [conv] = cw.conversations()
    assert [m.text for m in sent] == [
        DEFAULTS["en"].handoff, DEFAULTS["en"].no_agent.format(protocol=conv["id"])]
    mirror.close()


def test_without_a_bot_token_only_the_local_pause_and_the_notice(cw, tmp_path):
    config = Config(url=cw.url, inbox_identifier=cw.inbox_identifier,
                    db_path=str(tmp_path / "m.db"), max_requests_per_minute=0)
    with Mirror(config) as mirror:
        mirror.log_incoming(PHONE, "oi")
        assert mirror.flush()
        assert mirror.handoff(PHONE)
        assert mirror.is_paused(PHONE)
        assert mirror.flush()
    assert not any(r[1].startswith("/api/v1/") for r in cw.requests)


def test_max_bot_turns_counts_since_the_last_change_of_hands(cw, tmp_path):
    mirror, sent = make(cw, tmp_path, max_bot_turns=3, handoff_keywords=())
    for i in range(2):
        mirror.log_exchange(PHONE, f"q{i}", f"a{i}")
    assert not mirror.is_paused(PHONE)
    mirror.log_exchange(PHONE, "q2", "a2")
    assert mirror.is_paused(PHONE)
    assert mirror.handoff_state.paused()[0].reason == "max_turns"
    mirror.resume(PHONE)
    mirror.log_exchange(PHONE, "q3", "a3")  # counting starts again after the resume
    assert not mirror.is_paused(PHONE)
    assert mirror.flush()
    assert len(sent) == 1  # the notice text is not itself counted as a bot turn
    mirror.close()


def test_outside_business_hours_the_customer_gets_the_after_hours_text(cw, tmp_path):
    # open only on a day that is not today: closed right now, whatever the real clock says
    other_day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[
        (datetime.now(timezone.utc).weekday() + 2) % 7]
    mirror, sent = make(cw, tmp_path, business_hours=f"{other_day} 08:00-18:00",
                        timezone="UTC", language="en")
    assert mirror.handoff_reason(PHONE, "hello") == "after_hours"
    mirror.log_incoming(PHONE, "hello")
    assert mirror.is_paused(PHONE)
    assert mirror.handoff_state.paused()[0].reason == "after_hours"
    assert mirror.flush()
    assert [m.text for m in sent] == [DEFAULTS["en"].after_hours]
    mirror.close()


def test_inside_business_hours_nothing_happens(cw, tmp_path):
    mirror, sent = make(cw, tmp_path, business_hours="mon-sun 00:00-23:59", timezone="UTC")
    with freeze_time(datetime(2026, 11, 24, 14, 0, tzinfo=timezone.utc)):
        assert mirror.handoff_reason(PHONE, "hello") is None
    mirror.close()


def test_resume_notice_is_optional(cw, tmp_path):
    handoff, resume = DEFAULTS["pt-BR"].handoff, DEFAULTS["pt-BR"].resume
    for notice, expected in ((False, [handoff]), (True, [handoff, resume])):
        mirror, sent = make(cw, tmp_path / str(notice), resume_notice=notice)
        mirror.log_incoming(PHONE, "oi")
        assert mirror.flush()
        mirror.handoff(PHONE)
        mirror.resume(PHONE)
        assert mirror.flush()
        assert [m.text for m in sent] == expected
        mirror.close()
