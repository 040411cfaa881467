"""Exactly one Chatwoot conversation per contact.

Chatwoot's public API gives no help here: ``GET .../conversations`` has no order
and includes resolved conversations, and ``POST .../conversations`` creates a new
one on every call unless the inbox has ``lock_to_single_conversation``. So the
first resolution of a contact is serialised (a striped in-process lock plus a
lease in the store for other processes), and its result is remembered.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from .client import ChatwootClient
from .errors import Unavailable
from .identity import ContactIdentity
from .store import Store

log = logging.getLogger("chatwoot_mirror.conversations")

_STRIPES = 64
_LEASE_TTL = 30.0
_LEASE_POLL = 0.02


@dataclass(frozen=True)
class Target:
    """Where a contact's messages go."""

    source_id: str
    conversation_id: int


class ConversationResolver:
    """Finds, or creates once, the conversation a contact's messages are posted to.

    ``resolved_policy``: with no open conversation left, ``"reopen"`` continues the
    latest one (Chatwoot reopens it when the contact's next message arrives) and
    ``"new"`` starts a new conversation.
    """

    def __init__(
        self,
        client: ChatwootClient,
        store: Store,
        *,
        resolved_policy: str = "reopen",
        hmac_token: str | None = None,
        lease_timeout: float = 2 * _LEASE_TTL,
    ) -> None:
        self.client = client
        self.store = store
        self.resolved_policy = resolved_policy
        self.hmac_token = hmac_token
        self.lease_timeout = lease_timeout
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def resolve(self, identity: ContactIdentity, name: str | None = None) -> Target:
        """The contact's conversation; creates the contact and the conversation at most once."""
        record = self.store.get_contact(identity.key)
        if record and record.conversation_id:
            return Target(record.source_id, record.conversation_id)
        stripe = self._stripes[hash(identity.key) % _STRIPES]
        with stripe:
            lease = f"resolve:{identity.key}"
            self._take_lease(lease)
            try:
                # Another thread or process may have finished while we waited.
                record = self.store.get_contact(identity.key)
                if record and record.conversation_id:
                    return Target(record.source_id, record.conversation_id)
                return self._resolve_remotely(identity, name)
            finally:
                self.store.release_lock(lease, self._owner)

    def forget(self, identity: ContactIdentity, conversation_id: int) -> None:
        """Drop a conversation Chatwoot no longer knows (404) so the next resolve looks again."""
        if self.store.forget_conversation(identity.key, conversation_id):
            log.info(
                "conversation forgotten contact=%s conversation=%s",
                identity.key,
                conversation_id,
            )

    def _take_lease(self, name: str) -> None:
        deadline = time.monotonic() + self.lease_timeout
        while not self.store.acquire_lock(name, self._owner, _LEASE_TTL):
            if time.monotonic() > deadline:
                raise Unavailable(
                    "another process is still resolving this contact", operation="resolve"
                )
            time.sleep(_LEASE_POLL)

    def _resolve_remotely(self, identity: ContactIdentity, name: str | None) -> Target:
        identifier_hash = None
        if self.hmac_token:
            identifier_hash = hmac.new(
                self.hmac_token.encode(), identity.identifier.encode(), hashlib.sha256
            ).hexdigest()
        contact = self.client.create_contact(
            identity.source_id,
            name=name,
            phone_number=identity.phone_number,
            identifier=identity.identifier,
            identifier_hash=identifier_hash,
        )
        source_id = str(contact.get("source_id") or identity.source_id)
        self.store.save_contact(
            identity.key, source_id, _int(contact.get("id")), identity.to_json()
        )

        conversations = self.client.list_conversations(source_id)
        chosen = _pick(conversations, self.resolved_policy)
        created = False
        if chosen is None:
            chosen = int(self.client.create_conversation(source_id)["id"])
            created = True
        self.store.set_conversation(identity.key, chosen)
        log.info(
            "conversation resolved contact=%s conversation=%s created=%s",
            identity.key,
            chosen,
            created,
        )
        return Target(source_id, chosen)


def _pick(conversations: list[dict[str, Any]], policy: str) -> int | None:
    """Highest-id conversation that is not resolved; else the latest one if policy allows."""
    ids = [(int(c["id"]), c.get("status")) for c in conversations if _int(c.get("id"))]
    live = [cid for cid, status in ids if status != "resolved"]
    if live:
        return max(live)
    if ids and policy == "reopen":
        return max(cid for cid, _ in ids)
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
