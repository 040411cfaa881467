"""The Application API, ``/api/v1/accounts/{account_id}/...``, with user and AgentBot
tokens (app/controllers/api/v1/accounts/**, app/controllers/concerns/
access_token_auth_helper.rb, and the jbuilder views under app/views/api/v1/)."""

from __future__ import annotations

import hmac
import json
import re
import time
import uuid
from typing import Any

from .application_views import ApplicationViews
from .models import (
    CONTENT_TYPES,
    check_attributes,
    content_and_files,
    permitted_list,
    rails_true,
    tag_list,
)
from .state import USER_ID, ContactInbox, Conversation, Message, iso
from .wire import BOT_REFUSED, NOT_FOUND_APP, ApiError, Reply, Request, parse_body


class ApplicationApi(ApplicationViews):
    """The account-scoped controllers a bot or agent token reaches, checked as
    ``Api::V1::Accounts::BaseController`` and ``AccessTokenAuthHelper`` check them."""

    def _who(self, r: Request) -> str:
        value = r.header("api_access_token")
        if value and hmac.compare_digest(value, self.bot.access_token):
            return "bot"
        if value and hmac.compare_digest(value, self.user_token):
            return "user"
        raise ApiError(401, {"error": "Invalid Access Token"})

    def _application(self, r: Request, account_id: int, rest: str) -> Reply:
        who = self._who(r)
        if account_id != self.account["id"]:
            # EnsureCurrentAccountHelper: Account.find raises RecordNotFound (one account here)
            raise ApiError(404, NOT_FOUND_APP)
        body = parse_body(r)
        controller, action, conv, extra = self._app_route(r.method, rest, who)
        if controller == "agents":
            return Reply(200, [a.api() for a in self.agents.values()])
        if controller == "contact_merges":
            # actions/contact_merges_controller.rb: contacts.find (404), ContactMergeAction
            # (the mergee's conversations and contact inboxes move, the mergee goes)
            try:
                base, mergee = int(body["base_contact_id"]), int(body["mergee_contact_id"])
            except (KeyError, TypeError, ValueError):
                raise ApiError(404, NOT_FOUND_APP) from None
            if base not in self.contacts or mergee not in self.contacts or base == mergee:
                raise ApiError(404, NOT_FOUND_APP)
            self.merge_contacts(base, mergee)
            contact = self.contacts[base]
            return Reply(200, {"id": contact.id, "name": contact.name, "email": contact.email,
                               "phone_number": contact.phone_number,
                               "identifier": contact.identifier})
        if (controller, action) == ("conversations", "create"):
            return Reply(200, self._conversation_api(self._app_conversation_create(body)))
        if controller == "accounts":  # app/views/api/v1/models/_account.json.jbuilder
            return Reply(200, {
                "settings": {"keep_pending_on_bot_failure": self.keep_pending_on_bot_failure},
                "features": {}, "id": self.account["id"], "locale": "en",
                "name": self.account["name"], "domain": None, "support_email": None,
                "status": "active", "auto_resolve_duration": None,
                "created_at": "2025-01-01T00:00:00.000Z"})
        if (controller, action) == ("inboxes", "index"):
            return Reply(200, {"payload": [self._inbox_app()]})
        if controller == "inboxes":
            return Reply(200, self._inbox_app())
        assert conv is not None
        if (controller, action) == ("conversations", "show"):
            return Reply(200, self._conversation_api(conv))
        if (controller, action) == ("messages", "create"):
            data = self._message_app(self._app_message(r, conv, body, who))
            if body.get("echo_id") not in (None, ""):
                # an attr_accessor, never stored: only this answer (and websockets) carry it
                data = {"echo_id": body["echo_id"], **data}
            return Reply(200, data)
        if (controller, action) == ("messages", "index"):
            return Reply(200, self._messages_index_app(conv))
        if (controller, action) == ("messages", "update"):
            return Reply(200, self._message_status(conv, int(extra or 0), body))
        if (controller, action) == ("conversations", "toggle_status"):
            return Reply(200, self._toggle_status(conv, body, who))
        if (controller, action) == ("conversations", "toggle_typing_status"):
            state = body.get("typing_status")
            if state in ("on", "off"):
                self._emit(f"conversation_typing_{state}", lambda: {
                    "user": self.bot.webhook() if who == "bot" else self.agents[USER_ID].webhook(),
                    "conversation": self._conversation_webhook(conv),
                    "is_private": bool(body.get("is_private")),
                })
            return Reply(200, None)
        if (controller, action) == ("conversations", "toggle_priority"):
            self._save(conv, priority=body.get("priority") or None)
            return Reply(200, None)
        if (controller, action) == ("conversations", "update"):
            self._update_conversation(conv, body)
            return Reply(200, self._conversation_api(conv))
        if (controller, action) == ("conversations", "custom_attributes"):
            attrs = body.get("custom_attributes") or {}
            if not isinstance(attrs, dict):
                attrs = {}
            new = {**conv.custom_attributes, **attrs} if body.get("merge") else dict(attrs)
            check_attributes(new)
            self._save(conv, custom_attributes=new)
            return Reply(200, {"custom_attributes": conv.custom_attributes})
        if controller == "labels":
            if action == "create":
                self._save(conv, label_list=tag_list(permitted_list(body.get("labels"))))
            return Reply(200, {"payload": conv.labels})
        if (controller, action) == ("assignments", "create"):
            assigned = self._assignment(conv, body)
            # jbuilder renders nil as the JSON literal null, not an empty body
            return Reply(200, b"null" if assigned is None else assigned)
        raise ApiError(404, NOT_FOUND_APP)

    def _app_route(
        self, method: str, rest: str, who: str
    ) -> tuple[str, str, Conversation | None, str | None]:
        """The action a request reaches, checked as Chatwoot's before_actions run: the
        bots' allow-list before the record is looked up. A route we do not model answers
        a bot with the bots' 401 (it is one of Chatwoot's many we leave out) and a user
        with 404."""
        try:
            controller, action, conversation_id, extra = self._action(method, rest)
        except ApiError:
            if who == "bot":
                raise ApiError(401, BOT_REFUSED) from None
            raise
        if who == "bot" and (controller, action) not in self.behaviour.bot_endpoints:
            raise ApiError(401, BOT_REFUSED)
        if not self.api_access and self.behaviour.token_api_gate:
            # Accounts::BaseController#validate_token_api_access (#14973): Chatwoot Cloud
            # without the api_and_webhooks feature; Api::BaseController's token checks run
            # before it, the controllers' record look-ups after
            raise ApiError(403, {"error": "API access is not enabled for this account"})
        conv = None
        if conversation_id is not None:
            conv = self.conversations.get(conversation_id)
            if conv is None:
                raise ApiError(404, NOT_FOUND_APP)
        return controller, action, conv, extra

    def _action(self, method: str, rest: str) -> tuple[str, str, int | None, str | None]:
        if rest == "" and method == "GET":
            return "accounts", "show", None, None
        if rest == "/agents" and method == "GET":
            return "agents", "index", None, None
        if rest == "/actions/contact_merge" and method == "POST":
            return "contact_merges", "create", None, None
        if rest == "/conversations" and method == "POST":
            return "conversations", "create", None, None
        if rest == "/inboxes" and method == "GET":
            return "inboxes", "index", None, None
        if rest == f"/inboxes/{self.inbox_id}" and method == "GET":
            return "inboxes", "show", None, None
        m = re.match(r"^/conversations/(\d+)(?:/([a-z_]+))?(?:/(\d+))?$", rest)
        if not m:
            raise ApiError(404, NOT_FOUND_APP)
        conv = int(m.group(1))
        sub, extra = m.group(2), m.group(3)
        routes = {
            (None, "GET"): ("conversations", "show"),
            (None, "PATCH"): ("conversations", "update"),
            (None, "PUT"): ("conversations", "update"),
            ("messages", "GET"): ("messages", "index"),
            ("messages", "POST"): ("messages", "create"),
            ("toggle_status", "POST"): ("conversations", "toggle_status"),
            ("toggle_typing_status", "POST"): ("conversations", "toggle_typing_status"),
            ("toggle_priority", "POST"): ("conversations", "toggle_priority"),
            ("custom_attributes", "POST"): ("conversations", "custom_attributes"),
            ("labels", "GET"): ("labels", "index"),
            ("labels", "POST"): ("labels", "create"),
            ("assignments", "POST"): ("assignments", "create"),
        }
        if sub == "messages" and extra and method in ("PATCH", "PUT"):
            return "messages", "update", conv, extra
        if extra or (sub, method) not in routes:
            raise ApiError(404, NOT_FOUND_APP)
        controller, action = routes[(sub, method)]
        return controller, action, conv, None

    def _app_conversation_create(self, body: dict[str, Any]) -> Conversation:
        """``ConversationsController#create`` (bots may call it): with ``contact_id`` and
        ``inbox_id``, ContactInboxBuilder's contact inbox of that contact and
        ``source_id``, a new uuid when none is given (so a new contact inbox each time),
        created ``hmac_verified`` when the param says so (concerns/hmac_concern.rb) and
        found unchanged when it exists; else the contact inbox whose ``source_id`` is
        given (404 when none). Then the same ``ConversationBuilder`` as the public API,
        lock_to_single_conversation included. ``status`` sets a new conversation's
        status."""
        contact_id, source_id = body.get("contact_id"), body.get("source_id")
        if contact_id is not None:
            if int(contact_id) not in self.contacts or body.get("inbox_id") not in (
                    self.inbox_id, str(self.inbox_id)):
                raise ApiError(404, NOT_FOUND_APP)
            source_id = str(source_id or uuid.uuid4())
            existing = self.contact_inboxes.get(source_id)
            if existing is not None and existing.contact_id == int(contact_id):
                ci = existing
            else:
                ci = ContactInbox(self._next("contact_inbox"), int(contact_id), self.inbox_id,
                                  source_id, hmac_verified=rails_true(body.get("hmac_verified")))
                self.contact_inboxes[ci.source_id] = ci
        else:
            found = self.contact_inboxes.get(str(source_id)) if source_id else None
            if found is None or found.contact_id not in self.contacts:
                raise ApiError(404, NOT_FOUND_APP)
            ci = found
        before = set(self.conversations)
        conv = self._conversation_create(ci, body)
        status = body.get("status")
        if conv.id not in before and status in ("open", "pending", "resolved", "snoozed"):
            conv.status = str(status)
        return conv

    def _update_conversation(self, conv: Conversation, body: dict[str, Any]) -> None:
        """``ConversationsController#update``: ``update!(permitted_update_params)``, which
        permits only ``priority`` (an unknown one is the enum's unrescued ArgumentError,
        a 500) and, with the Enterprise ``sla`` feature, ``sla_policy_id``, validated by
        Enterprise::Concerns::Conversation#validate_sla_policy before anything is saved.
        Custom attributes, status and assignee have their own endpoints."""
        columns: dict[str, Any] = {}
        if "priority" in body:
            priority = body.get("priority") or None
            if priority not in (None, "low", "medium", "high", "urgent"):
                raise ApiError(500, {"status": 500, "error": "Internal Server Error"})
            columns["priority"] = priority
        if self.sla_policies is not None and "sla_policy_id" in body:
            try:
                wanted = int(body["sla_policy_id"]) if body["sla_policy_id"] not in (
                    None, "") else None
            except (TypeError, ValueError):
                wanted = None  # ActiveModel's integer cast
            if wanted != conv.sla_policy_id:
                problem = self._sla_problem(conv, wanted)
                if problem:
                    raise ApiError(422, {"message": f"Sla policy {problem}",
                                         "attributes": ["sla_policy"]})
                columns["sla_policy_id"] = wanted
        self._save(conv, **columns)
        if "sla_policy_id" in columns and conv.applied_sla_at is None:
            conv.applied_sla_at = time.time()  # ensure_applied_sla_is_created

    def _sla_problem(self, conv: Conversation, wanted: int | None) -> str | None:
        """validate_sla_policy's checks, in its order."""
        assert self.sla_policies is not None
        if wanted is None and conv.sla_policy_id is not None:
            return "cannot remove sla policy from conversation"
        if self.contacts[conv.contact_inbox.contact_id].blocked:
            return "cannot be assigned to conversations with blocked contacts"
        if conv.sla_policy_id is not None:
            return "conversation already has a different sla"
        if wanted not in self.sla_policies:
            return "sla policy account mismatch"
        return None

    def _app_message(
        self, r: Request, conv: Conversation, body: dict[str, Any], who: str
    ) -> Message:
        content, files = content_and_files(r, body, self.blobs, self.behaviour)
        message_type = str(body.get("message_type") or "outgoing")
        if message_type not in ("incoming", "outgoing", "template"):
            raise ApiError(422, {"error": f"'{message_type}' is not a valid message_type"})
        attrs = body.get("content_attributes") or {}
        if isinstance(attrs, str):
            try:
                attrs = json.loads(attrs)
            except ValueError:
                attrs = {}
        if not isinstance(attrs, dict):
            attrs = {}
        attrs = self._in_reply_to(conv, dict(attrs))
        private = str(body.get("private")).lower() == "true"
        if message_type != "outgoing":
            # MessageBuilder#sender: anything not outgoing (incoming, template) is the contact's
            sender: tuple[str | None, int | None] = ("Contact", conv.contact_inbox.contact_id)
        elif body.get("sender_type") == "AgentBot" and who == "user":
            sender = ("AgentBot", self.bot.id)
        elif who == "bot":
            sender = ("AgentBot", self.bot.id)
        else:
            sender = ("User", USER_ID)
        # Messages::MessageBuilder reads content_type from the raw params (default text)
        content_type = str(body.get("content_type") or "text")
        if content_type not in CONTENT_TYPES:
            raise ApiError(422, {"error": f"'{content_type}' is not a valid content_type"})
        try:
            return self._create_message(
                conv, content, message_type, sender, private=private,
                source_id=body.get("source_id"), content_attributes=attrs, attachments=files,
                content_type=content_type,
            )
        except ApiError as exc:
            # MessagesController#create rescues every error as {error: e.message}, 422
            problem = exc.reply.body if isinstance(exc.reply.body, dict) else {}
            if exc.reply.status != 422 or "message" not in problem:
                raise
            raise ApiError(422, {"error": f"Validation failed: {problem['message']}"}) from None

    def _message_status(
        self, conv: Conversation, message_id: int, body: dict[str, Any]
    ) -> dict[str, Any]:
        msg = self._message_in(conv, message_id)
        if msg is None:
            raise ApiError(404, NOT_FOUND_APP)
        self._update_status(msg, body.get("status"), body.get("external_error"))
        return self._message_app(msg)

    def _toggle_status(self, conv: Conversation, body: dict[str, Any], who: str) -> dict[str, Any]:
        """``ConversationsController#toggle_status`` and its toggle_status.json.jbuilder."""
        status = body.get("status") or None
        success: bool | None = True
        if who == "bot" and conv.status == "pending" and status == "open":
            # Conversation#bot_handoff!: the waiting time starts (its own save) and the
            # conversation opens; @status is never assigned here, so success renders null
            if conv.waiting_since is None:
                self._save(conv, waiting_since=time.time())
            self._save(conv, status="open")
            success = None
        else:
            if status is None:  # Conversation#toggle_status
                status = "resolved" if conv.status == "open" else "open"
            if status not in ("open", "resolved", "pending", "snoozed"):
                # the enum's ArgumentError is not rescued
                raise ApiError(500, {"status": 500, "error": "Internal Server Error"})
            columns: dict[str, Any] = {"status": status}
            if status == "snoozed" and body.get("snoozed_until") not in (None, ""):
                # unix seconds, kept on the conversation
                try:
                    columns["snoozed_until"] = float(body["snoozed_until"])
                except (TypeError, ValueError):
                    raise ApiError(500, {"status": 500, "error": "Internal Server Error"}) \
                        from None
            self._save(conv, **columns)
        if conv.status == "open" and who == "user":
            # handle_human_open: the bot's assignment ends, and a user whose role is agent
            # takes the conversation
            owner = self.agents[USER_ID]
            self._save(conv, assignee_agent_bot_id=None,
                       **({"assignee_id": owner.id} if owner.role == "agent" else {}))
        return {"meta": {}, "payload": {
            "success": success, "conversation_id": conv.id, "current_status": conv.status,
            "snoozed_until": iso(conv.snoozed_until) if conv.snoozed_until else None}}

    def _assignment(self, conv: Conversation, body: dict[str, Any]) -> Any:
        """``Conversations::AssignmentsController#create``: an agent (or bot) when
        ``assignee_id`` is given, else a team when ``team_id`` is (the account has none,
        so ``null``), else ``null``; the answer is the agent's JSON
        (api/v1/models/_agent), the bot's (api/v1/models/_agent_bot_slim) or ``null``
        (rendered, not an empty body)."""
        if str(body.get("assignee_type") or "") == "AgentBot":
            # AssignmentService#assign_ai_assignee: an unknown bot changes nothing
            if str(body.get("assignee_id")) != str(self.bot.id):
                return None
            self._save(conv, assignee_id=None, assignee_agent_bot_id=self.bot.id,
                       status="pending")
            return self.bot.slim()
        if "assignee_id" not in body:
            return None  # {} or {team_id}: the agent assignment is left alone
        # AssignmentService#assign_agent: users.find_by(id:) so an unknown id is nil,
        # which unassigns and renders null
        try:
            agent = self.agents.get(int(body["assignee_id"]))
        except (TypeError, ValueError):
            agent = None
        self._assign(conv, agent.id if agent else None)
        return agent.api() if agent else None
