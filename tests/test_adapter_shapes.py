"""Every provider payload the tests carry, bent out of shape: a field of the wrong type,
a missing key, a list where an object was. A parser must read what it can and never
raise (an exception would turn the whole webhook, with every other message in it, into
a 400 the provider may not retry), and every message it reads shows the agent something
(issue #17: "never a crash and never an empty message").

The mutations are seeded, so a failure names a case that fails again."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from conftest import CONTRACTS

from chatwoot_mirror.integrations import Dialog360Adapter, UazapiAdapter, ZproAdapter
from chatwoot_mirror.integrations.base import ECHO, STATUS
from chatwoot_mirror.kinds import render
from chatwoot_mirror.texts import DEFAULTS

ADAPTERS = {
    "dialog360": lambda: Dialog360Adapter("d360-key"),
    "uazapi": lambda: UazapiAdapter("https://example.uazapi.com", "token"),
    "zpro": lambda: ZproAdapter("https://api.zpro.example.com", "api-1", "jwt"),
}
ODD_VALUES = [None, 0, -1, 1.5, True, "", "x", "🙂", [], {}, [None], ["a", 1], {"a": 1},
              [{"id": None}]]
MUTATIONS = 60


def bent(value: Any, rng: random.Random) -> Any:
    """``value`` with some of its fields replaced by odd values or left out."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            roll = rng.random()
            if roll < 0.05:
                continue
            out[key] = rng.choice(ODD_VALUES) if roll < 0.2 else bent(item, rng)
        return out
    if isinstance(value, list):
        return [bent(item, rng) for item in value]
    return value


def payloads(provider: str) -> list[tuple[str, Any]]:
    found = []
    for path in sorted((CONTRACTS / provider).glob("*.json")):
        body = json.loads(path.read_text())
        if isinstance(body, dict) and "openapi" not in body:
            found.append((path.name, body))
    return found


@pytest.mark.parametrize("provider", sorted(ADAPTERS))
def test_bent_payloads_never_raise_and_never_show_nothing(provider):
    adapter = ADAPTERS[provider]()
    texts = DEFAULTS["pt-BR"]
    rng = random.Random(f"shapes-{provider}")
    read = 0
    for name, body in payloads(provider):
        for attempt in range(MUTATIONS):
            sent = body if attempt == 0 else bent(body, rng)
            raw = json.dumps(sent).encode()
            try:
                events = adapter.parse({}, raw)
            except Exception as exc:  # pragma: no cover - the failure message
                pytest.fail(f"{provider} {name} #{attempt} raised {exc!r}: {raw[:400]!r}")
            for event in events:
                read += 1
                if event.kind in (STATUS, ECHO):
                    continue
                shown = render(texts, event.shown_as, event.text, event.raw_type,
                               files=bool(event.attachments))
                assert shown.strip() or event.attachments, (provider, name, attempt, raw)
    assert read > len(payloads(provider))  # the originals and most bent copies are read
