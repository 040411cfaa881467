"""What provider receipts cost, and whether one ever moves a status back (issue #17).

    python bench/receipts.py [exchanges]

uazapi end to end on the Chatwoot emulator (in this process): each of 50 customers writes,
the bot answers through uazapi (a local stand-in giving every send its own id), and then
uazapi's ``messages_update`` receipts for that reply arrive through ``InboundHandler``, out
of order and repeated as providers deliver them: delivered, read, delivered again (late),
sent (late), read again. Reported: the webhook's answer time for a receipt, Chatwoot
requests per receipt, and the statuses Chatwoot ends with (all must be ``read``).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.integrations import InboundHandler, UazapiAdapter
from chatwoot_mirror.testing import FakeChatwoot
from chatwoot_mirror.webhooks import WebhookRequest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provider_webhooks import UazapiStandIn, percentile  # noqa: E402

CONTRACTS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "contracts"
TOKEN = "00000000-0000-4000-8000-000000000001"
ORDER = ("delivered", "read", "delivered", "sent", "read")


def run(count: int, user_token: bool) -> str:
    capture = json.loads((CONTRACTS / "uazapi" / "uazapi_text.json").read_text())
    receipt = json.loads((CONTRACTS / "uazapi" / "uazapi_messages_update.json").read_text())
    with tempfile.TemporaryDirectory() as tmp, FakeChatwoot() as cw:
        config = Config(url=cw.url, inbox_identifier=cw.inbox_identifier,
                        account_id=cw.account_id, bot_token=cw.bot_token,
                        api_token=cw.user_token if user_token else None,
                        db_path=f"{tmp}/m.db", max_requests_per_minute=0)
        mirror = Mirror(config)
        adapter = UazapiAdapter("https://example.uazapi.com", TOKEN)
        provider = UazapiStandIn()
        adapter.session.mount("https://example.uazapi.com", provider)
        handler = InboundHandler(mirror, adapter, lambda event: "Recebido!", mode="sync")
        for i in range(count):
            phone = f"55119{i % 50:08d}@s.whatsapp.net"
            capture["message"].update(messageid=f"BENCH{i:08d}", chatid=phone,
                                      sender_pn=phone)
            capture["chat"].update(wa_chatid=phone)
            handler.handle(WebhookRequest({}, json.dumps(capture).encode()))
        assert mirror.flush(120) and mirror.flush(120)
        before = len(cw.requests)
        latencies = []
        for status in ORDER:
            for provider_id, chat in list(provider.sent):
                receipt["state"] = receipt["event"]["Type"] = status.capitalize()
                receipt["event"].update(MessageIDs=[provider_id], Chat=chat)
                t0 = time.perf_counter()
                result = handler.handle(WebhookRequest({}, json.dumps(receipt).encode()))
                latencies.append((time.perf_counter() - t0) * 1000)
                assert result.status == 200
        assert mirror.flush(120)
        receipts = len(latencies)
        chatwoot = len(cw.requests) - before
        statuses = Counter(m["status"] for m in cw.messages()
                           if m["content"] == "Recebido!")
        mirror.close(timeout=5)
    return (f"{'user token' if user_token else 'bot token only':14} {count} replies, "
            f"{receipts} receipts: webhook p50 {percentile(latencies, 0.5):.2f} ms "
            f"p99 {percentile(latencies, 0.99):.2f} ms; Chatwoot requests per receipt "
            f"{chatwoot / receipts:.2f} ({chatwoot} in all); final statuses {dict(statuses)}")


def main(count: int = 200) -> None:
    print(run(count, user_token=True))
    print(run(count, user_token=False))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
