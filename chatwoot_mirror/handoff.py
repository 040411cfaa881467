"""Who talks to a contact: the bot, or humans. Pause/resume state kept in the store.

Transitions carry the Chatwoot time of the event behind them. Webhooks arrive in no
order, so a transition older than the stored one is ignored: a late "agent replied"
cannot pause a conversation that was resolved after that reply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .store import HandoffRecord, Store

log = logging.getLogger("chatwoot_mirror.handoff")

HUMAN, BOT = "human", "bot"

#: ``fn(contact_key, reason)``, called after a contact changes hands.
Callback = Callable[[str, str], None]


class Handoff:
    """The pause/resume state machine of one mirror."""

    def __init__(self, store: Store, *, resume_after_minutes: float = 0.0) -> None:
        self.store = store
        self.resume_after_minutes = resume_after_minutes
        self.on_handoff: list[Callback] = []
        self.on_resume: list[Callback] = []

    def is_paused(self, contact_key: str) -> bool:
        record = self.store.handoff_state(contact_key)
        return record is not None and record.state == HUMAN

    def pause(
        self,
        contact_key: str,
        reason: str,
        *,
        at: float | None = None,
        conversation_id: int | None = None,
        human_activity: bool = False,
    ) -> bool:
        """Hand the contact to humans; ``False`` if already there or ``at`` is stale.

        ``at``: the Chatwoot time of the event behind it; ``None`` for a local decision."""
        changed = self.store.transition(
            contact_key, HUMAN, reason, at,
            conversation_id=conversation_id, human_activity=human_activity, now=time.time(),
        )
        if changed:
            log.info("bot paused contact=%s conversation=%s reason=%s",
                     contact_key, conversation_id, reason)
            self._notify(self.on_handoff, contact_key, reason)
        return changed

    def resume(self, contact_key: str, reason: str, *, at: float | None = None) -> bool:
        """Give the contact back to the bot; ``False`` if not paused or ``at`` is stale."""
        changed = self.store.transition(contact_key, BOT, reason, at, now=time.time())
        if changed:
            log.info("bot resumed contact=%s reason=%s", contact_key, reason)
            self._notify(self.on_resume, contact_key, reason)
        return changed

    def resume_idle(self, now: float | None = None) -> int:
        """Resume contacts whose last human message is older than the idle timeout."""
        if not self.resume_after_minutes:
            return 0
        now = time.time() if now is None else now
        count = 0
        for record in self.store.idle_humans(now - self.resume_after_minutes * 60):
            count += self.resume(record.contact_key, "idle_timeout")
        return count

    def paused(self) -> list[HandoffRecord]:
        return self.store.paused_contacts()

    def _notify(self, callbacks: list[Callback], contact_key: str, reason: str) -> None:
        for callback in callbacks:
            try:
                callback(contact_key, reason)
            except Exception:  # a host callback must not break webhook handling
                log.exception("handoff callback failed contact=%s", contact_key)
