"""A queued bot turn's answer, exactly once.

The delivery workers run a queued turn (:meth:`Mirror.on_bot_turn`) until its row is
completed, so a crash anywhere in it brings the turn back. Two rules keep the customer from
hearing the bot twice, or a different second answer:

* the reply is **recorded under the turn's row key before anything of it is queued**
  (:meth:`BotTurns.settle`); a redelivered turn that finds a record sends it instead of
  asking the bot again. The bot is asked again only when it never answered (the crash
  came before its answer was recorded).
* each part of the reply is queued, with its Chatwoot copy, in one transaction under a
  unique key made of the turn's key and the part's place (:data:`ONCE`), so queuing the
  recorded reply again after a crash that came later admits none of it twice.

What happens after the reply is queued (the send itself) is the relay's: see
:meth:`integrations.base.ChannelAdapter.sent_before`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .delivery import MirroredMessage
from .errors import Deferred, StoreError
from .identity import ContactIdentity
from .relay import AgentAttachment
from .store import Store

log = logging.getLogger("chatwoot_mirror.turns")

#: ``fn(turn, identity)``: answer a queued customer message (see :meth:`Mirror.on_bot_turn`)
TurnRunner = Callable[[Mapping[str, Any], ContactIdentity], None]

SCOPE = "turn_reply"
#: a record outlives any redelivery of its turn (claims last at most an hour; a host
#: down for days finds the reply's rows already queued, or sends the record)
RECORD_SECONDS = 7 * 86400


@dataclass(frozen=True)
class TurnReply:
    """What the bot answered to one turn (the arguments of :meth:`Mirror.answer`)."""

    messages: list[str | AgentAttachment] = field(default_factory=list)
    handoff: str | None = None
    note: str | None = None
    failed: bool = False

    def to_json(self) -> str:
        return json.dumps({
            "messages": [m if isinstance(m, str) else [m.url, m.file_type, m.filename]
                         for m in self.messages],
            "handoff": self.handoff, "note": self.note, "failed": self.failed,
        }, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> TurnReply:
        data = json.loads(text)
        return cls(
            messages=[m if isinstance(m, str) else AgentAttachment(m[0], m[1], m[2])
                      for m in data.get("messages") or ()],
            handoff=data.get("handoff"), note=data.get("note"),
            failed=bool(data.get("failed")))


class BotTurns:
    """The runners of queued bot turns, per channel, and the record of their replies.

    ``answer(identity, reply, channel)`` sends a recorded reply again (through
    :meth:`Mirror.answer`, which finds the turn in :attr:`current`); ``is_paused(identity)``
    says whether humans have the contact by then."""

    def __init__(self, store: Store, *,
                 answer: Callable[[ContactIdentity, TurnReply, str], object],
                 is_paused: Callable[[ContactIdentity], bool]) -> None:
        self._store = store
        self._answer = answer
        self._is_paused = is_paused
        self._runners: dict[str, TurnRunner] = {}
        # the turn this worker thread is running: Mirror.answer records under it
        self._local = threading.local()

    def register(self, channel: str, runner: TurnRunner) -> TurnRunner:
        self._runners[channel] = runner
        return runner

    @property
    def current(self) -> str | None:
        """The key of the turn this thread is running, if any."""
        return getattr(self._local, "key", None)

    def run(self, message: MirroredMessage) -> None:
        """Run the queued turn ``message``: its recorded reply if it has one, else its
        channel's runner (which asks the bot)."""
        turn = (message.action or {}).get("turn") or {}
        channel = str(turn.get("channel"))
        runner = self._runners.get(channel)
        if runner is None:
            raise Deferred(f"no bot registered for channel {channel!r} yet")
        try:
            text = self._store.get_value(SCOPE, message.key, time.time())
        except StoreError as exc:  # asking the bot blind could answer the customer twice
            raise Deferred(f"turn's reply record unreadable: {exc}", delay=2.0) from None
        self._local.key, self._local.recorded = message.key, text
        try:
            if text is None:
                runner(turn, message.identity)
            elif self._is_paused(message.identity):
                log.info("recorded bot reply not sent, humans have the contact contact=%s",
                         message.identity.key)
            else:
                log.info("bot turn redelivered, its recorded reply is sent contact=%s",
                         message.identity.key)
                self._answer(message.identity, TurnReply.from_json(text), channel)
        finally:
            self._local.key = self._local.recorded = None

    def settle(self, reply: TurnReply) -> tuple[str | None, TurnReply]:
        """The turn this thread is running (``None`` outside one) and the reply to send
        for it: the one recorded before (a redelivery), or ``reply``, recorded now, before
        any of it is queued. A record that cannot be written does not keep the customer
        from the answer: it goes out, and only a crash before the turn completes would ask
        the bot again."""
        key = self.current
        if key is None:
            return None, reply
        recorded = getattr(self._local, "recorded", None)
        if recorded is not None:
            return key, TurnReply.from_json(recorded)
        text = reply.to_json()
        try:
            self._store.set_value(SCOPE, key, text, time.time() + RECORD_SECONDS)
        except StoreError as exc:
            log.error("bot reply not recorded, sent anyway turn=%s error=%s", key, exc)
        self._local.recorded = text
        return key, reply
