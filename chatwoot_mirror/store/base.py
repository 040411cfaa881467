"""The storage interface. Every method's docstring states its guarantee.

Implementations must be safe to call from many threads at once, and the SQLite
one from several processes sharing one file (gunicorn workers on one host).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass


@dataclass(frozen=True)
class ContactRecord:
    """What we remember of a contact: its Chatwoot ids and the conversation we post to."""

    key: str
    source_id: str
    contact_id: int | None
    conversation_id: int | None


class Store(abc.ABC):
    """Local state of the mirror: contacts, conversations and named locks."""

    @abc.abstractmethod
    def get_contact(self, key: str) -> ContactRecord | None:
        """Non-destructively read the contact stored under ``key``, or ``None``."""

    @abc.abstractmethod
    def save_contact(self, key: str, source_id: str, contact_id: int | None) -> None:
        """Atomically insert or update the contact's ids; a stored conversation id is kept."""

    @abc.abstractmethod
    def set_conversation(self, key: str, conversation_id: int) -> None:
        """Atomically remember ``conversation_id`` as the contact's conversation.

        The contact must have been saved first."""

    @abc.abstractmethod
    def forget_conversation(self, key: str, conversation_id: int) -> bool:
        """Atomically clear the contact's conversation, only if it is still ``conversation_id``.

        Returns whether it was cleared. The compare-and-clear keeps a worker that saw a
        stale 404 from erasing a newer conversation another worker just stored."""

    @abc.abstractmethod
    def acquire_lock(self, name: str, owner: str, ttl: float) -> bool:
        """Atomically take the named lock for ``ttl`` seconds; ``False`` if someone holds it.

        A lock whose holder did not release it within its ttl (a crashed process) is free.
        Taking a lock one already holds renews it."""

    @abc.abstractmethod
    def release_lock(self, name: str, owner: str) -> None:
        """Atomically release the named lock if ``owner`` holds it; otherwise do nothing."""

    def close(self) -> None:  # noqa: B027 - optional hook, most stores hold nothing
        """Release connections and files; the store is not used afterwards."""
