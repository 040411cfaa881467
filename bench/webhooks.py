"""Signed Chatwoot webhooks handled in-process: rate and latency (handoff issue).

    python bench/webhooks.py

Verifies the signature, dedupes the delivery id, parses and applies each contract
payload through the framework-neutral handler, and separately through the Flask
blueprint (Flask's test client, no network).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

from flask import Flask

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.flask import create_blueprint
from chatwoot_mirror.webhooks import WebhookRequest

# the real payloads shipped with the tests (tests/fixtures/contracts/README.md cites them)
CONTRACTS = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "contracts"
SECRET = "bench-secret"
NAMES = ["message_created.json", "conversation_updated_assignee.json",
         "conversation_status_changed.json", "message_created_incoming.json",
         "message_created_private_note.json", "conversation_typing_on.json"]


def requests_to_send(count: int) -> list[tuple[dict[str, str], bytes]]:
    payloads = [json.loads((CONTRACTS / "chatwoot" / "webhooks" / n).read_text()) for n in NAMES]
    out = []
    for i in range(count):
        body = json.dumps(payloads[i % len(payloads)]).encode()
        stamp = str(int(time.time()))
        digest = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
        out.append(({"X-Chatwoot-Timestamp": stamp,
                     "X-Chatwoot-Signature": f"sha256={digest.hexdigest()}",
                     "X-Chatwoot-Delivery": str(uuid.uuid4()),
                     "Content-Type": "application/json"}, body))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(count: int = 3000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        mirror = Mirror(Config(url="http://127.0.0.1:9", inbox_identifier="x",
                               db_path=f"{tmp}/m.db", webhook_secret=SECRET), start=False)
        mirror.on_agent_message(lambda m: None)
        handler = mirror.webhook_handler()
        for label, send in (
            ("handler (framework-neutral)",
             lambda h, b: handler.handle(WebhookRequest(h, b)).status),
            ("Flask blueprint (test client)", None),
        ):
            if send is None:
                app = Flask(__name__)
                app.register_blueprint(create_blueprint(mirror), url_prefix="/chatwoot")
                client = app.test_client()

                def send(h, b, client=client):
                    return client.post("/chatwoot/webhook", data=b, headers=h).status_code
            batch = requests_to_send(count)
            latencies = []
            started = time.perf_counter()
            for headers, body in batch:
                t0 = time.perf_counter()
                status = send(headers, body)
                latencies.append(time.perf_counter() - t0)
                assert status == 200, status
            elapsed = time.perf_counter() - started
            print(f"{label:<32} {count / elapsed:7.0f} webhooks/s   "
                  f"p50 {percentile(latencies, 0.5) * 1000:.3f} ms   "
                  f"p99 {percentile(latencies, 0.99) * 1000:.3f} ms")
        mirror.close(timeout=0)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
