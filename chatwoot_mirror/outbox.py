"""The outbox: how a mirrored message is written down before delivery, and when a failed
delivery is tried again.

``log_*`` calls turn messages into :class:`~chatwoot_mirror.store.OutboxRow` objects and
commit them to the store; the delivery workers read them back with :func:`decode`.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass

from .client import Attachment
from .delivery import BOT, RELAY, MirroredMessage
from .identity import ContactIdentity
from .media import MediaRef
from .relay import AgentMessage
from .store import OutboxRow
from .untrusted import repair_text

#: Directions with a queue of their own, apart from the contact's mirroring queue.
_QUEUES = {RELAY: "relay:", BOT: "bot:"}
#: Chatwoot counts a conversation's messages over the last minute for its flood 422.
FLOOD_DELAY = 60.0


#: unique keys that only keep a row from being queued twice (a bot turn's reply, see
#: :mod:`.turns`) start so; provider message ids never do
ONCE = "once:"


def encode(message: MirroredMessage, *, once: str | None = None) -> OutboxRow:
    """``message`` as a row; ``once`` (without a provider id): its unique key instead."""
    identity = message.identity
    payload = {
        # by hand: dataclasses.asdict deep-copies and was a quarter of the host path
        "identity": {
            "key": identity.key,
            "kind": identity.kind,
            "identifier": identity.identifier,
            "phone_number": identity.phone_number,
            "raw": identity.raw,
        },
        "direction": message.direction,
        "content": message.content,
        "sender_name": message.sender_name,
        "attachments": [
            {"ref": a.to_dict()} if isinstance(a, MediaRef) else {
                "filename": a.filename,
                "content_type": a.content_type,
                "data": base64.b64encode(a.data).decode("ascii"),
            }
            for a in message.attachments
        ],
    }
    if message.relay is not None:
        payload["relay"] = message.relay.to_dict()
    if message.action is not None:
        payload["action"] = message.action
    if message.reply_to is not None:
        payload["reply_to"] = message.reply_to
    # Relays queue apart from mirroring: a slow provider never holds up Chatwoot, and back;
    # so do bot turns: a Chatwoot outage never keeps the bot from answering.
    prefix = _QUEUES.get(message.direction, "")
    provider_id = message.provider_message_id
    if provider_id is None and once is not None:
        provider_id = ONCE + once
    return OutboxRow(
        key=message.key,
        contact_key=repair_text(prefix + message.identity.key),
        # Half an emoji (a lone surrogate) cannot be stored: it is replaced, never lost
        # with the whole message. One check of the whole payload covers every field.
        payload=repair_text(json.dumps(payload, ensure_ascii=False, separators=(",", ":"))),
        unique_key=None if provider_id is None else repair_text(provider_id),
        created_at=message.created_at,
    )


def decode(row: OutboxRow) -> MirroredMessage:
    payload = json.loads(row.payload)
    return MirroredMessage(
        identity=ContactIdentity(**payload["identity"]),
        direction=payload["direction"],
        content=payload["content"],
        sender_name=payload.get("sender_name"),
        provider_message_id=None if (row.unique_key or "").startswith(ONCE) else row.unique_key,
        attachments=tuple(
            MediaRef.from_dict(a["ref"]) if "ref" in a else
            Attachment(base64.b64decode(a["data"]), a["filename"], a["content_type"])
            for a in payload.get("attachments", ())
        ),
        key=row.key,
        created_at=row.created_at,
        attempts=row.attempts,
        ambiguous=row.uncertain,
        relay=AgentMessage.from_dict(payload["relay"]) if payload.get("relay") else None,
        action=payload.get("action"),
        reply_to=payload.get("reply_to"),
    )


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with "equal jitter": attempt n waits between d/2 and d, where
    d = min(cap, base * 2**(n-1)). The jitter spreads a crowd of retries after an outage."""

    base: float = 1.0
    cap: float = 300.0
    flood: float = FLOOD_DELAY

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap, self.base * (2 ** max(0, attempts - 1)))
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)

    def flood_delay(self, rng: random.Random | None = None) -> float:
        """Wait after a flood 422: half to all of Chatwoot's one-minute counting window."""
        return self.flood / 2 + (rng or random).uniform(0, self.flood / 2)
