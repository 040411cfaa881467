"""Posting one mirrored message: resolve the conversation, create the message, once.

The user's message goes through the public client API, the only way to create an
``incoming`` message without a token. The bot's reply goes through the
Application API as ``outgoing`` with the AgentBot token, carrying our own
``source_id`` and a ``content_attributes`` marker so that webhooks and retries
can recognise it; without a bot token it falls back to an incoming message with
a visible prefix.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from .client import Attachment, ChatwootClient
from .conversations import ConversationResolver, Target
from .errors import NotFound
from .identity import ContactIdentity

log = logging.getLogger("chatwoot_mirror.delivery")

#: Key under ``content_attributes`` that marks messages this library created.
MARKER = "chatwoot_mirror"
#: Prefix of the ``source_id`` of messages this library created through the Application API.
SOURCE_ID_PREFIX = "cwm:"
#: Chatwoot rejects longer content with a 422.
MAX_CONTENT = 150_000
_TRUNCATED = "\n[…truncated by chatwoot-mirror]"

INCOMING = "incoming"
OUTGOING = "outgoing"


@dataclass(frozen=True)
class MirroredMessage:
    """One message to mirror. ``key`` makes it idempotent; ``direction`` is from Chatwoot's
    point of view: ``incoming`` = the customer wrote it, ``outgoing`` = the bot did."""

    identity: ContactIdentity
    direction: str
    content: str
    sender_name: str | None = None
    provider_message_id: str | None = None
    attachments: tuple[Attachment, ...] = ()
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: float = field(default_factory=time.time)


class Deliverer:
    """Delivers :class:`MirroredMessage` objects to Chatwoot, one HTTP call in steady state."""

    def __init__(
        self,
        client: ChatwootClient,
        resolver: ConversationResolver,
        *,
        use_bot_token: bool,
        bot_prefix: str = "🤖 ",
    ) -> None:
        self.client = client
        self.resolver = resolver
        self.use_bot_token = use_bot_token
        self.bot_prefix = bot_prefix

    def deliver(self, message: MirroredMessage) -> dict[str, Any]:
        """Post ``message``; a 404 (conversation or contact deleted in Chatwoot) re-resolves once.

        Returns Chatwoot's message JSON. Raises :class:`~chatwoot_mirror.errors.ChatwootError`.
        """
        target = self.resolver.resolve(message.identity, _display_name(message))
        try:
            result = self._post(target, message)
        except NotFound:
            self.resolver.forget(message.identity, target.conversation_id)
            target = self.resolver.resolve(message.identity, _display_name(message))
            result = self._post(target, message)
        log.debug(
            "message delivered contact=%s conversation=%s direction=%s key=%s",
            message.identity.key,
            target.conversation_id,
            message.direction,
            message.key,
        )
        return result

    def _post(self, target: Target, message: MirroredMessage) -> dict[str, Any]:
        content = _fit(message.content)
        if message.direction == OUTGOING and self.use_bot_token:
            marker: dict[str, Any] = {"key": message.key}
            if message.provider_message_id:
                marker["provider_message_id"] = message.provider_message_id
            return self.client.create_message(
                target.conversation_id,
                content,
                message_type="outgoing",
                source_id=SOURCE_ID_PREFIX + message.key,
                content_attributes={MARKER: marker},
                attachments=message.attachments,
            )
        if message.direction == OUTGOING:
            content = _fit(self.bot_prefix + message.content)
        return self.client.create_incoming_message(
            target.source_id,
            target.conversation_id,
            content,
            attachments=message.attachments,
        )


def _display_name(message: MirroredMessage) -> str | None:
    if message.direction == INCOMING and message.sender_name:
        return message.sender_name
    return message.identity.phone_number or message.identity.identifier


def _fit(content: str) -> str:
    if len(content) <= MAX_CONTENT:
        return content
    return content[: MAX_CONTENT - len(_TRUNCATED)] + _TRUNCATED
