"""A host process for the exactly-once bot reply tests: one customer message with a queued
bot turn, killed with SIGKILL at one point of its answer, then started again to finish.

usage: python turn_child.py WORKDIR PROVIDER(uazapi|dialog360) KILL_AT
KILL_AT: before_bot, recorded (the reply recorded, nothing of it queued), before_send,
after_send, or none (the run after the crash). ``PROVIDER_URL`` is the provider stand-in;
the CHATWOOT_* environment points at the emulator and the store.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.integrations.base import MESSAGE, InboundEvent
from chatwoot_mirror.integrations.dialog360 import Dialog360Adapter
from chatwoot_mirror.integrations.inbound import queue_inbound, register_bot
from chatwoot_mirror.integrations.uazapi import UazapiAdapter

CUSTOMER = "5511988887777"


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    workdir, provider, kill_at = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    url = os.environ["PROVIDER_URL"]
    base: Any = UazapiAdapter if provider == "uazapi" else Dialog360Adapter

    class Adapter(base):  # type: ignore[misc, valid-type]
        def send_text(self, *args: Any, **kwargs: Any) -> str | None:
            if kill_at == "before_send":
                die()
            sent = super().send_text(*args, **kwargs)
            if kill_at == "after_send":
                die()
            return sent

    adapter = (Adapter(url, "uazapi-token", webhook_secret="s") if provider == "uazapi"
               else Adapter("d360-key", url, webhook_secret="s"))
    mirror = Mirror(Config.from_env(dotenv=False))
    if kill_at == "recorded":
        enqueue = mirror.store.enqueue

        def enqueue_then_die(rows: Any) -> Any:
            if any('"direction":"relay"' in row.payload for row in rows):
                die()  # the reply is recorded (Mirror.answer records first), not queued
            return enqueue(rows)

        mirror.store.enqueue = enqueue_then_die  # type: ignore[method-assign]

    def bot(event: InboundEvent) -> str:
        if kill_at == "before_bot":
            die()
        with open(workdir / "bot_calls", "a") as calls:  # what the bot was asked, durably
            calls.write(event.text + "\n")
            calls.flush()
            os.fsync(calls.fileno())
        asked = (workdir / "bot_calls").read_text().count("\n")
        return f"Chega amanhã (answer {asked})"

    mirror.connect(adapter)  # as InboundHandler does when built
    register_bot(mirror, adapter, bot)
    if not (workdir / "queued").exists():
        outcome = queue_inbound(mirror, adapter, InboundEvent(
            kind=MESSAGE, contact=CUSTOMER, text="Quando chega meu pedido?",
            message_id="wamid.turn-1"), bot)
        (workdir / "queued").write_text(outcome)
    # the crash run dies in here; the next one waits until nothing is left queued
    deadline = time.time() + 120
    while time.time() < deadline:
        mirror.flush(5)
        if not mirror.stats().get("queued") and not mirror.stats().get("in_flight"):
            break
        time.sleep(0.1)
    print("drained", mirror.stats().get("queued"), flush=True)
    mirror.close(timeout=10)


if __name__ == "__main__":
    main()
