from __future__ import annotations

import re

import pytest

from chatwoot_mirror.identity import identify

SAME_PERSON = [
    "+55 (11) 98765-4321",
    "5511987654321",
    "+5511987654321",
    "55 11 98765 4321",
    "5511987654321@c.us",
    "5511987654321@s.whatsapp.net",
    "5511987654321:17@s.whatsapp.net",
]


@pytest.mark.parametrize("raw", SAME_PERSON)
def test_every_phone_form_maps_to_one_key(raw):
    identity = identify(raw)
    assert identity.key == "wa-5511987654321"
    assert identity.source_id == "wa-5511987654321"
    assert identity.phone_number == "+5511987654321"
    assert identity.identifier == "5511987654321"
    assert identity.kind == "phone"


def test_360dialog_wa_id_is_a_phone():
    # "from"/"wa_id" in 360dialog payloads: digits, no "+"
    assert identify("16315551234").phone_number == "+16315551234"


@pytest.mark.parametrize("raw", ["551187654321", "551187654321@s.whatsapp.net", "+55 11 8765-4321"])
def test_brazilian_mobile_without_ninth_digit_is_the_same_person(raw):
    assert identify(raw).key == "wa-5511987654321"


def test_ninth_digit_merge_can_be_turned_off():
    assert identify("551187654321", br_ninth_digit=False).key == "wa-551187654321"


def test_brazilian_landline_is_not_given_a_ninth_digit():
    assert identify("551133334444").key == "wa-551133334444"


def test_bsuid_without_phone():
    identity = identify("BR.1502576394655843")
    assert identity.kind == "bsuid"
    assert identity.phone_number is None
    assert identity.identifier == "BR.1502576394655843"
    assert identity.key == "bsuid-BR_1502576394655843"


def test_group_and_lid_jids_are_not_phones():
    assert identify("120363025246125486@g.us").phone_number is None
    assert identify("120363025246125486@g.us").key == "wag-120363025246125486"
    assert identify("176543210987654@lid").key == "lid-176543210987654"


def test_default_country_code_for_national_numbers():
    assert identify("(11) 98765-4321", default_country_code="55").key == "wa-5511987654321"
    assert identify("011 98765-4321", default_country_code="55").key == "wa-5511987654321"
    assert identify("5511987654321", default_country_code="55").key == "wa-5511987654321"
    assert identify("+1 415 555 2671", default_country_code="55").key == "wa-14155552671"


@pytest.mark.parametrize(
    "raw", SAME_PERSON + ["BR.15025", "user@example.com", "ação / 42", "x" * 300, "12"]
)
def test_source_id_only_uses_safe_characters(raw):
    key = identify(raw).key
    assert re.fullmatch(r"[A-Za-z0-9_-]+", key)
    assert len(key) <= 100


def test_opaque_ids_are_deterministic_and_distinct():
    assert identify("user@example.com").key == identify("user@example.com").key
    assert identify("user@example.com").key != identify("user@example.org").key
    assert identify("customer-17").key == "id-customer-17"


def test_too_short_numbers_are_not_sent_as_phone_numbers():
    # Chatwoot answers 422 for a phone_number that is not E.164
    assert identify("12").phone_number is None


@pytest.mark.parametrize("raw", ["", "   ", None])
def test_empty_contact_is_an_error(raw):
    with pytest.raises(ValueError):
        identify(raw)
