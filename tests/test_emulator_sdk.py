"""A real third-party client against the emulator (issue #18): chatwoot-sdk 0.2.0 parses
the Application API with Pydantic models, so a shape the emulator renders differently from
Chatwoot fails here. Where the SDK and Chatwoot's jbuilders disagree, the jbuilders win
(each assertion below names the file the shape comes from)."""

from __future__ import annotations

import json

import pytest
import requests

from chatwoot_mirror import Config, Mirror
from chatwoot_mirror.testing import FakeChatwoot

chatwoot = pytest.importorskip("chatwoot")  # chatwoot-sdk, in the test extra


@pytest.fixture
def cw(tmp_path):
    with FakeChatwoot() as fake:
        config = Config(url=fake.url, inbox_identifier=fake.inbox_identifier,
                        account_id=fake.account_id, bot_token=fake.bot_token,
                        db_path=str(tmp_path / "m.db"), max_requests_per_minute=0)
        with Mirror(config) as mirror:
            assert mirror.log_exchange("5511988887777", "oi", "olá") and mirror.flush()
        yield fake


def sdk(cw: FakeChatwoot):
    return chatwoot.ChatwootClient(base_url=cw.url, api_token=cw.user_token)


def test_the_sdk_parses_a_conversation_an_agent_replied_in(cw):
    """app/views/api/v1/conversations/partials/_conversation.json.jbuilder: the REST
    partial, with integer times, account_id, uuid, muted and meta.channel, and no
    contact_inbox (it would carry the contact's pubsub_token)."""
    [conv] = cw.conversations()
    cw.emulator.assign(conv["id"], 3)
    cw.agent_reply(conv["id"], "Olá, sou a Ana")
    with sdk(cw) as client:
        parsed = client.conversations.get(account_id=cw.account_id, conversation_id=conv["id"])
    assert parsed.id == conv["id"] and parsed.account_id == cw.account_id
    assert isinstance(parsed.first_reply_created_at, int) and parsed.first_reply_created_at > 0
    assert parsed.meta.assignee.name == "Ana Agente"
    raw = requests.get(f"{cw.url}/api/v1/accounts/1/conversations/{conv['id']}",
                       headers={"api_access_token": cw.user_token}, timeout=5).json()
    assert "contact_inbox" not in raw and "pubsub_token" not in json.dumps(raw)
    assert raw["meta"]["channel"] == "Channel::Api" and raw["muted"] is False
    assert raw["uuid"] and raw["last_non_activity_message"]["content"] == "Olá, sou a Ana"


def test_the_sdk_creates_a_message_with_a_content_type(cw):
    """Messages::MessageBuilder reads content_type; api/v1/models/_message.json.jbuilder
    renders it."""
    [conv] = cw.conversations()
    with sdk(cw) as client:
        made = client.messages.create(account_id=cw.account_id, conversation_id=conv["id"],
                                      content="Escolha:", content_type="input_select",
                                      content_attributes={"items": [
                                          {"title": "Sim", "value": "sim"}]})
    assert made.content_type == "input_select"
    assert cw.messages(conv["id"])[-1]["content_type"] == "input_select"


def test_the_sdk_reads_the_inbox_and_toggles_status(cw):
    """api/v1/models/_inbox.json.jbuilder has channel_id; toggle_status answers
    {meta, payload: {success, conversation_id, current_status, snoozed_until}}."""
    [conv] = cw.conversations()
    with sdk(cw) as client:
        inbox = client.inboxes.get(account_id=cw.account_id, inbox_id=cw.emulator.inbox_id)
        toggled = client.conversations.toggle_status(
            account_id=cw.account_id, conversation_id=conv["id"], status="resolved")
    assert inbox.channel_type == "Channel::Api" and isinstance(inbox.channel_id, int)
    assert toggled.success and toggled.current_status == "resolved"


def test_assignments_render_null_and_leave_the_agent_on_team_only_bodies(cw):
    """Conversations::AssignmentsController#create: assignee_id given: that agent (or null
    to unassign); else team_id: the team; else nothing. nil renders as the JSON null."""
    [conv] = cw.conversations()
    url = f"{cw.url}/api/v1/accounts/1/conversations/{conv['id']}/assignments"
    headers = {"api_access_token": cw.user_token}
    assert requests.post(url, json={"assignee_id": 3}, headers=headers,
                         timeout=5).json()["id"] == 3
    for body in ({}, {"team_id": 1}):
        answer = requests.post(url, json=body, headers=headers, timeout=5)
        assert (answer.status_code, answer.text) == (200, "null")
        assert cw.conversations()[0]["meta"]["assignee"]["id"] == 3  # still Ana's
    answer = requests.post(url, json={"assignee_id": None}, headers=headers, timeout=5)
    assert answer.text == "null" and cw.conversations()[0]["meta"]["assignee"] is None


def test_tokens_are_checked_before_routes(cw):
    """Api::BaseController authenticates before any action (access_token_auth_helper.rb):
    a bad token is a 401 on routes the emulator does not model too, and an Agent Bot
    token on a real route it may not use (contacts search) is the bots' 401, not a 404."""
    bad = {"api_access_token": "not-a-token"}
    for path in ("/api/v1/profile", "/api/v1/accounts/1/contacts/search?q=maria",
                 "/api/v1/accounts/1/conversations/1/messages"):
        answer = requests.get(cw.url + path, headers=bad, timeout=5)
        assert (answer.status_code, answer.json()) == (401, {"error": "Invalid Access Token"})
    bot = {"api_access_token": cw.bot_token}
    answer = requests.get(f"{cw.url}/api/v1/accounts/1/contacts/search?q=maria",
                          headers=bot, timeout=5)
    assert answer.status_code == 401 and "not authorized for bots" in answer.json()["error"]
    # a bot-allowed action on a conversation that does not exist is still a 404
    answer = requests.post(f"{cw.url}/api/v1/accounts/1/conversations/999999/toggle_status",
                           json={"status": "open"}, headers=bot, timeout=5)
    assert answer.status_code == 404


def test_attachments_render_account_id_width_and_height(cw):
    """app/models/attachment.rb#push_event_data: id, message_id, file_type, account_id,
    extension, data_url, thumb_url, file_size, width, height."""
    [conv] = cw.conversations()
    answer = requests.post(
        f"{cw.url}/api/v1/accounts/1/conversations/{conv['id']}/messages",
        headers={"api_access_token": cw.user_token},
        data={"content": "a foto"}, files=[("attachments[]", ("f.jpg", b"\xff\xd8", "image/jpeg"))],
        timeout=5)
    [attachment] = answer.json()["attachments"]
    assert {"id", "message_id", "file_type", "account_id", "extension", "data_url",
            "thumb_url", "file_size", "width", "height"} <= set(attachment)
    assert attachment["account_id"] == cw.account_id
    parsed = chatwoot.types.message.MessageAttachment(**attachment)  # the SDK's model
    assert parsed.file_type == "image" and parsed.account_id == cw.account_id


def test_error_bodies_are_chatwoots(cw):
    """An unknown account is a 404 (EnsureCurrentAccountHelper's Account.find); an
    Application-API message create that fails validation is {error} with 422, from the
    controller's rescue (conversations/messages_controller.rb), where the public API
    renders {message, attributes}."""
    [conv] = cw.conversations()
    user = {"api_access_token": cw.user_token}
    answer = requests.get(f"{cw.url}/api/v1/accounts/999/conversations/{conv['id']}",
                          headers=user, timeout=5)
    assert (answer.status_code, answer.json()) == (404, {"error": "Resource could not be found"})
    answer = requests.post(f"{cw.url}/api/v1/accounts/1/conversations/{conv['id']}/messages",
                           json={"content": "x" * 150_001}, headers=user, timeout=5)
    assert answer.status_code == 422
    assert answer.json() == {"error": "Validation failed: Content is too long "
                                      "(maximum is 150000 characters)"}


def test_toggle_status_keeps_and_echoes_snoozed_until(cw):
    """ConversationsController#toggle_status stores snoozed_until (unix seconds) and the
    answer echoes it; leaving snoozed clears it (Conversation#ensure_snooze_until_reset)."""
    [conv] = cw.conversations()
    url = f"{cw.url}/api/v1/accounts/1/conversations/{conv['id']}"
    user = {"api_access_token": cw.user_token}
    answer = requests.post(f"{url}/toggle_status", headers=user, timeout=5,
                           json={"status": "snoozed", "snoozed_until": "1893456000"})
    payload = answer.json()["payload"]
    assert payload["current_status"] == "snoozed"
    assert payload["snoozed_until"] == "2030-01-01T00:00:00.000Z"
    shown = requests.get(url, headers=user, timeout=5).json()
    assert shown["snoozed_until"] == "2030-01-01T00:00:00.000Z"
    answer = requests.post(f"{url}/toggle_status", json={"status": "open"}, headers=user,
                           timeout=5)
    assert answer.json()["payload"]["snoozed_until"] is None
    assert requests.get(url, headers=user, timeout=5).json()["snoozed_until"] is None


def test_public_contacts_downcase_emails_match_them_without_case_and_refuse_bad_ones():
    """app/models/contact.rb (prepare_email_attribute, the email format validation) and
    ContactInboxWithContactBuilder's lookup by email: Maria@Example.COM is stored down-cased,
    found again as MARIA@example.com, and 'not-an-email' is a 422 naming the attribute
    (RequestExceptionHandler#render_record_invalid)."""
    with FakeChatwoot() as cw:
        base = f"{cw.url}/public/api/v1/inboxes/{cw.inbox_identifier}/contacts"
        first = requests.post(base, json={"source_id": "wa-a", "email": "Maria@Example.COM"},
                              timeout=5).json()
        assert first["email"] == "maria@example.com"
        again = requests.post(base, json={"source_id": "wa-b", "email": "MARIA@example.com"},
                              timeout=5).json()
        assert again["id"] == first["id"] and again["source_id"] == "wa-b"
        bad = requests.post(base, json={"source_id": "wa-c", "email": "not-an-email"},
                            timeout=5)
        assert bad.status_code == 422 and bad.json()["attributes"] == ["email"]
        assert len(cw.contacts()) == 1


def test_public_contact_update_merges_into_the_contact_with_that_phone():
    """ContactsController#update runs ContactIdentifyAction: a PATCH giving the phone (or
    email) of another contact of the account merges this one into it; since 4.16.0 the
    answer is {source_id, pubsub_token, id, name, email, phone_number}."""
    with FakeChatwoot() as cw:
        base = f"{cw.url}/public/api/v1/inboxes/{cw.inbox_identifier}/contacts"
        known = requests.post(base, json={"source_id": "wa-phone",
                                          "phone_number": "+5511988887777"}, timeout=5).json()
        lid = requests.post(base, json={"source_id": "lid-200000000000777"}, timeout=5).json()
        conversation = requests.post(f"{base}/lid-200000000000777/conversations",
                                     timeout=5).json()
        merged = requests.patch(f"{base}/lid-200000000000777", timeout=5,
                                json={"phone_number": "+5511988887777", "name": "Maria"})
        body = merged.json()
        assert merged.status_code == 200 and body["id"] == known["id"] != lid["id"]
        assert set(body) == {"source_id", "pubsub_token", "id", "name", "email",
                             "phone_number"}
        assert body["source_id"] == "lid-200000000000777" and body["name"] == "Maria"
        assert [c["id"] for c in cw.contacts()] == [known["id"]]
        [conv] = cw.conversations()
        assert conv["id"] == conversation["id"] and conv["meta"]["sender"]["id"] == known["id"]


def test_a_bot_creates_a_conversation_through_the_application_api():
    """POST /conversations is on the bots' list (BOT_ACCESSIBLE_ENDPOINTS,
    access_token_auth_helper.rb); ConversationsController#create finds the contact inbox
    by source_id (404 when none) and goes through ConversationBuilder, so
    lock_to_single_conversation applies; it renders the REST partial."""
    with FakeChatwoot(lock_to_single_conversation=True) as cw:
        base = f"{cw.url}/public/api/v1/inboxes/{cw.inbox_identifier}/contacts"
        requests.post(base, json={"source_id": "wa-new"}, timeout=5)
        url = f"{cw.url}/api/v1/accounts/1/conversations"
        bot = {"api_access_token": cw.bot_token}
        made = requests.post(url, json={"source_id": "wa-new", "status": "pending"},
                             headers=bot, timeout=5)
        assert made.status_code == 200 and made.json()["status"] == "pending"
        assert made.json()["account_id"] == 1 and "contact_inbox" not in made.json()
        again = requests.post(url, json={"source_id": "wa-new"}, headers=bot, timeout=5)
        assert again.json()["id"] == made.json()["id"]  # locked to one conversation
        missing = requests.post(url, json={"source_id": "wa-nobody"}, headers=bot, timeout=5)
        assert missing.status_code == 404
        assert len(cw.conversations()) == 1
