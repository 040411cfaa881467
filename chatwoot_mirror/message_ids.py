"""Which Chatwoot message a provider's message is, and back.

A customer quotes, reacts to, edits or deletes a message by the provider's id (a
``wamid``, a uazapi ``messageid``); a status webhook names our sent message the same way;
an agent who quotes a message in Chatwoot names it by Chatwoot's id. Chatwoot's own
external-id form of ``in_reply_to`` is unreliable (chatwoot#10859), so the mirror keeps
the map itself, in its store (shared by every host), for ``CHATWOOT_MESSAGE_IDS_DAYS``.

A bot reply is posted to Chatwoot and sent to the customer by two queues, in either order:
each side records what it learnt under the mirrored message's key, and a look-up joins the
two. Recording only writes (it never reads what the other side wrote), so a write that
meets Redis away is kept by the local spill (:mod:`.store.spill`) and nothing is lost.

Every entry names the contact whose conversation holds the message: a provider id is
never followed into another customer's conversation.
"""

from __future__ import annotations

from dataclasses import dataclass

from .scoped import ScopedValues
from .store import Store, ValueItem

SCOPE = "message_ids"
#: how far each status goes; a receipt never moves a message back (read, then a late
#: delivered, stays read), and a failure ends the story
RANKS = {"sent": 1, "delivered": 2, "read": 3, "played": 3, "failed": 4}


@dataclass(frozen=True)
class Located:
    """Where a message is in Chatwoot."""

    contact_key: str
    conversation_id: int
    message_id: int

    def encode(self) -> str:
        return f"{self.conversation_id}:{self.message_id}:{self.contact_key}"

    @classmethod
    def decode(cls, value: str | None) -> Located | None:
        if not value:
            return None
        conversation, _, rest = value.partition(":")
        message, _, contact = rest.partition(":")
        if not (conversation.isdigit() and message.isdigit() and contact):
            return None
        return cls(contact, int(conversation), int(message))


class MessageIds:
    """The provider-id ↔ Chatwoot-id map, kept ``ttl`` seconds."""

    def __init__(self, store: Store, ttl: float) -> None:
        self.values = ScopedValues(store, SCOPE)
        self.ttl = ttl

    def posted(self, key: str, where: Located, provider_id: str | None = None) -> None:
        """The mirrored message ``key`` is ``where`` in Chatwoot; ``provider_id`` when the
        provider's id came with it (a customer's message)."""
        self.store(self.posted_items(key, where, provider_id))

    def store(self, items: list[ValueItem]) -> None:
        """Store writes made by :meth:`posted_items`."""
        self.values.store.set_values(items)

    def posted_items(self, key: str, where: Located, provider_id: str | None = None
                     ) -> list[ValueItem]:
        """:meth:`posted`'s writes as store items, stored by the caller with the row's
        completion (one round trip for both)."""
        writes = [(f"k:{key}", where.encode())]
        if provider_id is None:
            # the provider's id comes (or came) from the send: provider_id() joins them
            writes.append((f"rk:{where.message_id}", key))
        else:
            writes += self._link(provider_id, where)
        return self.values.items(writes, ttl=self.ttl)

    def sent(self, provider_id: str, *, key: str | None = None,
             where: Located | None = None) -> None:
        """The provider took a message as ``provider_id``: an agent's Chatwoot message
        (``where``) or the mirrored bot reply ``key`` (posted before or after this)."""
        # ours, whatever Chatwoot has yet: a status for an id unknown here is another
        # integration's message (Mirror.message_status(others=True))
        writes = [(f"o:{provider_id}", "1")]
        if where is None and key is not None:
            # where Chatwoot has it comes (or came) from the post: find() joins them
            writes += [(f"q:{key}", provider_id), (f"pk:{provider_id}", key)]
        if where is not None:
            writes += self._link(provider_id, where)
        self.values.set_many(writes, ttl=self.ttl)

    @staticmethod
    def _link(provider_id: str, where: Located) -> list[tuple[str, str]]:
        return [(f"p:{provider_id}", where.encode()), (f"r:{where.message_id}", provider_id)]

    def find(self, provider_id: str) -> Located | None:
        """Where the provider's message ``provider_id`` is in Chatwoot, if we know."""
        found = Located.decode(self.values.get(f"p:{provider_id}"))
        if found is None:
            key = self.values.get(f"pk:{provider_id}")  # a bot reply, by its mirrored key
            found = Located.decode(self.values.get(f"k:{key}")) if key else None
        return found

    def known(self, provider_id: str) -> bool:
        """Non-destructively: whether the mirror sent ``provider_id``, or has it in
        Chatwoot (within the TTL)."""
        return self.values.get(f"o:{provider_id}") is not None \
            or self.find(provider_id) is not None

    def provider_id(self, message_id: int) -> str | None:
        """The provider's id of Chatwoot's message ``message_id``, if we know."""
        found = self.values.get(f"r:{message_id}")
        if found is None:
            key = self.values.get(f"rk:{message_id}")  # a bot reply, by its mirrored key
            found = self.values.get(f"q:{key}") if key else None
        return found

    def moves_forward(self, message_id: int, status: str) -> bool:
        """Non-destructively: whether ``status`` takes Chatwoot's message ``message_id``
        further than any status recorded for it (:data:`RANKS`)."""
        rank = RANKS.get(status)
        if rank is None:
            return False
        before = self.values.get(f"s:{message_id}")
        return before is None or RANKS.get(before, 0) < rank

    def advance(self, message_id: int, status: str) -> None:
        """Record ``status`` as shown for Chatwoot's message ``message_id`` (after Chatwoot
        took it, so a failed call is tried again). Called in the contact's delivery
        queue, one at a time per contact."""
        self.values.set(f"s:{message_id}", status, ttl=self.ttl)
