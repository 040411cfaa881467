"""How long a provider waits for our webhook answer when the bot takes 3 s (issue #19).

    python bench/slow_bot.py

uazapi ``messages`` webhooks (the real capture, a fresh message id each) reach
``InboundHandler.handle`` while the bot sleeps 3 s per answer (an LLM). Each webhook is
delivered three times (the provider redelivering), and we count the bot's calls per
message. ``queued`` (the default) answers the provider once the message and its bot turn
are queued; ``sync`` runs the bot inside the request. The Chatwoot emulator runs in this
process; the provider's API is a local stand-in.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.integrations import InboundHandler, UazapiAdapter
from chatwoot_mirror.testing import FakeChatwoot
from chatwoot_mirror.webhooks import WebhookRequest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provider_webhooks import CONTRACTS, TOKEN, _Provider, percentile  # noqa: E402

BOT_SECONDS = 3.0


def run(mode: str, messages: int, tmp: str) -> str:
    capture = json.loads((CONTRACTS / "uazapi" / "uazapi_text.json").read_text())
    calls: Counter[str] = Counter()
    lock = threading.Lock()

    def bot(event):  # type: ignore[no-untyped-def]
        with lock:
            calls[event.message_id] += 1
        time.sleep(BOT_SECONDS)
        return f"Recebido: {event.text}"

    with FakeChatwoot() as cw:
        config = Config(url=cw.url, inbox_identifier=cw.inbox_identifier,
                        account_id=cw.account_id, bot_token=cw.bot_token,
                        db_path=f"{tmp}/{mode}.db", max_requests_per_minute=0, workers=8)
        mirror = Mirror(config)
        adapter = UazapiAdapter("https://example.uazapi.com", TOKEN)
        adapter.session.mount("https://example.uazapi.com", _Provider())
        handler = InboundHandler(mirror, adapter, bot, mode=mode)
        latencies = []
        started = time.perf_counter()
        for i in range(messages):
            capture["message"]["messageid"] = f"SLOW{i:08d}"
            capture["message"]["chatid"] = f"55119{i % 20:08d}@s.whatsapp.net"
            body = json.dumps(capture).encode()
            for _ in range(3):  # the provider redelivers
                t0 = time.perf_counter()
                result = handler.handle(WebhookRequest({}, body))
                latencies.append((time.perf_counter() - t0) * 1000)
                assert result.status == 200, result.body
        while sum(calls.values()) < messages or not mirror.flush(1):
            time.sleep(0.05)
        answered = time.perf_counter() - started
        mirror.close(timeout=5)
    per_message = sum(calls.values()) / messages
    return (f"{mode:6} {messages} messages x 3 deliveries: webhook answer "
            f"p50 {percentile(latencies, 0.5):7.2f} ms  p99 {percentile(latencies, 0.99):7.2f} ms"
            f"  max {max(latencies):7.2f} ms; bot calls per message {per_message:.2f} "
            f"(max {max(calls.values())}); all answered after {answered:.1f} s")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print(run("queued", 40, tmp))
        print(run("sync", 5, tmp))


if __name__ == "__main__":
    main()
