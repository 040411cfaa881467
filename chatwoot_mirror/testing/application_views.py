"""The Application API's views: the jbuilder partials an account-scoped answer is
rendered with (app/views/api/v1/conversations/partials/_conversation.json.jbuilder and
its Enterprise part, api/v1/models/_message, _inbox, and
accounts/conversations/messages/index.json.jbuilder)."""

from __future__ import annotations

from typing import Any

from .models import Models
from .state import MESSAGE_TYPES, Conversation, Message, iso


class ApplicationViews(Models):
    """How the Application API renders conversations, messages and the inbox."""

    def _conversation_api(self, conv: Conversation) -> dict[str, Any]:
        """``GET /conversations/{id}``: app/views/api/v1/conversations/partials/
        _conversation.json.jbuilder (the REST partial, not the webhook's push form): the
        sender as api/v1/models/_contact, the assignee as api/v1/models/_agent, times as
        integers, no contact_inbox (it would carry the contact's pubsub_token)."""
        contact = self.contacts[conv.contact_inbox.contact_id]
        messages = self._messages_of(conv)
        spoken = [m for m in messages if m.message_type != MESSAGE_TYPES["activity"]]
        meta: dict[str, Any] = {
            "sender": {
                "additional_attributes": contact.additional_attributes,
                "availability_status": "offline",
                "email": contact.email,
                "id": contact.id,
                "name": contact.name,
                "phone_number": contact.phone_number,
                "blocked": contact.blocked,
                "identifier": contact.identifier,
                "thumbnail": "",
                "custom_attributes": contact.custom_attributes,
                "last_activity_at": int(contact.updated_at),
                "created_at": int(contact.created_at),
            },
            "channel": "Channel::Api",
            "hmac_verified": conv.contact_inbox.hmac_verified,
        }
        if conv.assignee_id is not None and conv.assignee_id in self.agents:
            meta["assignee"] = {**self.agents[conv.assignee_id].api(), "provider": "email"}
        return {
            "meta": meta,
            "id": conv.id,
            "messages": [self._message_push(messages[-1], conv)] if messages else [],
            "account_id": self.account["id"],
            "uuid": conv.uuid,
            "additional_attributes": {},
            "agent_last_seen_at": int(conv.agent_last_seen_at),
            "assignee_last_seen_at": 0,
            "can_reply": True,
            "contact_last_seen_at": int(conv.contact_last_seen_at),
            "custom_attributes": conv.custom_attributes,
            "inbox_id": self.inbox_id,
            "labels": list(conv.labels),
            "muted": False,
            "snoozed_until": iso(conv.snoozed_until) if conv.snoozed_until else None,
            "status": conv.status,
            "created_at": int(conv.created_at),
            "updated_at": float(conv.updated_at),
            "timestamp": int(conv.last_activity_at),
            "first_reply_created_at": int(conv.first_reply_created_at or 0),
            "unread_count": sum(1 for m in messages if m.message_type == 0
                                and m.created_at > conv.agent_last_seen_at),
            "last_non_activity_message": (self._message_push(spoken[-1], conv)
                                          if spoken else None),
            "last_activity_at": int(conv.last_activity_at),
            "priority": conv.priority,
            "waiting_since": int(conv.waiting_since or 0),
            "sla_policy_id": conv.sla_policy_id if self._sla_applicable(conv) else None,
            **self._sla_partial(conv),
        }

    def _sla_applicable(self, conv: Conversation) -> bool:
        """The partial's ``sla_applicable``: the account has the ``sla`` feature and the
        contact is not blocked (enterprise/.../concerns/conversation.rb#sla_applicable?)."""
        return (self.sla_policies is not None
                and not self.contacts[conv.contact_inbox.contact_id].blocked)

    def _sla_partial(self, conv: Conversation) -> dict[str, Any]:
        """enterprise/app/views/enterprise/api/v1/conversations/partials/_conversation:
        with the ``sla`` feature, ``applied_sla`` (models/_applied_sla, thresholds not
        modelled) and ``sla_events`` (none are raised here); nothing without it."""
        if self.sla_policies is None:
            return {}
        if not self._sla_applicable(conv):
            return {"applied_sla": None, "sla_events": []}
        applied: dict[str, Any] = {}  # json.applied_sla do ... end with nothing inside
        if conv.sla_policy_id is not None and conv.applied_sla_at is not None:
            applied = {
                "id": conv.id, "sla_id": conv.sla_policy_id, "sla_status": "active",
                "created_at": int(conv.applied_sla_at), "updated_at": int(conv.applied_sla_at),
                "sla_completed_at": None, "sla_description": None,
                "sla_name": self.sla_policies.get(conv.sla_policy_id),
                "sla_first_response_time_threshold": None,
                "sla_next_response_time_threshold": None,
                "sla_only_during_business_hours": False,
                "sla_resolution_time_threshold": None,
                "sla_frt_due_at": None, "sla_nrt_due_at": None, "sla_rt_due_at": None,
            }
        return {"applied_sla": applied, "sla_events": []}

    def _inbox_app(self) -> dict[str, Any]:
        """app/views/api/v1/models/_inbox.json.jbuilder for an API inbox: the inbox's own
        columns, every channel-specific key (null when not this channel's), then the API
        channel's webhook, identifier and secrets (an administrator's view)."""
        return {
            "id": self.inbox_id,
            "avatar_url": "",
            "channel_id": self.inbox_id + 100,
            "name": self.inbox_name,
            "channel_type": "Channel::Api",
            "greeting_enabled": False,
            "greeting_message": None,
            "working_hours_enabled": False,
            "enable_email_collect": True,
            "csat_survey_enabled": False,
            "enable_auto_assignment": True,
            "out_of_office_message": None,
            "working_hours": [],
            "timezone": "UTC",
            "callback_webhook_url": None,
            "allow_messages_after_resolved": True,
            "sender_name_type": "friendly",
            "business_name": None,
            "widget_color": None,
            "website_url": None,
            "welcome_title": None,
            "welcome_tagline": None,
            "web_widget_script": None,
            "website_token": None,
            "selected_feature_flags": None,
            "reply_time": None,
            "page_id": None,
            "phone_number": None,
            "forward_to_email": None,
            "lock_to_single_conversation": self.lock_to_single_conversation,
            "webhook_url": self.webhook_url or "",
            "secret": self.webhook_secret,
            "hmac_mandatory": self.hmac_mandatory,
            "hmac_token": self.hmac_token,
            "inbox_identifier": self.inbox_identifier,
        }

    def _message_app(self, msg: Message) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": msg.id,
            "content": msg.content,
            "inbox_id": self.inbox_id,
            "conversation_id": msg.conversation_id,
            "message_type": msg.message_type,
            "content_type": msg.content_type,
            "status": msg.status,
            "content_attributes": msg.content_attributes,
            "created_at": int(msg.created_at),
            "private": msg.private,
            "source_id": msg.source_id,
        }
        sender = self._sender_push(msg)
        if sender is not None:  # api/v1/models/_message: json.sender ... if message.sender
            data["sender"] = sender
        if msg.attachments:
            data["attachments"] = msg.attachments
        return data

    def _messages_index_app(self, conv: Conversation) -> dict[str, Any]:
        """``Conversations::MessagesController#index``: MessageFinder's last 20 messages
        (private and activity ones too) in messages/index.json.jbuilder."""
        contact = self.contacts[conv.contact_inbox.contact_id]
        meta: dict[str, Any] = {"labels": list(conv.labels), "additional_attributes": {},
                                "contact": contact.push()}
        if conv.assignee_id in self.agents:
            meta["assignee"] = self.agents[conv.assignee_id].push()
        meta["agent_last_seen_at"] = iso(conv.agent_last_seen_at) if conv.agent_last_seen_at \
            else None
        meta["assignee_last_seen_at"] = None
        return {"meta": meta,
                "payload": [self._message_app(m) for m in self._messages_of(conv)[-20:]]}
