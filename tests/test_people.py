"""One person, one contact (issue #16): the names WhatsApp gives a person, linked.

Payloads are the contract fixtures in ``tests/fixtures/contracts`` (their README cites each
source) and variants of them written from the providers' documentation:

* uazapi (``research/providers.md`` §2.4, uazapi's webhook docs and captures): a message
  carries ``chatid`` (the phone JID, or the LID when WhatsApp addresses the chat by LID),
  ``chatlid``, ``sender`` (a LID), ``sender_pn`` (the phone JID) and ``sender_lid``;
* 360dialog / Cloud API (§1.2, 360dialog's "Usernames and BSUID" page): ``contacts[]`` has
  ``wa_id`` and, since 2026, ``user_id`` (a BSUID); a user who adopts a username stops
  sending ``wa_id``/``from`` and only ``user_id``/``from_user_id`` remain.

Each case runs end to end on the emulator and counts Chatwoot contacts and conversations.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
from conftest import contract
from fake_provider import FakeProvider
from test_adapters_e2e import Host, dialog360, uazapi

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.identity import identify, legacy_key
from chatwoot_mirror.integrations import handle_inbound
from chatwoot_mirror.people import ALIASES, People
from chatwoot_mirror.store import MemoryStore
from chatwoot_mirror.testing import FakeChatwoot

PHONE, LID = "5511988887777", "100000000000001"
BSUID = "BR.1502576394655843"


@pytest.fixture
def chatwoot(tmp_path):
    with FakeChatwoot(webhook_secret="inbox-secret") as cw:
        config = Config(url=cw.url, inbox_identifier=cw.inbox_identifier,
                        account_id=cw.account_id, bot_token=cw.bot_token,
                        webhook_secret="inbox-secret",
                        db_path=str(tmp_path / "m.db"), max_requests_per_minute=0,
                        retry_base_seconds=0.02, retry_max_seconds=0.1)
        with Mirror(config) as mirror:
            yield cw, mirror


def echo_bot(event) -> str:
    return f"recebido: {event.text}"


# -- uazapi --------------------------------------------------------------------------------

def uazapi_message(variant: str, n: int) -> dict[str, Any]:
    """uazapi_text.json (a real capture: phone chat, with its LID beside it) and the forms
    the same person's messages take when WhatsApp addresses them by LID."""
    body = copy.deepcopy(contract("uazapi/uazapi_text.json"))
    message, chat = body["message"], body["chat"]
    message["messageid"] = f"3EB0{n:016X}"
    message["id"] = f"5511900001111:{message['messageid']}"
    message["text"] = message["content"]["text"] = f"mensagem {n}"
    phone_jid, lid_jid = f"{PHONE}@s.whatsapp.net", f"{LID}@lid"
    if variant == "phone_only":  # an instance that reports no LIDs
        for m, keys in ((message, ("chatlid", "sender_lid")), (chat, ("wa_chatlid",))):
            for key in keys:
                m[key] = ""
        message["sender"] = message["sender_pn"] = phone_jid
    elif variant == "lid_chat":  # the chat is addressed by LID; sender_pn still has the phone
        message["chatid"], message["chatlid"] = lid_jid, ""
        chat["wa_chatid"], chat["wa_chatlid"] = lid_jid, ""
        message["sender"], message["sender_pn"] = lid_jid, phone_jid
    elif variant == "lid_only":  # the phone is hidden altogether
        message["chatid"], message["chatlid"], message["sender_pn"] = lid_jid, "", ""
        chat["wa_chatid"], chat["wa_chatlid"], chat["phone"] = lid_jid, "", ""
        message["sender"] = message["sender_lid"] = lid_jid
    else:
        assert variant == "captured"
    return body


def deliver(mirror: Mirror, adapter, body: dict[str, Any]) -> None:
    for event in adapter.parse({}, json.dumps(body).encode()):
        handle_inbound(mirror, adapter, event, echo_bot)
    assert mirror.flush()


@pytest.mark.parametrize("order", [
    ("phone_only", "lid_chat", "lid_only"),
    ("lid_only", "lid_chat", "phone_only"),
    ("lid_chat", "phone_only", "lid_only"),
    ("captured", "lid_only", "phone_only"),
    ("lid_only", "captured", "lid_chat"),
])
def test_uazapi_phone_and_lid_are_one_contact_in_any_order(chatwoot, order):
    cw, mirror = chatwoot
    adapter, fake, _ = uazapi()
    for n, variant in enumerate(order):
        deliver(mirror, adapter, uazapi_message(variant, n))
    assert len(cw.contacts()) == 1
    [conv] = cw.conversations()
    shown = [m["content"] for m in cw.messages(conv["id"])]
    assert shown == [x for n in range(3) for x in (f"mensagem {n}", f"recebido: mensagem {n}")]
    # each reply went where that message came from: a LID chat is answered on the LID
    numbers = [body["number"] for body in fake.sent("POST", "/send/text")]
    expected = {"phone_only": PHONE, "captured": PHONE, "lid_chat": f"{LID}@lid",
                "lid_only": f"{LID}@lid"}
    assert numbers == [expected[v] for v in order]


def test_without_a_pair_a_lid_cannot_be_told_from_a_stranger(chatwoot):
    """The limit, stated: a phone-only message and a LID-only one share no name."""
    cw, mirror = chatwoot
    adapter, _, _ = uazapi()
    deliver(mirror, adapter, uazapi_message("phone_only", 0))
    deliver(mirror, adapter, uazapi_message("lid_only", 1))
    assert len(cw.contacts()) == 2


def test_an_agent_reply_goes_to_the_lid_the_customer_last_wrote_from(chatwoot):
    cw, mirror = chatwoot
    adapter, fake, _ = uazapi()
    host = Host(mirror, adapter, echo_bot)
    cw.webhook_url = host.chatwoot_url
    try:
        deliver(mirror, adapter, uazapi_message("phone_only", 0))
        deliver(mirror, adapter, uazapi_message("lid_chat", 1))
        [conv] = cw.conversations()
        before = len(fake.sent("POST", "/send/text"))
        cw.agent_reply(conv["id"], "Olá, sou a Ana")
        deadline = time.monotonic() + 5
        while len(fake.sent("POST", "/send/text")) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        sent = fake.sent("POST", "/send/text")[-1]
        assert sent["text"] == "Olá, sou a Ana" and sent["number"] == f"{LID}@lid"
    finally:
        host.close()


# -- 360dialog -----------------------------------------------------------------------------

def d360(name: str, n: int) -> dict[str, Any]:
    body = copy.deepcopy(contract(f"dialog360/{name}.json"))
    value = body["entry"][0]["changes"][0]["value"]
    value["messages"][0]["id"] = f"wamid.TEST{n:04d}"
    value["messages"][0]["text"] = {"body": f"mensagem {n}"}
    return body


@pytest.mark.parametrize("order", [
    ("cloud_text", "cloud_text_bsuid", "cloud_text_bsuid_no_phone"),
    ("cloud_text_bsuid_no_phone", "cloud_text_bsuid", "cloud_text"),
    ("cloud_text_bsuid", "cloud_text_bsuid_no_phone", "cloud_text"),
])
def test_360dialog_phone_withheld_later_is_the_same_contact(chatwoot, order):
    cw, mirror = chatwoot
    adapter, fake, _ = dialog360()
    for n, name in enumerate(order):
        deliver(mirror, adapter, d360(name, n))
    assert len(cw.contacts()) == 1 and len(cw.conversations()) == 1
    sent = fake.sent("POST", "/messages")
    assert len(sent) == len(order)
    for body, name in zip(sent, order, strict=True):
        if name == "cloud_text_bsuid_no_phone":  # no phone to send to: the BSUID
            assert body.get("recipient") == BSUID and "to" not in body
        else:
            assert body.get("to") == PHONE
    [contact] = cw.contacts()
    if order[0] != "cloud_text_bsuid_no_phone":
        assert contact["phone_number"] == f"+{PHONE}"


# -- the store's links, on every backend ---------------------------------------------------

def test_links_are_first_come_and_shared_through_the_store():
    store = MemoryStore()
    one = People(store, identify, legacy_key)
    two = People(store, identify, legacy_key)  # another host on the same store
    assert one.learn(f"{LID}@lid").key == f"lid-{LID}"
    assert two.learn(f"{LID}@lid", [f"{PHONE}@s.whatsapp.net"]).key == f"lid-{LID}"
    assert one.identity(PHONE).key == f"lid-{LID}"  # the phone now names the LID's person
    assert one.identity(PHONE).raw == PHONE  # and replies to it go to the phone
    assert store.get_value(ALIASES, f"wa-{PHONE}", time.time()) == f"lid-{LID}"
    assert two.address(f"lid-{LID}").raw == f"{LID}@lid"
    assert two.address(f"lid-{LID}").phone_number == f"+{PHONE}"


def test_a_store_written_by_0_1_keeps_its_keys():
    """0.1 keyed a Mexican mobile with its old ``1`` as ``wa-521...``; the person keeps it."""
    store = MemoryStore()
    store.save_contact("wa-5215512345678", "wa-5215512345678", 41)
    people = People(store, identify, legacy_key)
    assert identify("+52 1 55 1234 5678").key == "wa-525512345678"  # today's key
    for form in ("5215512345678@s.whatsapp.net", "+52 1 55 1234 5678", "+5215512345678"):
        assert people.identity(form).key == "wa-5215512345678", form
    assert people.learn("+52 55 1234 5678", ["5215512345678@s.whatsapp.net"]).key \
        == "wa-5215512345678"
    assert people.identity("+52 55 1234 5678").key == "wa-5215512345678"


# -- the country table ---------------------------------------------------------------------

COUNTRY_CASES = [
    # Brazil: the ninth digit
    ("+55 11 98765-4321", "wa-5511987654321"),
    ("55 11 8765-4321", "wa-5511987654321"),
    ("551187654321@s.whatsapp.net", "wa-5511987654321"),
    ("+55 11 3333-4444", "wa-551133334444"),        # a landline gets no ninth digit
    ("0055 11 98765-4321", "wa-5511987654321"),     # the 00 international prefix
    # Argentina: 549 for mobiles, whether written with the 9, without it, or with 15
    ("+54 9 11 2345-6789", "wa-5491123456789"),
    ("5491123456789@s.whatsapp.net", "wa-5491123456789"),
    ("541123456789@s.whatsapp.net", "wa-5491123456789"),
    ("+54 11 15 2345-6789", "wa-5491123456789"),
    # Mexico: 52 without the 1 that mobiles lost in 2019
    ("+52 1 55 1234 5678", "wa-525512345678"),
    ("5215512345678@s.whatsapp.net", "wa-525512345678"),
    ("+52 55 1234 5678", "wa-525512345678"),
    # a trunk zero written after the country code
    ("+44 07911 123456", "wa-447911123456"),
    ("+44 7911 123456", "wa-447911123456"),
    ("0044 7911 123456", "wa-447911123456"),
    # the other names
    (f"{LID}@lid", f"lid-{LID}"),
    (BSUID, "bsuid-BR_1502576394655843"),
    ("120363000000000001@g.us", "wag-120363000000000001"),
]


@pytest.mark.parametrize("written,key", COUNTRY_CASES)
def test_country_forms_map_to_one_key(written, key):
    assert identify(written).key == key


@pytest.mark.parametrize("written,country,key", [
    ("011 98765-4321", "55", "wa-5511987654321"),    # a trunk 0 and the area code
    ("(11) 98765-4321", "55", "wa-5511987654321"),
    ("011 15 2345-6789", "54", "wa-5491123456789"),  # Argentina's 0 + area + 15
    ("07911 123456", "44", "wa-447911123456"),
    ("55 1234 5678", "52", "wa-525512345678"),
])
def test_national_numbers_with_a_default_country(written, country, key):
    assert identify(written, default_country_code=country).key == key


@pytest.mark.parametrize("written,old", [
    ("5215512345678@s.whatsapp.net", "wa-5215512345678"),
    ("541123456789@s.whatsapp.net", "wa-541123456789"),
    ("+44 07911 123456", "wa-4407911123456"),
    ("+55 11 98765-4321", None),  # most numbers kept their key
])
def test_legacy_keys_are_what_0_1_computed(written, old):
    assert legacy_key(written) == old


# -- a link learned after both people exist: the merge -------------------------------------

@pytest.fixture
def chatwoot_with(tmp_path):
    """A mirror on the emulator, with or without a user token."""
    made = []

    def make(user_token: bool):
        cw = FakeChatwoot()
        cw.start()
        config = Config(url=cw.url, inbox_identifier=cw.inbox_identifier,
                        account_id=cw.account_id, bot_token=cw.bot_token,
                        api_token=cw.user_token if user_token else None,
                        db_path=str(tmp_path / f"m{len(made)}.db"), max_requests_per_minute=0,
                        retry_base_seconds=0.02, retry_max_seconds=0.1)
        mirror = Mirror(config)
        made.append((cw, mirror))
        return cw, mirror

    yield make
    for cw, mirror in made:
        mirror.close(timeout=1)
        cw.stop()


def two_people_then_the_link(cw, mirror) -> list[tuple[str, str, int]]:
    adapter, _, _ = uazapi()
    deliver(mirror, adapter, uazapi_message("phone_only", 0))
    deliver(mirror, adapter, uazapi_message("lid_only", 1))
    assert len(cw.contacts()) == 2  # nothing said they were one person
    before = len(cw.requests)
    deliver(mirror, adapter, uazapi_message("captured", 2))  # phone and LID together
    during = cw.requests[before:]
    deliver(mirror, adapter, uazapi_message("lid_only", 3))
    return during


def test_a_link_learned_late_merges_the_contacts_with_a_user_token(chatwoot_with):
    cw, mirror = chatwoot_with(user_token=True)
    during = two_people_then_the_link(cw, mirror)
    [contact] = cw.contacts()  # Chatwoot's contact_merge kept the older one
    assert contact["phone_number"] == f"+{PHONE}"
    merges = [r for r in during if r[1].endswith("/actions/contact_merge")]
    assert merges == [("POST", "/api/v1/accounts/1/actions/contact_merge", 200)]
    first, second = sorted(cw.conversations(), key=lambda c: c["id"])
    # later messages, under either name, go to the older contact's conversation
    assert [m["content"] for m in cw.messages(first["id"]) if m["message_type"] == 0] == [
        "mensagem 0", "mensagem 2", "mensagem 3"]
    assert [m["content"] for m in cw.messages(second["id"]) if m["message_type"] == 0] == [
        "mensagem 1"]
    assert mirror.identify(f"{LID}@lid").key == f"wa-{PHONE}"


def test_without_a_user_token_a_note_points_to_the_first_contact(chatwoot_with):
    cw, mirror = chatwoot_with(user_token=False)
    during = two_people_then_the_link(cw, mirror)
    assert len(cw.contacts()) == 2 and not any("contact_merge" in r[1] for r in during)
    first, second = sorted(cw.conversations(), key=lambda c: c["id"])
    notes = [m for m in cw.messages(second["id"]) if m["private"]]
    assert [n["content"] for n in notes] == [
        f"Esta pessoa é a mesma da conversa #{first['id']} (o WhatsApp mudou o identificador "
        "dela). As próximas mensagens vão para lá."]
    assert [m["content"] for m in cw.messages(first["id"]) if m["message_type"] == 0] == [
        "mensagem 0", "mensagem 2", "mensagem 3"]


def test_a_merge_hands_over_the_handoff_state():
    store = MemoryStore()
    merged: list[tuple[str, str]] = []
    people = People(store, identify, legacy_key, on_merge=lambda b, m: merged.append((b, m)))
    store.save_contact(f"wa-{PHONE}", f"wa-{PHONE}", 41)
    store.save_contact(f"lid-{LID}", f"lid-{LID}", 42)
    people.learn(PHONE)
    people.learn(f"{LID}@lid")
    from chatwoot_mirror.store import HandoffRecord
    assert store.put_handoff(HandoffRecord(f"lid-{LID}", "human", "agent_reply", 1.0, 1.0,
                                           128), None)
    assert people.learn(f"{LID}@lid", [f"{PHONE}@s.whatsapp.net"]).key == f"wa-{PHONE}"
    assert merged == [(f"wa-{PHONE}", f"lid-{LID}")]
    moved = store.get_handoff(f"wa-{PHONE}")
    assert moved is not None and moved.state == "human" and moved.contact_key == f"wa-{PHONE}"
    assert people.identity(f"{LID}@lid").key == f"wa-{PHONE}"  # through the forward
    people.learn(f"{LID}@lid", [f"{PHONE}@s.whatsapp.net"])
    assert len(merged) == 1  # learned once, merged once


# -- Z-PRO ---------------------------------------------------------------------------------

def zpro_message(sender: str, n: int) -> dict[str, Any]:
    """whaticket_saas_connection_webhook_message.json (help.whaticket-saas.com/webhook);
    the second form, with the LID as ``sender`` beside the same ticket contact, is
    constructed: the Whaticket family keeps one contact record per person."""
    body = copy.deepcopy(contract("zpro/whaticket_saas_connection_webhook_message.json"))
    body["sender"] = sender
    body["mensagem"] = body["ticketData"]["lastMessage"] = f"mensagem {n}"
    body["ticketData"]["updatedAt"] = f"2026-01-01T12:00:0{n}.000Z"
    return body


@pytest.mark.parametrize("order", [(PHONE, f"{LID}@lid"), (f"{LID}@lid", PHONE)])
def test_zpro_sender_forms_of_one_ticket_contact_are_one_contact(chatwoot, order):
    from chatwoot_mirror.integrations import ZproAdapter

    cw, mirror = chatwoot
    adapter = ZproAdapter("https://api.zpro.example.com", "api-1", "jwt", webhook_secret="zz")
    FakeProvider({("POST", "/v2/api/external/api-1"): (
        200, {"message": "Message add queue"}, "application/json")}).mount_on(
        adapter.session, "https://api.zpro.example.com")
    for n, sender in enumerate(order):
        deliver(mirror, adapter, zpro_message(sender, n))
    assert len(cw.contacts()) == 1 and len(cw.conversations()) == 1


def test_messages_queued_before_a_merge_reach_the_older_contacts_conversation(chatwoot_with):
    cw, mirror = chatwoot_with(user_token=True)
    adapter, _, _ = uazapi()
    deliver(mirror, adapter, uazapi_message("phone_only", 0))
    deliver(mirror, adapter, uazapi_message("lid_only", 1))
    cw.faults.outage = True  # Chatwoot is down: what follows waits in the queue
    for n, variant in ((2, "lid_only"), (3, "captured")):
        for event in adapter.parse({}, json.dumps(uazapi_message(variant, n)).encode()):
            handle_inbound(mirror, adapter, event, echo_bot)
    assert not mirror.flush(timeout=0.3)
    cw.faults.outage = False
    assert mirror.flush(timeout=10)
    [contact] = cw.contacts()
    first, second = sorted(cw.conversations(), key=lambda c: c["id"])
    assert [m["content"] for m in cw.messages(second["id"]) if m["message_type"] == 0] == [
        "mensagem 1"]
    assert sorted(m["content"] for m in cw.messages(first["id"]) if m["message_type"] == 0) == [
        "mensagem 0", "mensagem 2", "mensagem 3"]
