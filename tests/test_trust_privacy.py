"""A store that outlives its Chatwoot never sends a customer's words to someone else.

On the emulator: a store reused against a fresh Chatwoot whose low conversation ids
belong to other contacts, with the same URL (a restore from backup, a reinstall) and with
a new URL (staging to production); a change of URL, account or inbox; a contact deleted
or merged by an agent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_chatwoot import ACCOUNT, BASE, INBOX
from fake_chatwoot import FakeChatwoot as ResponsesChatwoot
from test_mirror import PUBLIC, make_config

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.client import ChatwootClient
from chatwoot_mirror.conversations import instance_id
from chatwoot_mirror.store import SQLiteStore
from chatwoot_mirror.testing import FakeChatwoot

MARIA = "5511987654321"
JOAO = "5521999990001"
ANA = "5531988887777"
CPF = "meu CPF é 123.456.789-00"


def config(cw: FakeChatwoot, db: Path | str, **extra: object) -> Config:
    return Config(url=cw.url, inbox_identifier=cw.inbox_identifier, account_id=cw.account_id,
                  bot_token=cw.bot_token, db_path=str(db), retry_base_seconds=0.05,
                  retry_max_seconds=0.2, max_requests_per_minute=0, **extra)


def conversation_of(cw: FakeChatwoot, phone: str) -> list[dict]:
    return [c for c in cw.conversations() if c["meta"]["sender"]["phone_number"] == f"+{phone}"]


def contents(cw: FakeChatwoot, conversation_id: int) -> list[str]:
    return [m["content"] for m in cw.messages(conversation_id)]


def mirror_once(cw: FakeChatwoot, db: Path, phone: str, text: str) -> None:
    """One process's life: start, mirror one customer message, deliver it, stop."""
    with Mirror(config(cw, db)) as mirror:
        assert mirror.log_incoming(phone, text)
        assert mirror.flush()


def first_chatwoot_with_maria(db: Path, **kwargs: object) -> tuple[int, str, str]:
    """Maria mirrored into conversation 128 of a Chatwoot that then goes away."""
    with FakeChatwoot(**kwargs) as first:
        with Mirror(config(first, db)) as mirror:
            assert mirror.log_incoming(MARIA, "oi")
            assert mirror.flush()
        assert [c["id"] for c in first.conversations()] == [128]
        return first.port, first.inbox_identifier, first.bot_token


def others_take_the_low_ids(cw: FakeChatwoot, tmp_path: Path,
                            expected: tuple[int, int] = (128, 129)) -> None:
    with Mirror(config(cw, tmp_path / "others.db")) as others:
        assert others.log_incoming(JOAO, "sou o João")
        assert others.log_incoming(ANA, "sou a Ana")
        assert others.flush()
    assert sorted(c["id"] for c in cw.conversations()) == list(expected)


def assert_maria_only_in_her_own(cw: FakeChatwoot) -> None:
    for phone in (JOAO, ANA):
        [conv] = conversation_of(cw, phone)
        assert all(CPF not in text for text in contents(cw, conv["id"]))
    [mine] = conversation_of(cw, MARIA)
    assert mine["id"] not in (128, 129)
    assert contents(cw, mine["id"])[-1] == CPF


@pytest.mark.parametrize("maria_exists", [False, True], ids=["contact-gone", "contact-kept"])
def test_restored_chatwoot_at_the_same_url(tmp_path, maria_exists):
    db = tmp_path / "mirror.db"
    port, inbox, bot = first_chatwoot_with_maria(db)
    # The same URL, inbox and token, rewound: 128 and 129 now belong to other customers.
    with FakeChatwoot(port=port, inbox_identifier=inbox, bot_token=bot) as restored:
        if maria_exists:  # she was there before the backup, without this conversation
            ChatwootClient(restored.url, inbox).create_contact(
                f"wa-{MARIA}", phone_number=f"+{MARIA}", name="Maria")
        others_take_the_low_ids(restored, tmp_path)
        with Mirror(config(restored, db)) as mirror:
            assert mirror.log_incoming(MARIA, CPF)
            assert mirror.flush()
        assert_maria_only_in_her_own(restored)
        # the remembered id was read through the contact-scoped API, which said no
        assert ("GET", f"/public/api/v1/inboxes/{inbox}/contacts/wa-{MARIA}/conversations/128",
                404) in restored.requests


def test_new_chatwoot_at_another_url(tmp_path):
    db = tmp_path / "mirror.db"
    _, inbox, bot = first_chatwoot_with_maria(db)
    with FakeChatwoot(inbox_identifier=inbox, bot_token=bot) as production:
        others_take_the_low_ids(production, tmp_path)
        with Mirror(config(production, db)) as mirror:
            assert mirror.log_incoming(MARIA, CPF)
            assert mirror.flush()
        assert_maria_only_in_her_own(production)
        # ids bound to the old URL are not even checked: the contact is resolved afresh
        assert not [r for r in production.requests
                    if r[1].endswith(f"wa-{MARIA}/conversations/128")]


@pytest.mark.parametrize("changed", ["url", "account", "inbox", "unbound"])
def test_ids_bound_to_another_instance_are_never_used(tmp_path, changed):
    """A change of URL, account or inbox identifier (or a row written before instances
    were recorded) makes the remembered ids unusable: nothing is silently reused."""
    import responses

    db = str(tmp_path / "mirror.db")
    other = {
        "url": instance_id("https://staging.example.com", ACCOUNT, INBOX),
        "account": instance_id(BASE, 2, INBOX),
        "inbox": instance_id(BASE, ACCOUNT, "another-inbox-identifier"),
        "unbound": None,
    }[changed]
    store = SQLiteStore(db)
    store.save_contact(f"wa-{MARIA}", f"wa-{MARIA}", 42, instance=other)
    store.set_conversation(f"wa-{MARIA}", 999)
    store.set_last_message_id(f"wa-{MARIA}", 777)
    store.close()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = ResponsesChatwoot(rsps)
        fake.conversations[999] = {"id": 999, "source_id": "wa-someone-else", "status": "open"}
        with Mirror(make_config(db)) as mirror:
            assert mirror.log_incoming(MARIA, CPF)
            assert mirror.flush()
            record = mirror.store.get_contact(f"wa-{MARIA}")
        assert fake.calls() == [
            ("POST", f"{PUBLIC}/contacts"),
            ("GET", f"{PUBLIC}/contacts/wa-{MARIA}/conversations"),
            ("POST", f"{PUBLIC}/contacts/wa-{MARIA}/conversations"),
            ("POST", f"/api/v1/accounts/{ACCOUNT}/conversations/128/messages"),
        ]
    assert (record.conversation_id, record.instance) == (128, instance_id(BASE, ACCOUNT, INBOX))
    assert SQLiteStore(db).last_message_id(f"wa-{MARIA}") != 777  # the old floor is gone


def test_contact_deleted_in_chatwoot_is_resolved_again(tmp_path):
    with FakeChatwoot() as cw, Mirror(config(cw, tmp_path / "m.db")) as mirror:
        assert mirror.log_incoming(MARIA, "oi")
        assert mirror.flush()
        [before] = cw.contacts()
        cw.delete_contact(before["id"])
        assert mirror.log_incoming(MARIA, CPF)  # same process: 128 was confirmed already
        assert mirror.flush()
        [conv] = cw.conversations()
        assert conv["id"] == 129 and contents(cw, 129) == [CPF]
        [after] = cw.contacts()
        assert after["id"] != before["id"] and after["phone_number"] == f"+{MARIA}"
        assert mirror.dead_letters() == []


def test_contact_deleted_while_the_mirror_was_down(tmp_path):
    db = tmp_path / "m.db"
    with FakeChatwoot() as cw:
        mirror_once(cw, db, MARIA, "oi")
        cw.delete_contact(cw.contacts()[0]["id"])
        others_take_the_low_ids(cw, tmp_path, (129, 130))  # ids are never handed out twice
        mirror_once(cw, db, MARIA, CPF)
        [mine] = conversation_of(cw, MARIA)
        assert contents(cw, mine["id"]) == [CPF]
        for phone in (JOAO, ANA):
            assert CPF not in contents(cw, conversation_of(cw, phone)[0]["id"])


def test_contact_merged_in_chatwoot_keeps_landing_in_the_merged_persons_conversation(tmp_path):
    db = tmp_path / "m.db"
    with FakeChatwoot() as cw:
        mirror_once(cw, db, MARIA, "oi")
        ChatwootClient(cw.url, cw.inbox_identifier).create_contact(
            "crm-maria", name="Maria Silva (CRM)", identifier="maria@crm")
        base = next(c for c in cw.contacts() if c["identifier"] == "maria@crm")
        mergee = next(c for c in cw.contacts() if c["id"] != base["id"])
        cw.merge_contacts(base["id"], mergee["id"])
        mirror_once(cw, tmp_path / "o.db", JOAO, "sou o João")
        mirror_once(cw, db, MARIA, CPF)  # a restart: the remembered id is checked
        merged = next(c for c in cw.conversations() if c["id"] == 128)
        assert merged["meta"]["sender"]["id"] == base["id"]
        assert contents(cw, 128) == ["oi", CPF]
        assert CPF not in contents(cw, conversation_of(cw, JOAO)[0]["id"])
