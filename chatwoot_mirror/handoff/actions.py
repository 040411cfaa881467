"""What a handoff decision asks for, carried out: the customer's text, and the Chatwoot
side work queued behind the contact's earlier messages (the delivery workers run it)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..config import Config
from ..errors import ChatwootError
from ..identity import ContactIdentity
from ..store import Store
from .rules import (
    HUMAN,
    LABEL,
    NOTE,
    NOTIFY,
    OPEN,
    PENDING,
    TYPING_OFF,
    UNASSIGN,
    Decision,
    Event,
)

log = logging.getLogger("chatwoot_mirror.handoff")

#: the steps of a decision that run in Chatwoot (with the Agent Bot token only)
CHATWOOT_STEPS = (OPEN, LABEL, NOTE, TYPING_OFF, UNASSIGN, PENDING)


class HandoffActions:
    """The mirror's executor of decisions (``Handoff.executor``).

    ``notify(identity, text)`` sends a text to the customer through the durable queue;
    ``enqueue_action(identity, action)`` queues Chatwoot-side work for the workers;
    ``agents()`` lists the account's agents (for the protocol number)."""

    def __init__(
        self, config: Config, store: Store, *,
        notify: Callable[[ContactIdentity, str], object],
        enqueue_action: Callable[[ContactIdentity, dict[str, Any]], None],
        agents: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.notify = notify
        self.enqueue_action = enqueue_action
        #: Chatwoot's agents of the account (needs the user token): who is online
        self.agents = agents

    def __call__(self, event: Event, decision: Decision,
                 identity: ContactIdentity | None) -> None:
        identity = identity or self.store.contact_identity(event.contact_key)
        if identity is None:
            log.info("handoff actions skipped, contact never seen contact=%s",
                        event.contact_key)
            return
        pause = decision.record is not None and decision.record.state == HUMAN
        reason = decision.reason or ""
        if NOTIFY in decision.actions:
            if pause:
                text = self.config.text("after_hours" if reason == "after_hours" else "handoff")
            else:
                text = self.config.text("resume") if self.config.resume_notice else ""
            if text:
                self.notify(identity, text)
        steps = [step for step in decision.actions if step in CHATWOOT_STEPS]
        if not steps or not self.config.has_bot_token:
            return
        if not pause:
            self.enqueue_action(identity, {"name": "resume", "steps": steps})
            return
        texts = self.config.texts
        labels = [self.config.handoff_label] + (["after-hours"] if reason == "after_hours"
                                                else [])
        header = texts.note.format(reason=texts.reason(reason))
        self.enqueue_action(identity, {
            "name": "handoff", "reason": reason, "labels": labels, "steps": steps,
            "note": "\n".join(filter(None, [header, event.note])),
            "turns": self.config.transcript_messages, "who": list(texts.who),
        })

    def ticket_if_nobody_is_online(
        self, identity: ContactIdentity, conversation_id: int, reason: str
    ) -> None:
        """Once a handoff's Chatwoot work is done (a user token is needed to see agents):
        when no agent is online, give the customer a protocol number."""
        text = self.config.text("no_agent")
        if not (self.config.api_token and text and self.agents) or reason == "after_hours":
            return  # after hours the customer already got the out-of-hours text
        try:
            agents = self.agents()
        except ChatwootError as exc:
            log.warning("agents' availability unknown contact=%s error=%s", identity.key, exc)
            return
        if not any(a.get("availability_status") == "online" for a in agents):
            self.notify(identity, text.format(protocol=conversation_id))
