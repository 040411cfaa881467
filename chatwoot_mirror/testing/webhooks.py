"""The webhook payloads: what ``WebhookListener`` sends for each event, built as
``Message#webhook_data``, ``Conversations::EventDataPresenter#webhook_data`` and the
``push_event_data`` methods build them (app/listeners/webhook_listener.rb,
app/presenters/conversations/event_data_presenter.rb, app/models/*.rb)."""

from __future__ import annotations

import re
from typing import Any

from .state import MESSAGE_TYPE_NAMES, Account, Contact, Conversation, Message, iso


class WebhookPayloads(Account):
    """The ``push_event_data`` and ``webhook_data`` forms of messages and conversations."""

    def _sender_push(self, msg: Message) -> dict[str, Any] | None:
        sender = self._sender(msg)
        return sender.push() if sender is not None else None

    def _sender_webhook(self, msg: Message) -> dict[str, Any] | None:
        sender = self._sender(msg)
        if isinstance(sender, Contact):
            return sender.webhook(self.account)
        return sender.webhook() if sender is not None else None

    def _with_attachments_and_sender(self, data: dict[str, Any], msg: Message) -> dict[str, Any]:
        """Both jbuilder views add ``attachments`` and ``sender`` only when there are some."""
        if msg.attachments:
            data["attachments"] = msg.attachments
        sender = self._sender_push(msg)
        if sender is not None:
            data["sender"] = sender
        return data

    def _message_push(
        self, msg: Message, conv: Conversation, *, webhook: bool = False
    ) -> dict[str, Any]:
        """Message#push_event_data; in webhooks (webhook_push_event_data) the content is
        normalised as Messages::WebhookContentNormalizer does."""
        content = webhook_content(msg.content) if webhook else msg.content
        data = {
            "id": msg.id,
            "content": content,
            "account_id": self.account["id"],
            "inbox_id": self.inbox_id,
            "conversation_id": msg.conversation_id,
            "message_type": msg.message_type,
            "created_at": int(msg.created_at),
            "updated_at": iso(msg.updated_at),
            "private": msg.private,
            "status": msg.status,
            "source_id": msg.source_id,
            "content_type": msg.content_type,
            "content_attributes": msg.content_attributes,
            "sender_type": msg.sender_type,
            "sender_id": msg.sender_id,
            "external_source_ids": {},
            "additional_attributes": {},
            "processed_message_content": content,
            "sentiment": {},
            "conversation": {
                "assignee_id": conv.assignee_id,
                "unread_count": 0,
                "last_activity_at": int(conv.last_activity_at),
                "contact_inbox": {"source_id": conv.contact_inbox.source_id},
            },
        }
        return self._with_attachments_and_sender(data, msg)

    def _message_webhook(self, msg: Message) -> dict[str, Any]:
        conv = self.conversations[msg.conversation_id]
        data: dict[str, Any] = {
            "account": self.account,
            "additional_attributes": {},
            "content_attributes": msg.content_attributes,
            "content_type": msg.content_type,
            "content": webhook_content(msg.content),
            "conversation": self._conversation_webhook(conv),
            "created_at": iso(msg.created_at),
            "id": msg.id,
            "inbox": {"id": self.inbox_id, "name": self.inbox_name},
            "message_type": MESSAGE_TYPE_NAMES[msg.message_type],
            "private": msg.private,
            "sender": self._sender_webhook(msg),
            "source_id": msg.source_id,
        }
        if msg.attachments:
            data["attachments"] = msg.attachments
        return data

    def _assignee_push(self, conv: Conversation) -> tuple[dict[str, Any] | None, str | None]:
        if conv.assignee_id in self.agents:
            return self.agents[conv.assignee_id].push(), "User"
        if conv.assignee_agent_bot_id == self.bot.id:
            return self.bot.push(), "AgentBot"
        return None, None

    def _conversation_webhook(self, conv: Conversation) -> dict[str, Any]:
        contact = self.contacts[conv.contact_inbox.contact_id]
        chat = [m for m in self._messages_of(conv) if m.chat]
        assignee, assignee_type = self._assignee_push(conv)
        return {
            "additional_attributes": {},
            "can_reply": True,
            "channel": "Channel::Api",
            "contact_inbox": conv.contact_inbox.row(),
            "id": conv.id,
            "inbox_id": self.inbox_id,
            "messages": [self._message_push(chat[-1], conv, webhook=True)] if chat else [],
            "labels": list(conv.labels),
            "meta": {
                "sender": contact.push(),
                "assignee": assignee,
                "assignee_type": assignee_type,
                "team": None,
                "hmac_verified": conv.contact_inbox.hmac_verified,
            },
            "status": conv.status,
            "custom_attributes": conv.custom_attributes,
            "snoozed_until": iso(conv.snoozed_until) if conv.snoozed_until else None,
            "unread_count": 0,
            "first_reply_created_at": (
                iso(conv.first_reply_created_at) if conv.first_reply_created_at else None
            ),
            "priority": conv.priority,
            "waiting_since": int(conv.waiting_since or 0),
            "agent_last_seen_at": int(conv.agent_last_seen_at),
            "contact_last_seen_at": int(conv.contact_last_seen_at),
            "last_activity_at": int(conv.last_activity_at),
            "timestamp": int(conv.last_activity_at),
            "created_at": int(conv.created_at),
            "updated_at": conv.updated_at,
            "account": self.account,
        }


def webhook_content(content: str | None) -> str | None:
    """app/services/messages/webhook_content_normalizer.rb: CommonMark hard breaks (a
    backslash before the newline, as the dashboard's editor writes them) become plain
    newlines, and trailing newlines go (4.12.1/4.13.0, #13896 and #13950)."""
    if not content:
        return content
    return re.sub(r"(\r?\n)+\Z", "", re.sub(r"\\\r?\n", "\n", content))
