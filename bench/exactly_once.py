"""Lost and doubled messages under faults, with and without a bot token.

    python bench/exactly_once.py

Every message is posted to the Chatwoot emulator while it answers 500 to a share of the
requests and drops the connection after committing another share (the ambiguous case).
Counts what Chatwoot ends up holding against what was logged.
"""

from __future__ import annotations

import tempfile
from collections import Counter

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.testing import FakeChatwoot, Faults


def run(bot: bool, exchanges: int = 250, contacts: int = 10) -> dict[str, int]:
    faults = Faults(error_rate=0.2, drop_after_commit_rate=0.2, seed=11)
    with FakeChatwoot(faults=faults) as cw, tempfile.TemporaryDirectory() as tmp:
        extra = {"account_id": cw.account_id, "bot_token": cw.bot_token} if bot else {}
        config = Config(url=cw.url, inbox_identifier=cw.inbox_identifier,
                        db_path=f"{tmp}/m.db", retry_base_seconds=0.01,
                        retry_max_seconds=0.05, max_requests_per_minute=0, **extra)
        with Mirror(config) as mirror:
            sent = []
            for i in range(exchanges):
                contact = f"55119300{i % contacts:05d}"
                # short, repetitive texts: the hard case for matching by content
                question, answer = ("ok", "certo") if i % 3 == 0 else (f"q{i}", f"a{i}")
                mirror.log_exchange(contact, question, answer)
                sent += [(contact, question), (contact, answer)]
            assert mirror.flush(300)
            retried = mirror.stats()["retried"]
        prefix = "" if bot else "🤖 "
        per_conversation = Counter()
        for m in cw.messages():
            per_conversation[(m["conversation_id"], m["content"].removeprefix(prefix))] += 1
        expected = Counter()
        conv_of = {c["meta"]["sender"]["phone_number"].lstrip("+"): c["id"]
                   for c in cw.conversations()}
        for contact, text in sent:
            expected[(conv_of[contact], text)] += 1
        lost = sum((expected - per_conversation).values())
        doubled = sum((per_conversation - expected).values())
    return {"messages": len(sent), "retried": retried, "lost": lost, "doubled": doubled}


def main() -> None:
    print("faults: 20% answered 500, 20% committed then connection dropped")
    for label, bot in (("with bot token (marker look-up)", True),
                       ("without bot token (content look-up)", False)):
        r = run(bot)
        print(f"{label:<38} messages {r['messages']}  retried {r['retried']}  "
              f"lost {r['lost']}  doubled {r['doubled']}")


if __name__ == "__main__":
    main()
