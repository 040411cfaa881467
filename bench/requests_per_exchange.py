"""HTTP requests Chatwoot receives per mirrored exchange (user message + bot reply).

Run: python bench/requests_per_exchange.py
The floor is 2 (one request per message). Counts come from the requests Chatwoot
receives, recorded by a contract-shaped Chatwoot stand-in (tests/fake_chatwoot.py).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import responses

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fake_chatwoot import ACCOUNT, BASE, BOT_TOKEN, INBOX, FakeChatwoot  # noqa: E402

from chatwoot_mirror import Config, Mirror  # noqa: E402


def measure(*, bot_token: bool, exchanges: int = 50) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, responses.RequestsMock(
        assert_all_requests_are_fired=False
    ) as rsps:
        fake = FakeChatwoot(rsps)
        extra = {"account_id": ACCOUNT, "bot_token": BOT_TOKEN} if bot_token else {}
        config = Config(url=BASE, inbox_identifier=INBOX, db_path=f"{tmp}/m.db",
                        max_requests_per_minute=0, **extra)
        with Mirror(config) as mirror:
            mirror.log_exchange("5511987654321", "oi", "olá")
            assert mirror.flush()
            new_contact = len(rsps.calls)
            for i in range(exchanges):
                mirror.log_exchange("5511987654321", f"pergunta {i}", f"resposta {i}")
                assert mirror.flush()
            steady = (len(rsps.calls) - new_contact) / exchanges
        with Mirror(config) as mirror:  # a restart: the store remembers the conversation
            before = len(rsps.calls)
            mirror.log_exchange("5511987654321", "voltei", "bem-vindo")
            assert mirror.flush()
            after_restart = len(rsps.calls) - before
        assert len(fake.conversations) == 1
    return {"new_contact": new_contact, "steady_state": steady, "after_restart": after_restart}


def main() -> None:
    print("requests per exchange (user message + bot reply)")
    print(f"{'mode':<22}{'new contact':>12}{'steady state':>14}{'after restart':>15}")
    for label, bot in (("with bot token", True), ("without bot token", False)):
        r = measure(bot_token=bot)
        print(f"{label:<22}{r['new_contact']:>12}{r['steady_state']:>14.2f}"
              f"{r['after_restart']:>15}")


if __name__ == "__main__":
    main()
