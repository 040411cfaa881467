"""Chatwoot's model rules: what a save or a new message does, whichever API asked
(app/models/conversation.rb and message.rb callbacks and validations,
app/builders/conversation_builder.rb, app/actions/contact_merge_action.rb,
app/services/messages/status_update_service.rb, app/models/attachment.rb and the
ActiveStorage uploads)."""

from __future__ import annotations

import posixpath
import re
import time
import uuid
from typing import Any
from urllib.parse import quote

from .multipart import parse_form
from .state import MESSAGE_TYPES, ContactInbox, Conversation, Message, iso
from .versions import Behaviour
from .webhooks import WebhookPayloads
from .wire import ApiError, Request

#: app/models/contact.rb: /\A\+[1-9]\d{1,14}\z/ (\z is the very end: no trailing newline)
E164 = re.compile(r"\+[1-9]\d{1,14}\Z")
#: Devise.email_regexp, which app/models/contact.rb validates emails with
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
MAX_CONTENT = 150_000
#: app/helpers/file_type_helper.rb: only these are images or videos; any audio/* is audio
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/bmp", "image/webp"})
VIDEO_TYPES = frozenset({"video/ogg", "video/mp4", "video/webm", "video/quicktime"})
#: app/models/jsonb_attributes_length_validator.rb
MAX_ATTRIBUTE_TEXT = 1500
MAX_ATTRIBUTE_NUMBER = 9_999_999_999
#: Conversation column -> the emulator's field, where the names differ
_FIELDS = {"label_list": "labels"}
#: columns whose values conversation_updated reports as ISO times
_TIMES = frozenset({"snoozed_until", "waiting_since", "first_reply_created_at"})
#: Message.content_types (app/models/message.rb)
CONTENT_TYPES = frozenset({"text", "input_text", "input_textarea", "input_email", "input_select",
                           "cards", "form", "article", "incoming_email", "input_csat",
                           "integrations", "sticker", "voice_call"})


class Models(WebhookPayloads):
    """The rules both APIs and the dashboard share."""

    def merge_contacts(self, base_id: int, mergee_id: int) -> None:
        """``POST /actions/contact_merge``: the mergee's contact inboxes (so its source ids)
        and conversations move to the base contact, then the mergee is deleted."""
        with self.lock:
            if int(base_id) not in self.contacts or int(mergee_id) not in self.contacts:
                raise KeyError("no such contact")
            for ci in self.contact_inboxes.values():
                if ci.contact_id == int(mergee_id):
                    ci.contact_id = int(base_id)
            del self.contacts[int(mergee_id)]

    def _conversation_create(self, ci: ContactInbox, body: dict[str, Any]) -> Conversation:
        mine = [c for c in self.conversations.values() if c.contact_inbox is ci]
        if self.lock_to_single_conversation and mine:
            return max(mine, key=lambda c: c.id)  # whatever its status, resolved too
        contact = self.contacts[ci.contact_id]
        attributes = body.get("custom_attributes")
        attributes = dict(attributes) if isinstance(attributes, dict) else {}
        check_attributes(attributes)
        status = "resolved" if contact.blocked else ("pending" if self.bot_active else "open")
        conv = Conversation.new(self._next("conversation"), ci, status)
        conv.waiting_since = conv.created_at  # Conversation#ensure_waiting_since
        if self.bot_active and self.behaviour.bot_assigned_at_creation:
            conv.assignee_agent_bot_id = self.bot.id
        conv.custom_attributes = attributes
        self.conversations[conv.id] = conv
        self._emit("conversation_created", lambda: self._conversation_webhook(conv))
        return conv

    def _create_message(
        self,
        conv: Conversation,
        content: str | None,
        message_type: str,
        sender: tuple[str | None, int | None],
        *,
        private: bool = False,
        source_id: str | None = None,
        content_attributes: dict[str, Any] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        content_type: str = "text",
    ) -> Message:
        if content is not None and len(content) > MAX_CONTENT:
            raise ApiError(422, {"message": "Content is too long (maximum is 150000 characters)",
                                 "attributes": ["content"]})
        now = time.time()
        recent = 0
        for m in reversed(self._messages_of(conv)):  # newest first: stop at the window
            if m.created_at <= now - self.flood_window:
                break
            recent += 1
        if recent >= self.flood_limit:
            # Message#prevent_message_flooding adds the error to :base
            raise ApiError(422, {"message": "Too many messages", "attributes": ["base"]})
        msg = Message(
            id=self._next("message"),
            conversation_id=conv.id,
            content=content,
            message_type=MESSAGE_TYPES[message_type],
            sender_type=sender[0],
            sender_id=sender[1],
            private=private,
            source_id=source_id,
            content_type=content_type,
            content_attributes=dict(content_attributes or {}),
            attachments=list(attachments or []),
        )
        # app/models/attachment.rb#push_event_data: base_data, then the file's metadata
        msg.attachments = [
            {"id": msg.id * 10 + i, "message_id": msg.id,
             "file_type": att.get("file_type", "file"), "account_id": self.account["id"],
             **{k: v for k, v in att.items() if k != "file_type"}}
            for i, att in enumerate(msg.attachments)]
        self.messages.append(msg)
        self._by_conversation.setdefault(conv.id, []).append(msg)
        # Message#execute_after_create_commit_callbacks, in its order
        if msg.message_type == 0:
            self._reopen(conv)
        conv.last_activity_at = now
        self._emit("message_created", lambda: self._message_webhook(msg))
        self._waiting_time(conv, msg)
        return msg

    def _waiting_time(self, conv: Conversation, msg: Message) -> None:
        """Message#dispatch_create_events: the first human reply records itself and stops
        the waiting time (one save); a later human or bot reply stops it
        (clear_waiting_since_on_outgoing_response); a customer's message starts it when
        none runs. Private notes change nothing. Each save is its own conversation_updated.
        A human reply is Message#human_response?: outgoing, not an automation's, and a
        user's or an ``external_echo`` (sent from the native app, whoever posted it)."""
        outgoing = msg.message_type == MESSAGE_TYPES["outgoing"] and not msg.private
        attrs = msg.content_attributes
        human = (outgoing and not attrs.get("automation_rule_id")
                 and (msg.sender_type == "User" or bool(attrs.get("external_echo"))))
        if human and conv.first_reply_created_at is None:
            self._save(conv, first_reply_created_at=msg.created_at, waiting_since=None)
        elif (human or (outgoing and msg.sender_type == "AgentBot")) and conv.waiting_since:
            self._save(conv, waiting_since=None)
        elif msg.message_type == MESSAGE_TYPES["incoming"] and conv.waiting_since is None:
            self._save(conv, waiting_since=msg.created_at)

    def _reopen(self, conv: Conversation) -> None:
        contact = self.contacts[conv.contact_inbox.contact_id]
        if contact.blocked:
            return
        if conv.status == "snoozed":
            self._set_status(conv, "open")
        elif conv.status == "resolved":
            self._set_status(conv, "pending" if self.bot_active else "open")

    def _in_reply_to(self, conv: Conversation, attrs: dict[str, Any]) -> dict[str, Any]:
        """Messages::InReplyToMessageBuilder: ``in_reply_to`` is looked up among *this
        conversation's* messages; found, it keeps the id and adds the quoted message's
        ``source_id`` as ``in_reply_to_external_id``; not found, both become null. An
        ``in_reply_to_external_id`` alone is not looked up (chatwoot#10859)."""
        if attrs.get("in_reply_to") in (None, ""):
            return attrs
        try:
            wanted = int(attrs["in_reply_to"])
        except (TypeError, ValueError):
            wanted = -1
        quoted = self._message_in(conv, wanted)
        attrs["in_reply_to"] = quoted.id if quoted else None
        attrs["in_reply_to_external_id"] = quoted.source_id if quoted else None
        return attrs

    def _update_status(self, msg: Message, status: Any, external_error: Any) -> bool:
        """app/services/messages/status_update_service.rb: an unknown status, or ``read``
        going back to ``delivered``, changes nothing (and the answer is still 200);
        ``external_error`` is kept only on a failure and cleared otherwise. A save that
        changes nothing sends no ``message_updated``."""
        if status not in ("sent", "delivered", "read", "failed"):
            return False
        if msg.status == "read" and status == "delivered":
            return False
        error = external_error if status == "failed" else None
        attrs = dict(msg.content_attributes)
        if error is None:
            attrs.pop("external_error", None)
        else:
            attrs["external_error"] = error
        if msg.status == status and attrs == msg.content_attributes:
            return False
        msg.status, msg.content_attributes = str(status), attrs
        msg.updated_at = time.time()
        self._emit("message_updated", lambda: self._message_webhook(msg))
        return True

    def _save(self, conv: Conversation, **columns: Any) -> bool:
        """One ``conversation.save!``: set the columns, then run what Conversation's
        after-update-commit callbacks do (app/models/conversation.rb). A status change
        sends ``conversation_status_changed`` (its ``changed_attributes`` is null in
        practice), and a change to a key of ``list_of_keys`` sends ONE
        ``conversation_updated`` listing every changed column (``previous_changes``), so
        several changes made together are one event. Nothing changed: no event, False.
        A save of only columns outside list_of_keys (the labels' cache) sends nothing."""
        if "status" in columns and columns["status"] != "snoozed":
            columns.setdefault("snoozed_until", None)  # ensure_snooze_until_reset
        if columns.get("assignee_id") is not None:
            columns["assignee_agent_bot_id"] = None  # reset_agent_bot_when_assignee_present
        elif columns.get("status") not in (None, "pending") and conv.status == "pending":
            # leaving the bot's queue ends the bot's assignment (bot_handoff!, human open)
            columns.setdefault("assignee_agent_bot_id", None)
        if "label_list" in columns:
            # acts-as-taggable-on: label_list= marks a change only when the sorted lists
            # differ; save_cached_tag_list (before_save) writes the cached column either way
            labels = list(columns["label_list"])
            if sorted(labels) == sorted(conv.labels):
                del columns["label_list"]
                conv.labels = labels
            columns["cached_label_list"] = ", ".join(labels)
        diff: dict[str, tuple[Any, Any]] = {}
        for column, new in columns.items():
            name = _FIELDS.get(column, column)
            old = getattr(conv, name)
            if old != new:
                diff[column] = (old, new)
                setattr(conv, name, new)
        if not diff:
            return False
        before, now = conv.updated_at, time.time()
        conv.updated_at = now
        if "status" in diff:
            self._emit("conversation_status_changed", lambda:
                       {**self._conversation_webhook(conv), "changed_attributes": None})
            diff["status_changed_at"] = (before, now)
        if not diff.keys() & self.behaviour.update_keys:
            return True
        diff["updated_at"] = (before, now)

        def shown(column: str, value: Any) -> Any:
            if column in _TIMES | {"status_changed_at", "updated_at"} and value is not None:
                return iso(value)
            return list(value) if isinstance(value, list) else value

        changed = [{k: {"previous_value": shown(k, old), "current_value": shown(k, new)}}
                   for k, (old, new) in diff.items()]
        self._emit("conversation_updated", lambda:
                   {**self._conversation_webhook(conv), "changed_attributes": changed})
        return True

    def _set_status(self, conv: Conversation, status: str) -> None:
        self._save(conv, status=status)

    def _assign(self, conv: Conversation, assignee_id: int | None) -> None:
        """``Conversations::AssignmentService#assign_agent``, one save: an agent taking a
        pending conversation opens it (and starts its waiting time when none runs)."""
        columns: dict[str, Any] = {"assignee_id": assignee_id}
        if assignee_id is not None and conv.status == "pending":
            columns["status"] = "open"
            if conv.waiting_since is None:
                columns["waiting_since"] = time.time()
        self._save(conv, **columns)


def normalise_email(value: Any) -> str | None:
    """app/models/contact.rb: an email is down-cased before it is validated and stored
    (so matching ignores case), and one that is not an address is a 422."""
    if value in (None, ""):
        return None
    email = str(value).lower()
    if not EMAIL.match(email):
        raise ApiError(422, {"message": "Email Invalid email", "attributes": ["email"]})
    return email


def content_and_files(
    r: Request, body: dict[str, Any], blobs: dict[str, dict[str, Any]], rules: Behaviour
) -> tuple[str | None, list[dict[str, Any]]]:
    """The content and the uploads of a message; each upload's blob (its filename and
    content type, which ActiveStorage keeps) goes into ``blobs``."""
    files: list[dict[str, Any]] = []
    ctype = r.header("Content-Type") or ""
    if ctype.lower().startswith("multipart/form-data"):
        _, uploads = parse_form(ctype, r.body)
        for upload in uploads:
            if upload.name != "attachments[]":
                continue
            files.append(store_blob(blobs, upload.data, upload.filename,
                                    upload.content_type, rules))
    content = body.get("content")
    return (None if content is None else str(content)), files


def store_blob(blobs: dict[str, dict[str, Any]], data: bytes, name: str,
               content_type: str, rules: Behaviour, ready_at: float = 0.0) -> dict[str, Any]:
    """Keep an upload as ActiveStorage does and render its file metadata as
    app/models/attachment.rb#file_metadata does (the base keys are added with the
    message): ``extension`` from the name and ``content_type`` from 4.13.0 (#13945; the
    extension column stayed null before), a ``thumb_url`` only for images (a 250 px
    representation), and for audio ``transcribed_text`` and, from 4.14.0 (#14315), an
    inline-disposition ``data_url`` (#audio_metadata). No file name beside the file: the
    URL ends with it. ``ready_at``: before that time the file answers 404, as an S3
    direct upload still under way does (waha#1445)."""
    key = uuid.uuid4().hex
    data_url = f"/rails/active_storage/blobs/{key}/{quote(name)}"
    record = {"filename": name, "content_type": content_type, "byte_size": len(data),
              "_data": data, "_ready_at": ready_at}
    blobs[data_url] = record
    kind = file_type(content_type)
    thumb_url = ""
    if kind == "image":
        # url_for(file.representation(resize_to_fill: [250, nil])); the bytes are not resized
        thumb_url = f"/rails/active_storage/representations/{key}/fill-250/{quote(name)}"
        blobs[thumb_url] = record
    metadata: dict[str, Any] = {"file_type": kind}
    if rules.attachment_content_type:
        # File.extname(name).delete_prefix('.').presence: a dotfile has none
        metadata["extension"] = posixpath.splitext(name)[1][1:] or None
        metadata["content_type"] = content_type
    else:
        metadata["extension"] = None
    metadata.update({"data_url": data_url, "thumb_url": thumb_url, "file_size": len(data),
                     "width": None, "height": None})
    if kind == "audio":
        if rules.inline_audio_url:
            metadata["data_url"] = f"{data_url}?disposition=inline"
        metadata["transcribed_text"] = ""
    return metadata


def check_attributes(attributes: dict[str, Any]) -> None:
    """app/models/jsonb_attributes_length_validator.rb on a conversation's
    ``custom_attributes``; the RecordInvalid becomes RequestExceptionHandler's 422."""
    problems = []
    for key, value in attributes.items():
        if isinstance(value, str) and len(value) > MAX_ATTRIBUTE_TEXT:
            problems.append(f"{key} length should be < {MAX_ATTRIBUTE_TEXT}")
        elif (isinstance(value, int) and not isinstance(value, bool)
              and value > MAX_ATTRIBUTE_NUMBER):
            problems.append(f"{key} value should be < {MAX_ATTRIBUTE_NUMBER}")
    if problems:
        raise ApiError(422, {
            "message": ", ".join(f"Custom attributes {p}" for p in problems),
            "attributes": ["custom_attributes"],
        })


def permitted_list(value: Any) -> list[Any] | None:
    """``params.permit(key: [])``: only an array survives, and only its scalar items
    (ActionController::Parameters' permitted scalars); anything else is dropped (nil)."""
    if not isinstance(value, list):
        return None
    return [v for v in value if permitted_scalar(v)]


def permitted_scalar(value: Any) -> bool:
    """Whether ``permit`` keeps a JSON value as a scalar (not a hash or an array)."""
    return isinstance(value, (str, int, float, bool)) or value is None


#: ActiveModel::Type::Boolean::FALSE_VALUES, as JSON or a form sends them
_RAILS_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "off", "OFF"})


def rails_true(value: Any) -> bool:
    """``ActiveModel::Type::Boolean.new.cast(value).present?``: blank is nil, the false
    values false, anything else true."""
    if value is None or value == "" or value == 0:  # 0 is False too
        return False
    return str(value) not in _RAILS_FALSE


def ruby_str(value: Any) -> str:
    """Ruby's ``to_s`` of a JSON value, where it differs from Python's ``str``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def tag_list(labels: Any) -> list[str]:
    """``label_list =`` as acts-as-taggable-on takes it: an array is joined with ", " and
    parsed again (so "a,b" is two labels), then TagList#clean! drops blanks, strips, and
    keeps the first of labels equal but for case."""
    if labels is None:
        return []
    text = ", ".join(str(x) for x in labels) if isinstance(labels, list) else str(labels)
    out: list[str] = []
    seen: set[str] = set()
    for part in text.split(","):
        tag = part.strip()
        if tag and tag.lower() not in seen:
            seen.add(tag.lower())
            out.append(tag)
    return out


def file_type(content_type: str) -> str:
    """app/helpers/file_type_helper.rb: a fixed list of images and videos (so an SVG is a
    ``file``), any ``audio/`` is audio, everything else a file."""
    if content_type in IMAGE_TYPES:
        return "image"
    if content_type in VIDEO_TYPES:
        return "video"
    return "audio" if "audio/" in content_type else "file"
