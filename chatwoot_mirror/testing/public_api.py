"""The public client API, ``/public/api/v1/inboxes/{inbox_identifier}/...``
(app/controllers/public/api/v1/inboxes/*_controller.rb and their jbuilder views under
app/views/public/api/v1/inboxes/)."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import uuid
from functools import partial
from typing import Any

from .models import (
    E164,
    Models,
    content_and_files,
    normalise_email,
    permitted_scalar,
    ruby_str,
)
from .state import Contact, ContactInbox, Conversation, Message
from .wire import HMAC_FAILED, NOT_FOUND_PUBLIC, ApiError, Reply, Request, parse_body, parse_query

#: Haikunator-like names Chatwoot gives a contact created without one
HAIKU = ["morning-river", "silent-leaf", "bold-sun", "quiet-hill", "young-moon", "wild-sea"]


class PublicApi(Models):
    """The contacts, conversations and messages controllers of the client API, and the
    contact builders they call (app/builders/contact_inbox_with_contact_builder.rb,
    app/actions/contact_identify_action.rb)."""

    def _public(self, r: Request, rest: str) -> Reply:
        # Rails' params: the body's, then the query string's over them
        body = {**parse_body(r), **parse_query(r)}
        if rest == "" and r.method == "GET":
            return Reply(200, self._inbox_public())
        if rest == "/contacts" and r.method == "POST":
            return Reply(200, self._contact_create(body))
        m = re.match(r"^/contacts/([^/]+)(/.*)?$", rest)
        if not m:
            raise ApiError(404, NOT_FOUND_PUBLIC)
        source_id, sub = m.group(1), m.group(2) or ""
        if sub == "":
            if r.method == "GET":
                ci = self._contact_inbox(source_id)
                self._check_hmac(body, ci)
                return Reply(200, self._contact_json(ci))
            if r.method in ("PATCH", "PUT"):
                ci = self._contact_inbox(source_id)
                self._check_hmac(body, ci)
                return Reply(200, self._contact_update(ci, body))
            raise ApiError(404, NOT_FOUND_PUBLIC)
        ci = self._contact_inbox(source_id)
        if sub == "/conversations":
            if r.method == "GET":
                convs = self._visible_conversations(ci)
                self.random.shuffle(convs)  # Chatwoot's index has no ORDER BY
                return Reply(200, [self._conversation_public(c) for c in convs])
            if r.method == "POST":
                return Reply(200, self._conversation_public(self._conversation_create(ci, body)))
        m = re.match(r"^/conversations/(\d+)(/.*)?$", sub)
        if not m:
            raise ApiError(404, NOT_FOUND_PUBLIC)
        action = m.group(2) or ""
        conv = self.conversations.get(int(m.group(1)))
        # ConversationsController#set_conversation looks among the conversations the index
        # shows; the messages controller (InboxesController#set_conversation) among all of
        # the contact's
        visible = (self._contact_conversations(ci.contact_id) if action == "/messages"
                   else self._visible_conversations(ci))
        if conv is None or conv not in visible:
            raise ApiError(404, NOT_FOUND_PUBLIC)
        if action == "" and r.method == "GET":
            return Reply(200, self._conversation_public(conv))
        if action == "/toggle_status" and r.method == "POST":
            if conv.status != "resolved":
                self._set_status(conv, "resolved")
            return Reply(200, self._conversation_public(conv))
        if action == "/toggle_typing" and r.method == "POST":
            state = body.get("typing_status")
            if state in ("on", "off"):
                contact = self.contacts[ci.contact_id]
                self._emit(f"conversation_typing_{state}", lambda: {
                    "user": contact.webhook(self.account),
                    "conversation": self._conversation_webhook(conv),
                    "is_private": False,
                })
            return Reply(200, None)
        if action == "/update_last_seen" and r.method == "POST":
            conv.contact_last_seen_at = time.time()
            for msg in self._messages_of(conv):
                if msg.message_type != 0 and msg.status in ("sent", "delivered"):
                    msg.status = "read"
                    self._emit("message_updated", partial(self._message_webhook, msg))
            return Reply(200, None)
        m = re.match(r"^/messages/(\d+)$", action)
        if m and r.method in ("PATCH", "PUT"):
            return Reply(200, self._message_public(self._submit_values(conv, int(m.group(1)),
                                                                       body)))
        if action == "/messages":
            if r.method == "GET":
                before = body.get("before")
                return Reply(200, self._messages_index(conv, int(before) if before else None))
            if r.method == "POST":
                content, files = content_and_files(r, body, self.blobs, self.behaviour)
                msg = self._create_message(
                    conv, content, "incoming", ("Contact", ci.contact_id), attachments=files
                )
                return Reply(200, self._message_public(msg))
        raise ApiError(404, NOT_FOUND_PUBLIC)

    def _visible_conversations(self, ci: ContactInbox) -> list[Conversation]:
        """public/api/v1/inboxes/conversations_controller.rb#index: a contact inbox whose
        identity was verified (identifier_hash) sees all of its contact's conversations,
        through every contact inbox; any other only its own."""
        if ci.hmac_verified:
            return self._contact_conversations(ci.contact_id)
        return [c for c in self.conversations.values() if c.contact_inbox is ci]

    def _inbox_public(self) -> dict[str, Any]:
        closed = {"closed_all_day": True, "open_hour": None, "open_minutes": None,
                  "close_hour": None, "close_minutes": None, "open_all_day": False}
        open_ = {"closed_all_day": False, "open_hour": 9, "open_minutes": 0, "close_hour": 18,
                 "close_minutes": 0, "open_all_day": False}
        return {
            "identifier": self.inbox_identifier,
            "identity_validation_enabled": self.hmac_mandatory,
            "name": self.inbox_name,
            "timezone": "America/Sao_Paulo",
            "working_hours": [
                {"day_of_week": d, **(closed if d in (0, 6) else open_)} for d in range(7)
            ],
            "working_hours_enabled": False,
            "csat_survey_enabled": False,
            "greeting_enabled": False,
        }

    def _check_hmac(self, body: dict[str, Any], ci: ContactInbox | None = None) -> None:
        given = body.get("identifier_hash")
        if not given and not self.hmac_mandatory:
            return
        expected = hmac.new(
            self.hmac_token.encode(), ruby_str(body.get("identifier")).encode(), hashlib.sha256
        ).hexdigest()
        if not given or not hmac.compare_digest(str(given), expected):
            # Chatwoot raises a bare StandardError here, which nothing rescues.
            raise ApiError(500, HMAC_FAILED)
        if ci is not None:
            ci.hmac_verified = True

    def _contact_inbox(self, source_id: str) -> ContactInbox:
        ci = self.contact_inboxes.get(source_id)
        if ci is None or ci.contact_id not in self.contacts:
            raise ApiError(404, NOT_FOUND_PUBLIC)
        return ci

    def _contact_json(self, ci: ContactInbox) -> dict[str, Any]:
        contact = self.contacts[ci.contact_id]
        return {
            "source_id": ci.source_id,
            "pubsub_token": ci.pubsub_token,
            "id": contact.id,
            "name": contact.name,
            "email": contact.email,
            "phone_number": contact.phone_number,
        }

    def _messages_index(self, conv: Conversation, before: int | None) -> list[dict[str, Any]]:
        chat = [m for m in self._messages_of(conv) if m.chat and (before is None or m.id < before)]
        return [self._message_public(m) for m in chat[-20:]]

    def _message_public(self, msg: Message) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": msg.id,
            "content": msg.content,
            "message_type": msg.message_type,
            "content_type": msg.content_type,
            "content_attributes": msg.content_attributes,
            "created_at": int(msg.created_at),
            "conversation_id": msg.conversation_id,
        }
        return self._with_attachments_and_sender(data, msg)

    def _conversation_public(self, conv: Conversation) -> dict[str, Any]:
        contact = self.contacts[conv.contact_inbox.contact_id]
        return {
            "id": conv.id,
            "uuid": conv.uuid,
            "inbox_id": self.inbox_id,
            "contact_last_seen_at": int(conv.contact_last_seen_at),
            "status": conv.status,
            "agent_last_seen_at": int(conv.agent_last_seen_at),
            "messages": [self._message_public(m) for m in self._messages_of(conv) if m.chat],
            "contact": contact.record(),
        }

    def _contact_create(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check_hmac(body)
        source_id = body.get("source_id") or str(uuid.uuid4())
        existing = self.contact_inboxes.get(str(source_id))
        if existing and existing.contact_id in self.contacts:
            return self._contact_json(existing)  # attributes are NOT updated
        phone = body.get("phone_number")
        if phone and not E164.match(str(phone)):
            raise ApiError(422, {"message": "Phone number should be in e164 format",
                                 "attributes": ["phone_number"]})
        email = normalise_email(body.get("email"))
        contact = self._find_contact({**body, "email": email})
        if contact is None:
            contact = Contact(
                id=self._next("contact"),
                name=body.get("name") or self.random.choice(HAIKU),
                email=email,
                phone_number=phone,
                identifier=body.get("identifier"),
                custom_attributes=dict(body.get("custom_attributes") or {}),
            )
            self.contacts[contact.id] = contact
            self._emit("contact_created", lambda: contact.webhook(self.account))
        ci = ContactInbox(self._next("contact_inbox"), contact.id, self.inbox_id, str(source_id))
        self.contact_inboxes[ci.source_id] = ci
        return self._contact_json(ci)

    def _find_contact(self, body: dict[str, Any]) -> Contact | None:
        for attr in ("identifier", "email", "phone_number"):
            value = body.get(attr)
            if value:
                for contact in self.contacts.values():
                    if getattr(contact, attr) == value:
                        return contact
        return None

    def _contact_update(self, ci: ContactInbox, body: dict[str, Any]) -> dict[str, Any]:
        """``ContactsController#update`` runs ``ContactIdentifyAction`` (without
        ``identifier``): a contact of the account that already has the email or the phone
        number absorbs this one (its contact inboxes move there), then the rest is set."""
        contact = self.contacts[ci.contact_id]
        phone = body.get("phone_number")
        if phone and not E164.match(str(phone)):
            raise ApiError(422, {"message": "Phone number should be in e164 format",
                                 "attributes": ["phone_number"]})
        email = normalise_email(body.get("email"))
        for attr, value in (("email", email), ("phone_number", phone)):
            if not value:
                continue
            other = next((c for c in self.contacts.values()
                          if c.id != contact.id and getattr(c, attr) == value), None)
            if other is not None:
                self.merge_contacts(other.id, contact.id)
                contact = other
        body = {**body, "email": email}
        for attr in ("name", "email", "phone_number"):
            if body.get(attr):
                setattr(contact, attr, body[attr])
        if isinstance(body.get("custom_attributes"), dict):
            contact.custom_attributes.update(body["custom_attributes"])
        contact.updated_at = time.time()
        return self._contact_json(ci)

    def _submit_values(self, conv: Conversation, message_id: int,
                       body: dict[str, Any]) -> Message:
        """``MessagesController#update``: the conversation's message (404 otherwise) takes
        ``submitted_values`` (a content_attributes accessor; the permitted keys of each
        item are name, title, value and csat_survey_response) and the save sends
        ``message_updated``. A CSAT survey older than 14 days is a 422."""
        msg = self._message_in(conv, message_id)
        if msg is None:
            raise ApiError(404, NOT_FOUND_PUBLIC)
        if msg.content_type == "input_csat" and time.time() - msg.created_at > 14 * 86400:
            raise ApiError(422, {"error": "You cannot update the CSAT survey after 14 days"})
        submitted = _permit_submitted(body.get("submitted_values"))
        if submitted is None:
            return msg  # nothing permitted: update!({}) saves nothing
        attrs = {**msg.content_attributes, "submitted_values": submitted}
        if attrs != msg.content_attributes:
            msg.content_attributes = attrs
            msg.updated_at = time.time()
            self._emit("message_updated", lambda: self._message_webhook(msg))
        return msg


def _permit_submitted(values: Any) -> Any:
    """``permit(submitted_values: [:name, :title, :value, {csat_survey_response:
    [:feedback_message, :rating]}])``: a hash, or an array of hashes, keeps only those
    keys; anything else is dropped."""
    def one(item: dict[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in item.items()
                if k in ("name", "title", "value") and permitted_scalar(v)}
        survey = item.get("csat_survey_response")
        if isinstance(survey, dict):
            kept["csat_survey_response"] = {k: v for k, v in survey.items()
                                            if k in ("feedback_message", "rating")}
        return kept

    if isinstance(values, dict):
        return one(values)
    if isinstance(values, list):
        return [one(item) for item in values if isinstance(item, dict)]
    return None
