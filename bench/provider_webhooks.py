"""How long a provider waits for our answer to its webhook (adapters issue).

    python bench/provider_webhooks.py

uazapi ``messages`` webhooks (the real capture, a fresh message id each, 50 contacts) go
through ``InboundHandler.handle``: verify the instance token, parse, dedupe and mirror the
customer message, run the handoff triggers, queue its bot turn (the delivery workers call a
trivial bot and queue its reply to the customer and to Chatwoot). Two runs: with the
delivery workers running meanwhile against the Chatwoot emulator in its own process
(20 ms latency, as a remote Chatwoot), and with the workers stopped (our own cost alone).
The provider's API is a local stand-in.
360dialog's guidance for webhook answers is a median under 250 ms.
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import requests
from requests.adapters import BaseAdapter

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.integrations import InboundHandler, UazapiAdapter
from chatwoot_mirror.webhooks import WebhookRequest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from outbox import EmulatorProcess  # noqa: E402

# the real payloads shipped with the tests (tests/fixtures/contracts/README.md cites them)
CONTRACTS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "contracts"
TOKEN = "00000000-0000-4000-8000-000000000001"


class UazapiStandIn(BaseAdapter):
    """uazapi's /send/text, answering at once with a fresh message id; ``sent`` holds
    (message id, the chat it went to), as receipts name them."""

    def __init__(self) -> None:
        super().__init__()
        self.ids = (f"3EB0BENCH{i:08d}" for i in itertools.count())
        self.sent: list[tuple[str, str]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        number = json.loads(request.body or b"{}").get("number")
        self.sent.append((next(self.ids), f"{number}@s.whatsapp.net"))
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps({"messageid": self.sent[-1][0]}).encode()
        response.headers["Content-Type"] = "application/json"
        response.request = request
        return response

    def close(self) -> None:
        pass


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(bodies: list[bytes], tmp: str, url: str, workers: bool) -> str:
    config = Config(url=url, inbox_identifier="benchinbox", account_id=1, bot_token="benchbot",
                    db_path=f"{tmp}/{'w' if workers else 's'}.db", max_requests_per_minute=0)
    mirror = Mirror(config, start=workers)
    adapter = UazapiAdapter("https://example.uazapi.com", TOKEN)
    adapter.session.mount("https://example.uazapi.com", UazapiStandIn())
    handler = InboundHandler(mirror, adapter, lambda event: f"Recebido: {event.text}")
    latencies = []
    started = time.perf_counter()
    for body in bodies:
        t0 = time.perf_counter()
        result = handler.handle(WebhookRequest({}, body))
        latencies.append((time.perf_counter() - t0) * 1000)
        assert result.status == 200 and result.body["events"] == ["queued"], result.body
    elapsed = time.perf_counter() - started
    drained = (mirror.flush(120) and mirror.flush(120)) if workers else None
    mirror.close(timeout=5 if workers else 0)
    return (f"{'with delivery running' if workers else 'store only':22} {len(bodies)} webhooks "
            f"{len(bodies) / elapsed:5.0f}/s  p50 {percentile(latencies, 0.5):5.2f} ms  "
            f"p99 {percentile(latencies, 0.99):5.2f} ms  max {max(latencies):6.2f} ms"
            + (f"  all delivered: {drained}" if workers else ""))


def main(count: int = 2000) -> None:
    capture = json.loads((CONTRACTS / "uazapi" / "uazapi_text.json").read_text())
    bodies = []
    for i in range(count):
        capture["message"]["messageid"] = f"BENCH{i:08d}"
        # 50 people, each with their own phone and LID (uazapi sends both)
        phone, lid = f"55119{i % 50:08d}@s.whatsapp.net", f"1000000000{i % 50:05d}@lid"
        capture["message"].update(chatid=phone, sender_pn=phone, chatlid=lid, sender=lid,
                                  sender_lid=lid)
        capture["chat"].update(wa_chatid=phone, wa_chatlid=lid)
        bodies.append(json.dumps(capture).encode())
    with tempfile.TemporaryDirectory() as tmp:
        emulator = EmulatorProcess(tmp, latency=0.020)
        try:
            print(run(bodies, tmp, emulator.url, workers=True))
            print(run(bodies, tmp, emulator.url, workers=False))
        finally:
            emulator.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
