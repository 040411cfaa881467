"""Runs the handoff decision against the store: read, decide, compare-and-set, announce.

The rules are in :mod:`.rules`; this module only makes them safe under concurrency (a
write that lost a race is decided again on the fresh record) and tells the world.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from ..errors import StoreError
from ..identity import ContactIdentity
from ..store import HandoffRecord, Store
from .rules import BOT, BOT_TURN, EXPLICIT, HUMAN, IDLE, Decision, Event, decide

log = logging.getLogger("chatwoot_mirror.handoff")

#: ``fn(contact_key, reason)``, called after a contact changes hands.
Callback = Callable[[str, str], None]
#: ``fn(event, decision, identity)``: carries out ``decision.actions``.
Executor = Callable[[Event, Decision, "ContactIdentity | None"], None]

#: how long a write that keeps losing its compare-and-set is decided again (seconds);
#: every loss means another writer won, so this is only reached by a stuck store
PATIENCE = 10.0


class Handoff:
    """The pause/resume state of one mirror's contacts."""

    def __init__(
        self, store: Store, *, resume_after_minutes: float = 0.0, max_bot_turns: int = 0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.store = store
        self.resume_after_minutes = resume_after_minutes
        self.max_bot_turns = max_bot_turns
        # looked up at each call, so that a test's frozen clock (freezegun) applies
        self.clock: Callable[[], float] = clock or (lambda: time.time())
        self.on_handoff: list[Callback] = []
        self.on_resume: list[Callback] = []
        #: runs a decision's actions (the mirror installs :class:`.actions.HandoffActions`)
        self.executor: Executor | None = None

    def is_paused(self, contact_key: str) -> bool:
        record = self.store.get_handoff(contact_key)
        return record is not None and record.state == HUMAN

    def record(self, contact_key: str) -> HandoffRecord | None:
        """The contact's stored handoff record (``None``: never handed off)."""
        return self.store.get_handoff(contact_key)

    def apply(self, event: Event, *, identity: ContactIdentity | None = None) -> Decision:
        """Decide ``event`` and store the result atomically; then run its actions and the
        callbacks. ``identity`` saves a store read when the caller has it."""
        deadline = time.monotonic() + PATIENCE
        while True:
            current = self.store.get_handoff(event.contact_key)
            decision = decide(current, event)
            if decision.record is None or self.store.put_handoff(
                    decision.record, None if current is None else current.version):
                break
            if time.monotonic() > deadline:
                raise StoreError(f"handoff record of {event.contact_key} kept changing")
            # another writer won: let it finish before reading again (jitter breaks step)
            time.sleep(random.uniform(0, 0.002))
        if decision.changed:
            state = decision.record.state if decision.record else HUMAN
            log.info("bot %s contact=%s conversation=%s reason=%s",
                     "paused" if state == HUMAN else "resumed", event.contact_key,
                     decision.record.conversation_id if decision.record else None,
                     decision.reason)
        # (a decision may ask for work without changing hands: a conversation Chatwoot
        # opened on a bot error goes back to pending even if the bot never lost it here)
        if decision.actions and self.executor is not None:
            try:
                self.executor(event, decision, identity)
            except Exception:  # the transition stands; its side work must not undo it
                log.exception("handoff actions failed contact=%s", event.contact_key)
        if decision.changed:
            callbacks = self.on_handoff if state == HUMAN else self.on_resume
            for callback in list(callbacks):
                try:
                    callback(event.contact_key, decision.reason or "")
                except Exception:  # a host callback must not break webhook handling
                    log.exception("handoff callback failed contact=%s", event.contact_key)
        return decision

    def pause(
        self, contact_key: str, reason: str, *, kind: str = EXPLICIT, at: float | None = None,
        conversation_id: int | None = None, human_activity: bool = False,
        identity: ContactIdentity | None = None, note: str | None = None,
    ) -> Decision:
        """Hand the contact to humans (see :func:`.rules.decide` for when it does not)."""
        return self.apply(Event(contact_key, kind, HUMAN, reason, self.clock(), at=at,
                                conversation_id=conversation_id,
                                human_activity=human_activity, note=note),
                          identity=identity)

    def resume(self, contact_key: str, reason: str, *, kind: str = EXPLICIT,
               at: float | None = None, conversation_id: int | None = None) -> Decision:
        """Give the contact back to the bot."""
        return self.apply(Event(contact_key, kind, BOT, reason, self.clock(), at=at,
                                conversation_id=conversation_id))

    def bot_turn(self, contact_key: str, *, identity: ContactIdentity | None = None) -> Decision:
        """Count one more bot reply; hands over at ``max_bot_turns``."""
        return self.apply(Event(contact_key, BOT_TURN, None, "bot_turn", self.clock(),
                                max_bot_turns=self.max_bot_turns), identity=identity)

    def resume_idle(self, now: float | None = None) -> int:
        """Resume contacts whose last human message is older than the idle timeout."""
        if not self.resume_after_minutes:
            return 0
        now = self.clock() if now is None else now
        before = now - self.resume_after_minutes * 60
        count = 0
        for record in self.paused():
            if (record.last_human_at or 0.0) < before:
                count += self.resume(record.contact_key, "idle_timeout", kind=IDLE).changed
        return count

    def paused(self) -> list[HandoffRecord]:
        """Every paused contact, oldest pause first."""
        return sorted(self.store.list_handoffs(HUMAN), key=lambda r: r.changed_at)
