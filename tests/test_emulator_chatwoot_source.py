"""Issue #18, the rules read from Chatwoot's source (chatwoot/chatwoot, develop at 4.16.2,
cross-checked with 4.10.1 and 4.13.0). Each test names the file its rule comes from.

The tests call ``Emulator.handle`` (the framework-neutral core the HTTP server only
translates for) and record the webhook events it emits, so each asserts exactly the answer
and the events Chatwoot would produce; ``test_webhook_signing_follows_the_version`` goes
through the real HTTP server and a real webhook receiver.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from emulator_calls import Chatwoot, changed_keys
from webhook_sink import WebhookSink

from chatwoot_mirror.testing import Emulator, FakeChatwoot
from chatwoot_mirror.testing.emulator import Request
from chatwoot_mirror.testing.versions import behaviour


@pytest.fixture
def cw() -> Chatwoot:
    chatwoot = Chatwoot()
    chatwoot.contact()
    return chatwoot


# -- identity validation -----------------------------------------------------------------

def test_a_verified_contact_inbox_lists_all_of_its_contacts_conversations():
    """public/api/v1/inboxes/conversations_controller.rb#index: ``hmac_verified?`` shows
    ``contact.conversations``, else ``contact_inbox.conversations``
    (contacts_controller.rb#process_hmac marks the contact inbox verified)."""
    cw = Chatwoot(hmac_token="hmac-secret")
    cw.contact("wa-a", identifier="maria")
    cw.contact("wa-b", identifier="maria")  # the same contact, a second contact inbox
    first, second = cw.conversation("wa-a"), cw.conversation("wa-b")
    status, listed = cw.public("GET", "/contacts/wa-a/conversations")
    assert status == 200 and [c["id"] for c in listed] == [first]
    status, _ = cw.public("GET", f"/contacts/wa-a/conversations/{second}")
    assert status == 404
    digest = hmac.new(b"hmac-secret", b"maria", hashlib.sha256).hexdigest()
    status, _ = cw.public("GET", f"/contacts/wa-a?identifier=maria&identifier_hash={digest}")
    assert status == 200
    status, listed = cw.public("GET", "/contacts/wa-a/conversations")
    assert sorted(c["id"] for c in listed) == [first, second]
    status, shown = cw.public("GET", f"/contacts/wa-a/conversations/{second}")
    assert status == 200 and shown["id"] == second
    # the other contact inbox was not verified: it still sees only its own
    status, listed = cw.public("GET", "/contacts/wa-b/conversations")
    assert [c["id"] for c in listed] == [second]


# -- error bodies --------------------------------------------------------------------------

def test_the_flood_error_names_base():
    """app/models/message.rb#prevent_message_flooding: ``errors.add(:base, 'Too many
    messages')``, rendered by request_exception_handler.rb#render_record_invalid as
    ``{message: full_messages, attributes: attribute_names}``."""
    cw = Chatwoot(flood_limit=2)
    cw.contact()
    conv = cw.conversation()
    cw.incoming(conv, "1")
    cw.incoming(conv, "2")
    status, body = cw.public("POST", f"/contacts/wa-1/conversations/{conv}/messages",
                             {"content": "3"})
    assert status == 422 and body == {"message": "Too many messages", "attributes": ["base"]}
    status, body = cw.app("POST", f"/conversations/{conv}/messages", {"content": "bot"})
    assert status == 422 and body == {"error": "Validation failed: Too many messages"}


# -- agent bot permissions across versions ------------------------------------------------

def test_a_bot_may_update_a_conversation_and_gets_the_partial(cw):
    """access_token_auth_helper.rb: ``update`` is in BOT_ACCESSIBLE_ENDPOINTS;
    conversations_controller.rb#update permits only ``priority`` and update.json.jbuilder
    renders the conversation partial."""
    conv = cw.conversation()
    cw.drain()
    status, body = cw.app("PATCH", f"/conversations/{conv}",
                          {"priority": "high", "status": "resolved", "assignee_id": 3})
    assert status == 200 and body["id"] == conv and body["account_id"] == 1
    assert body["priority"] == "high" and body["status"] == "open"
    assert "assignee" not in body["meta"]
    assert [changed_keys(u) for u in cw.updates()] == [{"priority", "updated_at"}]
    status, _ = cw.app("PATCH", f"/conversations/{conv}", {"priority": "high"})
    assert status == 200 and len(cw.updates()) == 1  # nothing changed, nothing sent


@pytest.mark.parametrize("version,allowed", [
    ("4.16.2", {"show", "labels", "typing", "custom_attributes", "update"}),
    ("4.13.0", {"typing", "custom_attributes", "update"}),
    ("4.10.1", {"custom_attributes", "update"}),
])
def test_bot_endpoints_follow_the_version(version, allowed):
    """access_token_auth_helper.rb across releases: toggle_typing_status from 4.12.0,
    ``show`` and labels from 4.14.2 (#14655); custom_attributes and update before 4.10."""
    cw = Chatwoot(chatwoot_version=version)
    cw.contact()
    conv = cw.conversation()
    calls = {
        "show": ("GET", f"/conversations/{conv}", None),
        "labels": ("GET", f"/conversations/{conv}/labels", None),
        "typing": ("POST", f"/conversations/{conv}/toggle_typing_status",
                   {"typing_status": "on"}),
        "custom_attributes": ("POST", f"/conversations/{conv}/custom_attributes",
                              {"custom_attributes": {"a": 1}}),
        "update": ("PATCH", f"/conversations/{conv}", {"priority": "low"}),
    }
    for name, (method, path, body) in calls.items():
        status, answer = cw.app(method, path, body)
        if name in allowed:
            assert status == 200, (name, answer)
        else:
            assert (status, answer) == (
                401, {"error": "Access to this endpoint is not authorized for bots"}), name


def test_an_unknown_version_fails_when_the_emulator_is_built():
    with pytest.raises(ValueError, match="4.10.0 to 4.16.2"):
        Emulator(chatwoot_version="3.9.0")
    with pytest.raises(ValueError, match="like 4.16.2"):
        Emulator(chatwoot_version="latest")


def test_webhook_signing_follows_the_version():
    """lib/webhooks/trigger.rb: X-Chatwoot-Delivery on API-inbox webhooks from 4.12.0, the
    timestamp and signature from 4.13.0 (#13892)."""
    for version, delivery, signed in (("4.16.2", True, True), ("4.12.0", True, False),
                                      ("4.10.1", False, False)):
        sink = WebhookSink()
        try:
            with FakeChatwoot(webhook_url=sink.url, webhook_secret="s3cret",
                              chatwoot_version=version) as fake:
                fake.emulator.handle(Request(
                    "POST", f"/public/api/v1/inboxes/{fake.inbox_identifier}/contacts",
                    headers={"Content-Type": "application/json"},
                    body=b'{"source_id": "wa-9"}'))
                fake.emulator.handle(Request(
                    "POST",
                    f"/public/api/v1/inboxes/{fake.inbox_identifier}/contacts/wa-9/conversations",
                    headers={"Content-Type": "application/json"}, body=b"{}"))
                assert fake.wait_for_webhooks()
            headers, body = sink.received[0]
            assert ("X-Chatwoot-Delivery" in headers) is delivery, version
            assert ("X-Chatwoot-Signature" in headers) is signed, version
            if signed:
                stamp = headers["X-Chatwoot-Timestamp"]
                digest = hmac.new(b"s3cret", f"{stamp}.".encode() + body, hashlib.sha256)
                assert headers["X-Chatwoot-Signature"] == f"sha256={digest.hexdigest()}"
        finally:
            sink.close()


def test_bot_assignment_at_creation_and_its_update_follow_the_version():
    """conversation.rb#determine_conversation_status: from 4.16.2 (#14875) a new pending
    conversation gets the inbox's AgentBot as ``assignee_agent_bot``, and
    ``assignee_agent_bot_id`` joins list_of_keys (notify_conversation_updation)."""
    new, old = Chatwoot(bot_active=True), Chatwoot(bot_active=True, chatwoot_version="4.10.1")
    for chatwoot in (new, old):
        chatwoot.contact()
    status, body = new.app("GET", f"/conversations/{new.conversation()}")
    assert body["status"] == "pending"
    assert new.emulator.conversations[body["id"]].assignee_agent_bot_id == new.emulator.bot.id
    conv = old.conversation()
    assert old.emulator.conversations[conv].assignee_agent_bot_id is None
    assert "assignee_agent_bot_id" in behaviour("4.16.2").update_keys
    assert "assignee_agent_bot_id" not in behaviour("4.10.1").update_keys
    # a bot assigned back alone: an update in 4.16.2, none before
    for chatwoot in (new, old):
        conv = max(chatwoot.emulator.conversations)
        chatwoot.app("POST", f"/conversations/{conv}/toggle_status", {"status": "open"})
        chatwoot.emulator.conversations[conv].status = "pending"
        chatwoot.drain()
        chatwoot.emulator._save(chatwoot.emulator.conversations[conv],
                                assignee_agent_bot_id=chatwoot.emulator.bot.id)
    assert [changed_keys(u) for u in new.updates()] == [{"assignee_agent_bot_id", "updated_at"}]
    assert old.updates() == []


# -- conversation views --------------------------------------------------------------------

def test_bot_handoff_answers_success_null_and_starts_the_waiting_time():
    """conversations_controller.rb#toggle_status: a bot opening a pending conversation runs
    Conversation#bot_handoff! (waiting_since set when blank, then open!) and never assigns
    @status, so toggle_status.json.jbuilder renders ``success: null``."""
    cw = Chatwoot(bot_active=True)
    cw.contact()
    conv = cw.conversation()
    cw.app("POST", f"/conversations/{conv}/messages", {"content": "bot reply"})
    assert cw.emulator.conversations[conv].waiting_since is None  # the bot's reply stopped it
    cw.drain()
    status, body = cw.app("POST", f"/conversations/{conv}/toggle_status", {"status": "open"})
    assert status == 200
    assert body == {"meta": {}, "payload": {"success": None, "conversation_id": conv,
                                            "current_status": "open", "snoozed_until": None}}
    assert [changed_keys(u) for u in cw.updates()] == [
        {"waiting_since", "updated_at"},
        {"status", "status_changed_at", "assignee_agent_bot_id", "updated_at"}]
    status, body = cw.app("POST", f"/conversations/{conv}/toggle_status", {"status": "resolved"})
    assert body["payload"]["success"] is True and body["payload"]["current_status"] == "resolved"


def test_an_agent_user_opening_a_conversation_takes_it():
    """conversations_controller.rb#handle_human_open: a User opening a conversation clears
    the bot's assignment and, when the user's role is agent, assigns it to them."""
    cw = Chatwoot(bot_active=True)
    cw.contact()
    conv = cw.conversation()
    status, body = cw.app("POST", f"/conversations/{conv}/toggle_status", {"status": "open"},
                          bot=False)
    assert status == 200 and body["payload"]["success"] is True
    record = cw.emulator.conversations[conv]
    assert record.assignee_id == 3 and record.assignee_agent_bot_id is None
    # an administrator's token opens without taking it
    admin = Chatwoot()
    admin.emulator.agents[3].role = "administrator"
    admin.contact()
    conv = admin.conversation()
    admin.app("POST", f"/conversations/{conv}/toggle_status", {"status": "resolved"}, bot=False)
    admin.app("POST", f"/conversations/{conv}/toggle_status", {"status": "open"}, bot=False)
    assert admin.emulator.conversations[conv].assignee_id is None


# -- assignment ----------------------------------------------------------------------------

def test_assigning_an_unknown_agent_unassigns_and_renders_null(cw):
    """assignment_service.rb#assign_agent: ``users.find_by(id:)`` gives nil, which is
    saved; assignments_controller.rb#render_agent renders ``null``."""
    conv = cw.conversation()
    cw.app("POST", f"/conversations/{conv}/assignments", {"assignee_id": 3})
    assert cw.emulator.conversations[conv].assignee_id == 3
    status, body = cw.app("POST", f"/conversations/{conv}/assignments", {"assignee_id": 999})
    assert (status, body) == (200, None)
    assert cw.emulator.conversations[conv].assignee_id is None


def test_an_agent_bot_assignee_renders_the_slim_bot(cw):
    """assignments_controller.rb#render_agent: an AgentBot renders
    api/v1/models/_agent_bot_slim.json.jbuilder; an unknown bot changes nothing and is
    null."""
    conv = cw.conversation()
    bot = cw.emulator.bot.id
    status, body = cw.app("POST", f"/conversations/{conv}/assignments",
                          {"assignee_id": 999, "assignee_type": "AgentBot"})
    assert (status, body) == (200, None)
    assert cw.emulator.conversations[conv].status == "open"
    status, body = cw.app("POST", f"/conversations/{conv}/assignments",
                          {"assignee_id": bot, "assignee_type": "AgentBot"})
    assert status == 200
    assert set(body) == {"id", "name", "description", "thumbnail", "outgoing_url", "bot_type",
                         "assignee_type"}
    assert body["id"] == bot and body["assignee_type"] == "AgentBot"
    assert cw.emulator.conversations[conv].status == "pending"


def test_an_agent_taking_a_pending_bot_conversation_is_one_update():
    """assignment_service.rb#assign_agent: status, assignee and the bot's assignment change
    in one ``save!``, so conversation.rb#notify_conversation_updation sends one
    conversation_updated (with conversation_status_changed before it)."""
    cw = Chatwoot(bot_active=True)
    cw.contact()
    conv = cw.conversation()
    cw.drain()
    status, body = cw.app("POST", f"/conversations/{conv}/assignments", {"assignee_id": 3},
                          bot=False)
    assert status == 200 and body["id"] == 3
    names = [n for n, _ in cw.events]
    assert names == ["conversation_status_changed", "conversation_updated"]
    [update] = cw.updates()
    assert changed_keys(update) == {"assignee_id", "assignee_agent_bot_id", "status",
                                    "status_changed_at", "updated_at"}
    by_key = {k: v for item in update for k, v in item.items()}
    assert by_key["status"] == {"previous_value": "pending", "current_value": "open"}
    assert by_key["assignee_id"] == {"previous_value": None, "current_value": 3}


# -- custom attributes and labels -----------------------------------------------------------

def test_custom_attribute_values_have_limits(cw):
    """app/models/jsonb_attributes_length_validator.rb: a string over 1500 characters or an
    integer over 9999999999 is a RecordInvalid, rendered as 422 by
    request_exception_handler.rb."""
    conv = cw.conversation()
    status, body = cw.app("POST", f"/conversations/{conv}/custom_attributes",
                          {"custom_attributes": {"nota": "x" * 1501, "pedido": 10**10}})
    assert status == 422
    assert body == {"message": "Custom attributes nota length should be < 1500, "
                               "Custom attributes pedido value should be < 9999999999",
                    "attributes": ["custom_attributes"]}
    assert cw.emulator.conversations[conv].custom_attributes == {}
    status, body = cw.app("POST", f"/conversations/{conv}/custom_attributes",
                          {"custom_attributes": {"nota": "x" * 1500, "pedido": 9_999_999_999}})
    assert status == 200 and body["custom_attributes"]["pedido"] == 9_999_999_999
    status, body = cw.public("POST", "/contacts/wa-1/conversations",
                             {"custom_attributes": {"nota": "y" * 2000}})
    assert status == 422 and body["attributes"] == ["custom_attributes"]


def test_labels_are_cleaned_and_an_unchanged_list_sends_nothing(cw):
    """label_concern.rb ``update_labels`` -> acts-as-taggable-on: the array is parsed
    (commas split), then TagList#clean! drops blanks, strips and de-duplicates ignoring
    case; an unchanged list is no change, so no conversation_updated."""
    conv = cw.conversation()
    cw.drain()
    status, body = cw.app("POST", f"/conversations/{conv}/labels",
                          {"labels": [" vip ", "", "VIP", "bot,urgente", "  "]})
    assert (status, body) == (200, {"payload": ["vip", "bot", "urgente"]})
    assert [changed_keys(u) for u in cw.updates()] == [
        {"label_list", "cached_label_list", "updated_at"}]
    status, body = cw.app("POST", f"/conversations/{conv}/labels",
                          {"labels": ["vip", "bot", "urgente"]})
    assert body == {"payload": ["vip", "bot", "urgente"]} and len(cw.updates()) == 1


# -- messages ------------------------------------------------------------------------------

def test_a_template_message_through_the_api_is_the_contacts(cw):
    """messages/message_builder.rb#sender: anything not ``outgoing`` is sent by
    ``@conversation.contact``."""
    conv = cw.conversation()
    status, body = cw.app("POST", f"/conversations/{conv}/messages",
                          {"content": "Modelo", "message_type": "template"}, bot=False)
    assert status == 200 and body["message_type"] == 3
    assert body["sender"]["type"] == "contact" and body["sender"]["id"] == 42


def test_echo_id_is_echoed_in_the_create_answer_only(cw):
    """message_builder.rb passes ``echo_id`` (an attr_accessor, never stored);
    api/v1/models/_message.json.jbuilder renders it when present."""
    conv = cw.conversation()
    status, body = cw.app("POST", f"/conversations/{conv}/messages",
                          {"content": "oi", "echo_id": "tmp-77"})
    assert status == 200 and body["echo_id"] == "tmp-77"
    status, body = cw.app("POST", f"/conversations/{conv}/messages", {"content": "sem"})
    assert "echo_id" not in body
    stored = cw.emulator.conversation_messages(conv)
    assert all("echo_id" not in m for m in stored)


def test_attachment_json_and_file_types_are_chatwoots(cw):
    """app/models/attachment.rb#push_event_data: base data and file metadata only (no
    name; the content type since 4.13.0, see test_emulator_round_three.py);
    app/helpers/file_type_helper.rb: a fixed image list, so an SVG is a ``file``, and any
    audio/* is audio."""
    body = cw.upload(cw.conversation(), ("logo.svg", "image/svg+xml"),
                     ("foto.jpg", "image/jpeg"), ("voz.ogg", "audio/ogg"),
                     ("clip.mkv", "video/x-matroska"))
    assert [a["file_type"] for a in body["attachments"]] == ["file", "image", "audio", "file"]
    assert set(body["attachments"][0]) == {"id", "message_id", "file_type", "account_id",
                                           "extension", "content_type", "data_url",
                                           "thumb_url", "file_size", "width", "height"}
    blob = cw.emulator.blob(body["attachments"][0]["data_url"])
    assert blob == {"filename": "logo.svg", "content_type": "image/svg+xml", "byte_size": 4}


def test_an_unknown_status_update_is_200_and_changes_nothing(cw):
    """app/services/messages/status_update_service.rb: ``valid_status_transition?`` refuses
    an unknown status and read -> delivered without an error; ``external_error`` is kept
    only on a failure; messages_controller.rb#update renders the message either way."""
    conv = cw.conversation()
    _, made = cw.app("POST", f"/conversations/{conv}/messages", {"content": "oi"})
    path = f"/conversations/{conv}/messages/{made['id']}"
    cw.drain()
    status, body = cw.app("PATCH", path, {"status": "exploded"}, bot=False)
    assert status == 200 and body["status"] == "sent" and cw.events == []
    cw.app("PATCH", path, {"status": "failed", "external_error": "131047"}, bot=False)
    assert cw.emulator.conversation_messages(conv)[-1]["content_attributes"] == {
        "external_error": "131047"}
    status, body = cw.app("PATCH", path, {"status": "read", "external_error": "x"}, bot=False)
    assert body["status"] == "read" and "external_error" not in body["content_attributes"]
    status, body = cw.app("PATCH", path, {"status": "delivered"}, bot=False)
    assert status == 200 and body["status"] == "read"
    status, body = cw.app("PATCH", path, {"status": "read"}, bot=False)
    assert [n for n, _ in cw.events] == ["message_updated", "message_updated"]


# -- waiting time --------------------------------------------------------------------------

def test_waiting_since_is_set_at_creation_and_cleared_by_replies():
    """conversation.rb#ensure_waiting_since (created_at); message.rb#dispatch_create_events:
    the first human reply sets first_reply_created_at and clears waiting_since in one
    update, a bot reply clears it (clear_waiting_since_on_outgoing_response), a customer
    message sets it again when none runs; private notes change nothing."""
    cw = Chatwoot()
    cw.contact()
    before = time.time()
    conv = cw.conversation()
    record = cw.emulator.conversations[conv]
    assert record.waiting_since is not None and record.waiting_since >= before - 1
    cw.drain()
    cw.emulator.private_note(conv, "nota")
    assert cw.updates() == [] and record.waiting_since is not None
    cw.app("POST", f"/conversations/{conv}/messages", {"content": "bot"})
    assert [changed_keys(u) for u in cw.updates()] == [{"waiting_since", "updated_at"}]
    assert record.waiting_since is None
    cw.incoming(conv, "ainda estou aqui")
    assert [changed_keys(u) for u in cw.updates()][-1] == {"waiting_since", "updated_at"}
    waiting = record.waiting_since
    cw.incoming(conv, "alô?")  # already waiting: nothing changes
    assert record.waiting_since == waiting and len(cw.updates()) == 2
    cw.emulator.agent_reply(conv, "Olá, sou a Ana")
    assert [changed_keys(u) for u in cw.updates()][-1] == {
        "first_reply_created_at", "waiting_since", "updated_at"}
    update = {k: v for item in cw.updates()[-1] for k, v in item.items()}
    assert update["waiting_since"]["current_value"] is None
    assert isinstance(update["waiting_since"]["previous_value"], str)  # ISO, as Rails renders
    assert record.first_reply_created_at is not None and record.waiting_since is None


# -- webhook payloads ------------------------------------------------------------------------

def test_webhook_content_is_normalised_and_the_api_keeps_it_raw(cw):
    """app/services/messages/webhook_content_normalizer.rb via message.rb#webhook_data and
    #webhook_push_event_data: hard breaks (backslash-newline) become newlines and trailing
    newlines go; the REST views keep the stored text."""
    conv = cw.conversation()
    cw.drain()
    raw = "Linha 1\\\nLinha 2\\\r\nLinha 3\n\n"
    cw.emulator.agent_reply(conv, raw)
    [created] = [p for n, p in cw.events if n == "message_created"]
    assert created["content"] == "Linha 1\nLinha 2\nLinha 3"
    pushed = created["conversation"]["messages"][0]
    assert pushed["content"] == pushed["processed_message_content"] == "Linha 1\nLinha 2\nLinha 3"
    assert cw.emulator.conversation_messages(conv)[-1]["content"] == raw


def test_a_failed_api_inbox_webhook_marks_a_bot_message_failed():
    """lib/webhooks/trigger.rb#handle_error: for an API-inbox webhook of message_created or
    message_updated, the message (whoever wrote it) is marked failed with the error's text
    through StatusUpdateService, which changes nothing the second time."""
    sink = WebhookSink(status=500)
    try:
        with FakeChatwoot(webhook_url=sink.url) as fake:
            fake.emulator.handle(Request(
                "POST", f"/public/api/v1/inboxes/{fake.inbox_identifier}/contacts",
                headers={"Content-Type": "application/json"}, body=b'{"source_id": "wa-3"}'))
            conv = json.loads(fake.emulator.handle(Request(
                "POST", f"/public/api/v1/inboxes/{fake.inbox_identifier}/contacts/wa-3/"
                        "conversations", headers={"Content-Type": "application/json"},
                body=b"{}")).encoded())["id"]
            made = json.loads(fake.emulator.handle(Request(
                "POST", f"/api/v1/accounts/1/conversations/{conv}/messages",
                headers={"Content-Type": "application/json",
                         "api_access_token": fake.bot_token},
                body=b'{"content": "resposta do bot"}')).encoded())
            assert fake.wait_for_webhooks()
            assert fake.wait_for_webhooks()
            [message] = [m for m in fake.messages(conv) if m["id"] == made["id"]]
            assert message["status"] == "failed"
            assert message["content_attributes"]["external_error"].startswith("500")
            updates = [e for e in sink.events("message_updated") if e["id"] == made["id"]]
            assert len(updates) == 1  # marking it failed again changed nothing
    finally:
        sink.close()


def test_the_standalone_emulator_takes_a_version(capsys):
    from chatwoot_mirror.testing.__main__ import build_parser

    assert build_parser().parse_args(["--chatwoot-version", "4.13.0"]).chatwoot_version == "4.13.0"
    assert build_parser().parse_args([]).chatwoot_version == "4.16.2"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--chatwoot-version", "3.0"])
    assert "4.10.0 to 4.16.2" in capsys.readouterr().err


def test_contact_merge_moves_the_mergees_conversations_and_is_for_users():
    """actions/contact_merges_controller.rb and actions/contact_merge_action.rb: the
    mergee's conversations and contact inboxes move to the base, the mergee is destroyed;
    not a bot endpoint (access_token_auth_helper.rb); an unknown contact is 404."""
    cw = Chatwoot()
    base, mergee = cw.contact("wa-a")["id"], cw.contact("wa-b")["id"]
    conv = cw.conversation("wa-b")
    body = {"base_contact_id": base, "mergee_contact_id": mergee}
    assert cw.app("POST", "/actions/contact_merge", body)[0] == 401
    assert cw.app("POST", "/actions/contact_merge",
                  {"base_contact_id": base, "mergee_contact_id": 999}, bot=False)[0] == 404
    status, merged = cw.app("POST", "/actions/contact_merge", body, bot=False)
    assert status == 200 and merged["id"] == base
    assert set(cw.emulator.contacts) == {base}
    assert cw.emulator.conversations[conv].contact_inbox.contact_id == base
    status, listed = cw.public("GET", "/contacts/wa-b/conversations")
    assert [c["id"] for c in listed] == [conv]  # the mergee's source id still reaches it
