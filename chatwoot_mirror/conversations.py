"""Exactly one Chatwoot conversation per contact.

Chatwoot's public API gives no help here: ``GET .../conversations`` has no order
and includes resolved conversations, and ``POST .../conversations`` creates a new
one on every call unless the inbox has ``lock_to_single_conversation``. So the
first resolution of a contact is serialised (a striped in-process lock plus a
lease in the store for other processes), and its result is remembered.

What is remembered must never send a customer's words to someone else. Two rules
keep it so, both decided here:

* **Instance binding.** Every remembered id is stored with the Chatwoot it came
  from (:func:`instance_id` of the base URL, account and inbox identifier). After a
  change of any of them the old ids are not used: the contact is resolved again.
* **Ownership check.** The Application API posts into a conversation by its id and
  does not check whose it is. A Chatwoot restored from a backup hands the same ids
  out again to other customers. So before the first bot-token post into a
  remembered conversation in this process, the contact-scoped public read
  ``GET .../contacts/{source_id}/conversations/{id}`` confirms the conversation is
  this contact's (it answers 404 otherwise, or when the contact is gone); if not, the
  contact is resolved again. A conversation resolved in this process needs no check:
  it came from that contact's own list, or was created for them.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .client import ChatwootClient
from .errors import AmbiguousDelivery, NotFound, Unavailable
from .identity import ContactIdentity
from .store import ContactRecord, Store

log = logging.getLogger("chatwoot_mirror.conversations")

_STRIPES = 64
_LEASE_TTL = 30.0
_LEASE_POLL = 0.02
_CONFIRMED_KEPT = 100_000


def instance_id(base_url: str, account_id: int | None, inbox_identifier: str) -> str:
    """The Chatwoot a remembered id belongs to: a digest of the base URL, the account and
    the inbox identifier (a digest, so the store never holds the inbox identifier)."""
    text = f"{base_url.rstrip('/')}|{account_id or ''}|{inbox_identifier}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


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
        check_ownership: bool = True,
    ) -> None:
        self.client = client
        self.store = store
        self.resolved_policy = resolved_policy
        self.hmac_token = hmac_token
        self.lease_timeout = lease_timeout
        #: True when messages are posted by conversation id (Application API): the public
        #: API's own posts are contact-scoped and need no check.
        self.check_ownership = check_ownership
        self.instance = instance_id(client.base_url, client.account_id,
                                    client.inbox_identifier)
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # (contact key, conversation id) pairs confirmed in this process; bounded, since
        # forgetting one costs only one more check
        self._confirmed: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._confirmed_lock = threading.Lock()
        self._run = threading.local()  # records read in the current run (one_run)

    @contextlib.contextmanager
    def one_run(self) -> Iterator[None]:
        """Within one claimed run of a worker, each contact's record is read from the store
        once, not once per message (a third of the store's work per message in the drain
        benchmark). Safe because the claim keeps every other worker off the contact, and
        this resolver's own writes drop what it read."""
        self._run.records = {}
        try:
            yield
        finally:
            self._run.records = None

    def remembered(self, key: str) -> ContactRecord | None:
        """The stored record of ``key`` when it belongs to this Chatwoot, else ``None``."""
        records: dict[str, ContactRecord | None] | None = getattr(self._run, "records", None)
        if records is not None and key in records:
            record = records[key]
        else:
            record = self.store.get_contact(key)
            if records is not None:
                records[key] = record
        if record is None or record.instance != self.instance:
            return None
        return record

    def _changed(self, key: str) -> None:
        """This resolver wrote ``key``'s record: the run reads it again."""
        records = getattr(self._run, "records", None)
        if records is not None:
            records.pop(key, None)

    def resolve(self, identity: ContactIdentity, name: str | None = None) -> Target:
        """The contact's conversation; creates the contact and the conversation at most once."""
        target = self._usable(identity)
        if target is not None:
            return target
        stripe = self._stripes[hash(identity.key) % _STRIPES]
        with stripe:
            lease = f"resolve:{identity.key}"
            self._take_lease(lease)
            try:
                # Another thread or process may have finished while we waited.
                self._changed(identity.key)
                target = self._usable(identity)
                if target is not None:
                    return target
                return self._resolve_remotely(identity, name)
            finally:
                self.store.release_lock(lease, self._owner)

    def forget(self, identity: ContactIdentity, conversation_id: int) -> None:
        """Drop a conversation Chatwoot no longer knows (404) so the next resolve looks again."""
        with self._confirmed_lock:
            self._confirmed.pop((identity.key, conversation_id), None)
        self._changed(identity.key)
        if self.store.forget_conversation(identity.key, conversation_id):
            log.info(
                "conversation forgotten contact=%s conversation=%s",
                identity.key,
                conversation_id,
            )

    def _usable(self, identity: ContactIdentity) -> Target | None:
        """The remembered conversation, once it is known to be this contact's; ``None``
        when there is none, it came from another Chatwoot, or it is someone else's now."""
        record = self.remembered(identity.key)
        if record is None or not record.conversation_id:
            return None
        target = Target(record.source_id, record.conversation_id)
        if not self.check_ownership or self._is_confirmed(identity.key, target):
            return target
        try:
            self.client.get_conversation_public(target.source_id, target.conversation_id)
        except NotFound:
            log.warning(
                "remembered conversation is not this contact's in chatwoot, resolving again "
                "contact=%s conversation=%s",
                identity.key,
                target.conversation_id,
            )
            self.forget(identity, target.conversation_id)
            return None
        self._confirm(identity.key, target)
        return target

    def _is_confirmed(self, key: str, target: Target) -> bool:
        with self._confirmed_lock:
            return (key, target.conversation_id) in self._confirmed

    def _confirm(self, key: str, target: Target) -> None:
        with self._confirmed_lock:
            self._confirmed[(key, target.conversation_id)] = None
            while len(self._confirmed) > _CONFIRMED_KEPT:
                self._confirmed.popitem(last=False)

    def _take_lease(self, name: str) -> None:
        deadline = time.monotonic() + self.lease_timeout
        while not self.store.acquire_lock(name, self._owner, _LEASE_TTL):
            if time.monotonic() > deadline:
                raise Unavailable(
                    "another process is still resolving this contact", operation="resolve"
                )
            time.sleep(_LEASE_POLL)

    def _resolve_remotely(self, identity: ContactIdentity, name: str | None) -> Target:
        """Contact, then conversation, resuming after the step a failed attempt reached:
        a contact saved by an earlier attempt is not created again (its list is read
        instead), and a conversation create that may have happened is looked for before
        another is made."""
        record = self.remembered(identity.key)
        source_id: str | None = None
        conversations: list[dict[str, Any]] = []
        if record is not None and record.contact_id:
            try:
                conversations = self.client.list_conversations(record.source_id)
                source_id = record.source_id
            except NotFound:
                pass  # the contact is gone from Chatwoot: create it again
        if source_id is None:
            source_id = self._create_contact(identity, name)
            conversations = self.client.list_conversations(source_id)
        chosen = _pick(conversations, self.resolved_policy)
        created = False
        if chosen is None:
            try:
                chosen = int(self.client.create_conversation(source_id)["id"])
                created = True
            except AmbiguousDelivery:
                # it may have been created: look before creating another
                chosen = _pick(self.client.list_conversations(source_id), self.resolved_policy)
                if chosen is None:
                    raise
        self.store.set_conversation(identity.key, chosen)
        self._changed(identity.key)
        target = Target(source_id, chosen)
        self._confirm(identity.key, target)  # from the contact's own list, or created for them
        log.info(
            "conversation resolved contact=%s conversation=%s created=%s",
            identity.key,
            chosen,
            created,
        )
        return target

    def _create_contact(self, identity: ContactIdentity, name: str | None) -> str:
        """Create (or find: the source_id is fixed) the contact, and remember it."""
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
            identity.key, source_id, _int(contact.get("id")), identity.to_json(),
            instance=self.instance,
        )
        self._changed(identity.key)
        return source_id


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
