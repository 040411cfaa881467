"""Agent replies on their way to the customer: what the host's channel sender receives.

Chatwoot delivers nothing to the end user of an API inbox; the agent's reply arrives as a
``message_created`` webhook and the host must send it through its provider. The webhook
only queues it (Chatwoot marks the message failed if the webhook takes over 5 s); the
delivery workers call the sender registered with ``mirror.on_agent_message`` and, with
``CHATWOOT_API_TOKEN``, report ``delivered`` or ``failed`` back to Chatwoot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import MirrorError
from .identity import ContactIdentity


@dataclass(frozen=True)
class AgentAttachment:
    url: str
    file_type: str  # Chatwoot's: image, audio, video, file, location, ...
    filename: str | None = None


@dataclass(frozen=True)
class AgentMessage:
    """An agent's (or Chatwoot's own template) message to send to the customer."""

    contact: ContactIdentity
    text: str
    chatwoot_message_id: int
    conversation_id: int
    attachments: tuple[AgentAttachment, ...] = ()
    agent_name: str | None = None
    kind: str = "agent"  # "agent", or "template" for Chatwoot's greeting / out-of-office
    #: the channel adapter to send through (a bot's reply goes back the way the message
    #: came); ``None``: the channel the contact last wrote through
    channel: str | None = None
    #: the Chatwoot message the agent quoted (``content_attributes.in_reply_to``)
    in_reply_to: int | None = None
    #: the provider's id of that quoted message, looked up just before sending: adapters
    #: send the reply as a WhatsApp reply to it
    reply_to: str | None = None
    #: the key of the mirrored copy of a bot reply, which links its provider id to its
    #: Chatwoot message (see :mod:`chatwoot_mirror.message_ids`)
    mirror_key: str | None = None
    #: set by the delivery worker, never stored: a key that stays the same each time this
    #: send is tried (adapters that can track sends give the provider one made of it), and
    #: whether an earlier try may have reached the provider (a crash, a timeout)
    send_key: str | None = None
    maybe_sent: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "contact": self.contact.to_json(),
            "text": self.text,
            "chatwoot_message_id": self.chatwoot_message_id,
            "conversation_id": self.conversation_id,
            "attachments": [[a.url, a.file_type, a.filename] for a in self.attachments],
            "agent_name": self.agent_name,
            "kind": self.kind,
            "channel": self.channel,
            "in_reply_to": self.in_reply_to,
            "mirror_key": self.mirror_key,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentMessage:
        return cls(
            contact=ContactIdentity.from_json(data["contact"]),
            text=data["text"],
            chatwoot_message_id=int(data["chatwoot_message_id"]),
            conversation_id=int(data["conversation_id"]),
            attachments=tuple(AgentAttachment(*a) for a in data.get("attachments", ())),
            agent_name=data.get("agent_name"),
            kind=data.get("kind", "agent"),
            channel=data.get("channel"),
            in_reply_to=_int(data.get("in_reply_to")),
            mirror_key=data.get("mirror_key"),
        )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


#: ``fn(message) -> provider message id (or None)``; raise to fail the attempt.
Sender = Callable[[AgentMessage], "str | None"]


class RelayRejected(MirrorError):
    """Raise from a sender when the channel refused the message for good (say, outside
    WhatsApp's 24-hour window): it is reported failed to Chatwoot and not retried."""
