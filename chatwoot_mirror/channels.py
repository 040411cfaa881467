"""Where an agent's (or the bot's) reply to a contact goes: the channel the contact last
wrote through. Remembered in the store, so every host sharing it routes the same way."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from .client import Attachment
from .errors import StoreError, StoreUnavailable, store_log_level
from .media import MediaRef
from .outbound import OutboundPolicy
from .relay import AgentMessage
from .scoped import ScopedValues

log = logging.getLogger("chatwoot_mirror.channels")

#: the store scope of each contact's last channel
CHANNEL_SCOPE = "channel"


class Channel(Protocol):
    """What the mirror needs of a channel adapter (``integrations.base.ChannelAdapter``
    is one)."""

    @property
    def name(self) -> str:
        """The provider's name (a class attribute of each adapter will do)."""

    def relay(self, message: AgentMessage) -> str | None:
        """Send ``message`` to the customer; the provider's message id."""

    def download(self, media: MediaRef, max_bytes: int) -> Attachment:
        """Fetch a file the customer sent."""

    def attach(self, values: Callable[[str], ScopedValues] | None,
               outbound: OutboundPolicy) -> None:
        """Connected to a mirror: its shared state (``None``: the mirror keeps none) and
        where files may be fetched from."""

    def secrets(self) -> list[str]:
        """The adapter's secrets, to be masked wherever they could be logged."""


class ChannelRouter:
    """The connected channels, and which one each contact last wrote through."""

    def __init__(self, channels: ScopedValues | None) -> None:
        #: ``None``: a disabled mirror, which remembers nothing (the first channel answers)
        self.channels = channels
        self.adapters: dict[str, Channel] = {}
        self._lock = threading.Lock()

    def add(self, channel: Channel) -> bool:
        """Connect ``channel``; ``False`` if one of that name was connected already."""
        with self._lock:
            if channel.name in self.adapters:
                return False
            self.adapters[channel.name] = channel
            return True

    def remember(self, contact_key: str, name: str) -> None:
        """Route ``contact_key``'s replies through ``name`` from now on. Read before the
        write: no local cache, so a contact that moved to another channel on another
        host is routed there by every host."""
        if self.channels is None:
            return
        try:
            try:
                known = self.channels.get(contact_key)
            except StoreUnavailable:
                known = None  # written anyway: the local spill keeps it for the store
            if known != name:
                self.channels.set(contact_key, name)
        except StoreError as exc:
            log.warning("channel of contact not stored contact=%s error=%s", contact_key, exc)

    def channel_for(self, contact_key: str, name: str | None = None) -> Channel:
        """``name`` when connected, else the contact's last channel, else the first."""
        if name in self.adapters:
            return self.adapters[name or ""]
        remembered = None
        if self.channels is not None:
            try:
                remembered = self.channels.get(contact_key)
            except StoreError as exc:
                log.log(store_log_level(exc), "channel of contact unknown contact=%s error=%s",
                        contact_key, exc)
        return self.adapters.get(remembered or "") or next(iter(self.adapters.values()))

    def relay(self, message: AgentMessage) -> str | None:
        """The mirror's sender: ``message`` out through its contact's channel."""
        return self.channel_for(message.contact.key, message.channel).relay(message)
