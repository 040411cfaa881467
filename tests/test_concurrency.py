"""Concurrent first messages from one new contact must yield one contact and one conversation."""

from __future__ import annotations

import threading

import pytest
import responses
from fake_chatwoot import ACCOUNT, BASE, BOT_TOKEN, INBOX, FakeChatwoot

from chatwoot_mirror import Config, Mirror

PUBLIC = f"/public/api/v1/inboxes/{INBOX}"


def config(db_path: str) -> Config:
    return Config(url=BASE, inbox_identifier=INBOX, account_id=ACCOUNT, bot_token=BOT_TOKEN,
                  db_path=db_path)


def run_together(targets) -> None:
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def wrap(fn):
        def go():
            barrier.wait()
            try:
                fn()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
        return go

    threads = [threading.Thread(target=wrap(fn)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors


@pytest.fixture
def fake():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        # 20 ms per public call: without serialisation every thread would list an empty
        # conversation set and create its own conversation.
        yield FakeChatwoot(rsps, latency=0.02)


def test_ten_simultaneous_first_messages_one_mirror(fake, db_path):
    with Mirror(config(db_path)) as mirror:
        run_together([
            (lambda i=i: mirror.log_exchange("+55 11 98765-4321", f"msg {i}", f"reply {i}"))
            for i in range(10)
        ])
    creates = [c for c in fake.calls() if c == ("POST", f"{PUBLIC}/contacts")]
    conv_creates = [c for c in fake.calls()
                    if c == ("POST", f"{PUBLIC}/contacts/wa-5511987654321/conversations")]
    assert len(creates) == 1
    assert len(conv_creates) == 1
    assert len(fake.conversations) == 1
    assert len(fake.messages) == 20
    assert {m["conversation_id"] for m in fake.messages} == {128}


def test_separate_mirrors_sharing_one_store_file(fake, db_path):
    """Several worker processes on one host: only the store's lease serialises them."""
    mirrors = [Mirror(config(db_path)) for _ in range(5)]
    try:
        run_together([
            (lambda m=m, i=i: m.log_incoming("5511987654321@s.whatsapp.net", f"msg {i}"))
            for i, m in enumerate(mirrors * 2)
        ])
    finally:
        for m in mirrors:
            m.close()
    assert len(fake.conversations) == 1
    assert len(fake.messages) == 10


def test_different_contacts_resolve_in_parallel(fake, db_path):
    with Mirror(config(db_path)) as mirror:
        run_together([
            (lambda i=i: mirror.log_incoming(f"55119876543{i:02d}", "oi")) for i in range(8)
        ])
    assert len(fake.contacts) == 8
    assert len(fake.conversations) == 8
