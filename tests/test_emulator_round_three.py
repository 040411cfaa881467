"""Issue #29, the emulator's round three: rules read from Chatwoot's source at
59442e57 (develop, VERSION_CW 4.16.2), each release found by the version bump its commit
first reached. Each test names the file its rule comes from and failed on the emulator
before this round.

The tests call ``Emulator.handle`` (what the HTTP server only translates for) and record
the webhook events it emits.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from emulator_calls import Chatwoot

from chatwoot_mirror.testing.emulator import Request


def digest(key: str, text: str) -> str:
    return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest()


# -- 1. attachments (app/models/attachment.rb) ---------------------------------------------

@pytest.mark.parametrize("version, typed", [("4.12.1", False), ("4.13.0", True),
                                            ("4.16.2", True)])
def test_a_file_attachment_names_its_content_type_from_4_13(version, typed):
    """app/models/attachment.rb#file_metadata has ``content_type: file.content_type``
    after ``extension``, and ``before_save :set_extension`` fills the extension from the
    file name (both #13945, first in 4.13.0); before that the column stayed null."""
    cw = Chatwoot(chatwoot_version=version)
    cw.contact()
    [att] = cw.upload(cw.conversation(), ("contrato.pdf", "application/pdf"))["attachments"]
    keys = ["id", "message_id", "file_type", "account_id", "extension", "data_url",
            "thumb_url", "file_size", "width", "height"]
    if typed:
        keys.insert(5, "content_type")
    assert list(att) == keys
    assert att["extension"] == ("pdf" if typed else None)
    assert att.get("content_type") == ("application/pdf" if typed else None)


@pytest.mark.parametrize("version, inline", [("4.13.0", False), ("4.14.0", True)])
def test_an_audio_attachment_plays_inline_and_carries_its_transcript(version, inline):
    """app/models/attachment.rb#audio_metadata: the file metadata, then
    ``transcribed_text`` (``meta['transcribed_text'] || ''``, #11670, every modelled
    version) and, from 4.14.0 (#14315), a ``data_url`` that is the redirect URL with
    ``disposition=inline``. The URL still serves the file."""
    cw = Chatwoot(chatwoot_version=version)
    cw.contact()
    [att] = cw.upload(cw.conversation(), ("voz.ogg", "audio/ogg"))["attachments"]
    assert list(att)[-1] == "transcribed_text" and att["transcribed_text"] == ""
    assert att["data_url"].endswith("?disposition=inline") is inline
    path, _, query = att["data_url"].partition("?")
    reply = cw.emulator.handle(Request("GET", path, query))
    assert reply.status == 200 and reply.body == b"DATA"


def test_an_image_has_a_thumbnail_and_a_document_has_none():
    """app/models/attachment.rb#thumb_url: an image's is the URL of a 250 px wide
    representation (``file.representation(resize_to_fill: [250, nil])``); anything
    else's is ``''``."""
    cw = Chatwoot()
    cw.contact()
    image, doc = cw.upload(cw.conversation(), ("foto.jpg", "image/jpeg"),
                        ("nota.txt", "text/plain"))["attachments"]
    assert image["thumb_url"].startswith("/rails/active_storage/representations/")
    assert image["thumb_url"].endswith("/foto.jpg")
    assert cw.emulator.handle(Request("GET", image["thumb_url"])).status == 200
    assert doc["thumb_url"] == ""


# -- 2. PATCH /conversations/{id} (conversations_controller.rb#update) ----------------------

def test_update_takes_only_priority_and_renders_the_partial_with_updated_at():
    """api/v1/accounts/conversations_controller.rb#permitted_update_params is
    ``params.permit(:priority)``: status, assignee and custom attributes sent to update
    are ignored; the answer is conversations/partials/_conversation.json.jbuilder, whose
    ``updated_at`` is ``conversation.updated_at.to_f``. A bot may call it
    (AccessTokenAuthHelper::BOT_ACCESSIBLE_ENDPOINTS)."""
    cw = Chatwoot()
    cw.contact()
    conv = cw.conversation()
    status, body = cw.app("PATCH", f"/conversations/{conv}", {
        "priority": "high", "status": "resolved", "assignee_id": 3,
        "custom_attributes": {"plano": "ouro"}})
    assert status == 200, body
    assert body["priority"] == "high" and body["status"] == "open"
    assert body["custom_attributes"] == {} and "assignee" not in body["meta"]
    assert isinstance(body["updated_at"], float)
    assert body["sla_policy_id"] is None


def test_sla_policy_id_is_taken_only_where_the_sla_feature_is_on():
    """enterprise/app/controllers/enterprise/api/v1/accounts/conversations_controller.rb
    #permitted_update_params adds ``sla_policy_id`` only when the account has the ``sla``
    feature; the partial shows it only then (and not for a blocked contact)."""
    off = Chatwoot()
    off.contact()
    conv = off.conversation()
    status, body = off.app("PATCH", f"/conversations/{conv}", {"sla_policy_id": 1})
    assert status == 200 and body["sla_policy_id"] is None
    assert "applied_sla" not in body
    on = Chatwoot(sla_policies={1: "Ouro"})
    on.contact()
    conv = on.conversation()
    on.drain()
    status, body = on.app("PATCH", f"/conversations/{conv}", {"sla_policy_id": 1})
    assert status == 200 and body["sla_policy_id"] == 1
    assert body["applied_sla"]["sla_id"] == 1 and body["applied_sla"]["sla_name"] == "Ouro"
    assert body["sla_events"] == []
    # sla_policy_id is not in Conversation#list_of_keys: no conversation_updated
    assert on.updates() == []


def test_sla_policy_validations_answer_422():
    """enterprise/app/models/enterprise/concerns/conversation.rb#validate_sla_policy: it
    cannot be removed, replaced, given to a blocked contact's conversation, or be another
    account's (an unknown id); RecordInvalid is request_exception_handler.rb's 422."""
    cw = Chatwoot(sla_policies={1: "Ouro", 2: "Prata"})
    cw.contact()
    conv = cw.conversation()
    assert cw.app("PATCH", f"/conversations/{conv}", {"sla_policy_id": 1})[0] == 200

    def refused(conv: int, value: Any) -> str:
        status, body = cw.app("PATCH", f"/conversations/{conv}", {"sla_policy_id": value})
        assert status == 422 and body["attributes"] == ["sla_policy"], body
        return str(body["message"])

    assert refused(conv, 2) == "Sla policy conversation already has a different sla"
    assert refused(conv, None) == "Sla policy cannot remove sla policy from conversation"
    cw.contact("wa-2")
    other = cw.conversation("wa-2")
    assert refused(other, 99) == "Sla policy sla policy account mismatch"
    cw.emulator.contacts[cw.emulator.conversations[other].contact_inbox.contact_id].blocked = True
    assert refused(other, 1) == ("Sla policy cannot be assigned to conversations with "
                                 "blocked contacts")


# -- 3. identity validation (public/api/v1/inboxes/contacts_controller.rb) ------------------

def test_the_identifier_hash_is_read_from_the_query_string_too():
    """contacts_controller.rb#process_hmac reads ``params``, which Rails merges from the
    query string and the body: a wrong hash in the URL of a POST is the 500."""
    cw = Chatwoot(hmac_token="segredo")
    status, _ = cw.public("POST", "/contacts?identifier=maria&identifier_hash=errado",
                          {"source_id": "wa-q"})
    assert status == 500
    good = digest("segredo", "maria")
    status, _ = cw.public("POST", f"/contacts?identifier=maria&identifier_hash={good}",
                          {"source_id": "wa-q"})
    assert status == 200


def test_the_identifier_is_hashed_as_ruby_writes_it():
    """contacts_controller.rb#valid_hmac? hashes ``params[:identifier].to_s``: a JSON null
    is ``''`` and true is ``'true'`` (Ruby's to_s), not Python's ``None`` / ``True``."""
    cw = Chatwoot(hmac_token="segredo", hmac_mandatory=True)
    status, _ = cw.public("POST", "/contacts", {"source_id": "wa-n", "identifier": None,
                                                "identifier_hash": digest("segredo", "")})
    assert status == 200
    status, _ = cw.public("POST", "/contacts", {"source_id": "wa-t", "identifier": True,
                                                "identifier_hash": digest("segredo", "true")})
    assert status == 200


def test_a_conversation_created_with_hmac_verified_verifies_its_new_contact_inbox():
    """api/v1/accounts/conversations_controller.rb#build_contact_inbox passes
    ``hmac_verified: hmac_verified?`` (concerns/hmac_concern.rb) to ContactInboxBuilder,
    whose ``first_or_create!`` sets it only on a contact inbox it creates. The partial
    shows it as ``meta.hmac_verified``, and the verified contact inbox lists all of its
    contact's conversations (public conversations_controller.rb#index)."""
    cw = Chatwoot()
    contact = cw.contact("wa-1")
    first = cw.conversation("wa-1")
    status, body = cw.app("POST", "/conversations", {
        "contact_id": contact["id"], "inbox_id": cw.emulator.inbox_id,
        "source_id": "crm-77", "hmac_verified": "true"}, bot=False)
    assert status == 200 and body["meta"]["hmac_verified"] is True
    status, listed = cw.public("GET", "/contacts/crm-77/conversations")
    assert sorted(c["id"] for c in listed) == sorted([first, body["id"]])
    # an existing contact inbox is found, not changed
    status, body = cw.app("POST", "/conversations", {
        "contact_id": contact["id"], "inbox_id": cw.emulator.inbox_id,
        "source_id": "wa-1", "hmac_verified": True}, bot=False)
    assert status == 200 and body["meta"]["hmac_verified"] is False


def test_a_conversation_created_without_source_id_gets_a_new_contact_inbox():
    """app/builders/contact_inbox_builder.rb#perform: without a source_id an API inbox
    generates ``SecureRandom.uuid``, so every call makes a new contact inbox, and even
    with lock_to_single_conversation (conversation_builder.rb looks in that contact
    inbox) a new conversation."""
    cw = Chatwoot(lock_to_single_conversation=True)
    contact = cw.contact("wa-1")
    made = []
    for _ in range(2):
        status, body = cw.app("POST", "/conversations", {
            "contact_id": contact["id"], "inbox_id": cw.emulator.inbox_id})
        assert status == 200, body
        made.append(body["id"])
    assert len(set(made)) == 2
    sources = {c.contact_inbox.source_id for c in cw.emulator.conversations.values()}
    assert len(sources) == 2 and "wa-1" not in sources


def test_the_standalone_emulator_can_enforce_identity(capsys):
    """``--hmac-token`` and ``--enforce-identity`` set the inbox's ``hmac_token`` and
    ``hmac_mandatory`` (Channel::Api), which the public inbox shows as
    ``identity_validation_enabled`` (public/api/v1/inboxes/show.json.jbuilder)."""
    from chatwoot_mirror.testing.__main__ import build

    fake = build(["--hmac-token", "segredo", "--enforce-identity"])
    assert fake.emulator.hmac_token == "segredo" and fake.emulator.hmac_mandatory is True
    with pytest.raises(SystemExit):
        build(["--enforce-identity"])  # an enforced identity needs a token to check with
    assert "--hmac-token" in capsys.readouterr().err


# -- 4. validation wording, labels, webhooks ------------------------------------------------

def test_labels_that_are_not_a_list_clear_the_conversations_labels():
    """conversations/labels_controller.rb#permitted_params is ``labels: []``: a value
    that is not an array is dropped, so ``update_labels(nil)`` (labelable.rb) clears the
    labels; non-scalar items of an array are dropped too."""
    cw = Chatwoot()
    cw.contact()
    conv = cw.conversation()
    status, body = cw.app("POST", f"/conversations/{conv}/labels", {"labels": ["vip"]})
    assert body == {"payload": ["vip"]}
    status, body = cw.app("POST", f"/conversations/{conv}/labels", {"labels": "vip,urgente"})
    assert status == 200 and body == {"payload": []}
    status, body = cw.app("POST", f"/conversations/{conv}/labels",
                          {"labels": ["vip", {"x": 1}, ["y"], 7]})
    assert body == {"payload": ["vip", "7"]}


def test_a_phone_number_with_a_trailing_newline_is_refused():
    """app/models/contact.rb validates ``phone_number`` with ``/\\A\\+[1-9]\\d{1,14}\\z/``:
    ``\\z`` is the very end, so a trailing newline is a 422 (a Python ``$`` would let it
    through)."""
    cw = Chatwoot()
    status, body = cw.public("POST", "/contacts", {"source_id": "wa-nl",
                                                   "phone_number": "+5511987654321\n"})
    assert status == 422 and body["attributes"] == ["phone_number"]


def test_the_message_partial_leaves_out_a_missing_sender():
    """app/views/api/v1/models/_message.json.jbuilder: ``json.sender ... if
    message.sender``: a message Chatwoot wrote itself has no ``sender`` key."""
    cw = Chatwoot()
    cw.contact()
    conv = cw.conversation()
    cw.emulator.template_message(conv, "Estamos fora do horário")
    [msg] = cw.emulator.conversation_messages(conv)
    assert "sender" not in msg


# -- 5. what a token may call, by version ----------------------------------------------------

@pytest.mark.parametrize("version, gated", [("4.15.1", False), ("4.16.0", True)])
def test_a_cloud_account_without_api_access_refuses_tokens_from_4_16(version, gated):
    """api/v1/accounts/base_controller.rb#validate_token_api_access (#14973, 4.16.0): on
    Chatwoot Cloud an account without the ``api_and_webhooks`` feature answers every
    token request 403; a bad token is still 401 and the public API is not gated."""
    cw = Chatwoot(chatwoot_version=version, api_access=False)
    cw.contact()
    conv = cw.conversation()
    status, body = cw.app("POST", f"/conversations/{conv}/messages", {"content": "oi"})
    if gated:
        assert status == 403 and body == {"error": "API access is not enabled for this account"}
    else:
        assert status == 200
    status, body = cw.call("GET", f"/api/v1/accounts/1/conversations/{conv}", token="wrong")
    assert status == 401
    assert cw.public("GET", f"/contacts/wa-1/conversations/{conv}")[0] == 200


# -- 6. endpoints the generated client reaches ---------------------------------------------

def test_the_messages_index_is_for_users_and_has_meta_and_payload():
    """api/v1/accounts/conversations/messages_controller.rb#index renders
    messages/index.json.jbuilder: ``meta`` (labels, additional_attributes, contact,
    assignee when there is one, last-seen times) and ``payload`` (the _message partial);
    it is not one of the bots' endpoints."""
    cw = Chatwoot()
    cw.contact()
    conv = cw.conversation()
    cw.incoming(conv, "oi")
    cw.app("POST", f"/conversations/{conv}/messages", {"content": "olá"})
    status, body = cw.app("GET", f"/conversations/{conv}/messages", bot=False)
    assert status == 200, body
    assert set(body["meta"]) == {"labels", "additional_attributes", "contact",
                                 "agent_last_seen_at", "assignee_last_seen_at"}
    assert [m["content"] for m in body["payload"]] == ["oi", "olá"]
    assert body["payload"][0]["sender"]["type"] == "contact"
    assert cw.app("GET", f"/conversations/{conv}/messages")[0] == 401


def test_a_contact_submits_values_to_a_message():
    """public/api/v1/inboxes/messages_controller.rb#update: ``submitted_values`` (a
    content_attributes accessor of Message) is saved, the public message partial is
    rendered and ``message_updated`` sent; another conversation's message is a 404."""
    cw = Chatwoot()
    cw.contact()
    conv = cw.conversation()
    status, made = cw.app("POST", f"/conversations/{conv}/messages", {
        "content": "Escolha", "content_type": "input_select",
        "content_attributes": {"items": [{"title": "Sim", "value": "sim"}]}})
    assert status == 200, made
    cw.drain()
    values = [{"title": "Sim", "value": "sim"}]
    status, body = cw.public("PATCH", f"/contacts/wa-1/conversations/{conv}/messages/"
                             f"{made['id']}", {"submitted_values": values})
    assert status == 200, body
    assert body["content_attributes"]["submitted_values"] == values
    assert body["content_attributes"]["items"] == values
    assert [n for n, _ in cw.events] == ["message_updated"]
    status, _ = cw.public("PATCH", f"/contacts/wa-1/conversations/{conv}/messages/1",
                          {"submitted_values": values})
    assert status == 404


def test_the_mirrors_client_names_the_missing_plan_feature():
    """What a user of the mirror sees on such an account: an AuthError (never retried as
    if Chatwoot were down) whose text says the plan lacks API access."""
    from chatwoot_mirror import ChatwootClient
    from chatwoot_mirror.errors import AuthError
    from chatwoot_mirror.testing import FakeChatwoot

    with FakeChatwoot(api_access=False) as fake:
        client = ChatwootClient(fake.url, fake.inbox_identifier, account_id=1,
                                bot_token=fake.bot_token)
        contact = client.create_contact("wa-1", name="Maria")
        conv = client.create_conversation(contact["source_id"])
        with pytest.raises(AuthError) as raised:
            client.create_message(int(conv["id"]), "olá")
        assert raised.value.status == 403
        assert "plan has no API access" in str(raised.value)
        client.close()


#: the README's table of what an Agent Bot token may call: row label -> the calls it covers
BOT_TABLE_CALLS = {
    "`POST /conversations`, `PATCH /conversations/{id}`": [
        ("POST", "/conversations", {"source_id": "wa-1"}),
        ("PATCH", "/conversations/{conv}", {"priority": "low"})],
    "`POST .../toggle_status`, `.../toggle_priority`, `.../custom_attributes`": [
        ("POST", "/conversations/{conv}/toggle_status", {"status": "open"}),
        ("POST", "/conversations/{conv}/toggle_priority", {"priority": "high"}),
        ("POST", "/conversations/{conv}/custom_attributes", {"custom_attributes": {"a": 1}})],
    "`POST .../messages`, `POST .../assignments`": [
        ("POST", "/conversations/{conv}/messages", {"content": "oi"}),
        ("POST", "/conversations/{conv}/assignments", {"assignee_id": 3})],
    "`POST .../toggle_typing_status`": [
        ("POST", "/conversations/{conv}/toggle_typing_status", {"typing_status": "on"})],
    "`GET /conversations/{id}`, `GET` and `POST .../labels`": [
        ("GET", "/conversations/{conv}", None),
        ("GET", "/conversations/{conv}/labels", None),
        ("POST", "/conversations/{conv}/labels", {"labels": ["vip"]})],
    "`GET .../messages`, `PATCH .../messages/{id}` (status), agents, inboxes, contact merge": [
        ("GET", "/conversations/{conv}/messages", None),
        ("PATCH", "/conversations/{conv}/messages/{msg}", {"status": "read"}),
        ("GET", "/agents", None), ("GET", "/inboxes", None),
        ("POST", "/actions/contact_merge", {"base_contact_id": 1, "mergee_contact_id": 2})],
}
#: the table's columns, each played by one release
BOT_TABLE_COLUMNS = ("4.10.1", "4.13.0", "4.16.2")


def test_the_readmes_bot_endpoint_table_is_what_the_emulator_does():
    """app/controllers/concerns/access_token_auth_helper.rb, BOT_ACCESSIBLE_ENDPOINTS at
    each release (typing #13705 in 4.12.0, show and labels #14655 in 4.14.2): every row
    of the README's table, called with a bot token on the release of each column, is
    refused (the bots' 401) exactly where the table says no."""
    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    for label, calls in BOT_TABLE_CALLS.items():
        [row] = [line for line in readme.splitlines() if line.startswith(f"| {label} |")]
        expected = [cell.strip() == "yes" for cell in row.split("|")[2:-1]]
        assert len(expected) == len(BOT_TABLE_COLUMNS), row
        for version, allowed in zip(BOT_TABLE_COLUMNS, expected, strict=True):
            cw = Chatwoot(chatwoot_version=version)
            cw.contact()
            conv = cw.conversation()
            msg = cw.app("POST", f"/conversations/{conv}/messages", {"content": "x"})[1]["id"]
            for method, path, body in calls:
                status, answer = cw.app(method, path.format(conv=conv, msg=msg), body)
                refused = (status, answer) == (
                    401, {"error": "Access to this endpoint is not authorized for bots"})
                assert refused is not allowed, (version, method, path, status, answer)


def test_a_human_reply_is_a_users_or_an_echo_and_never_an_automations():
    """app/models/message.rb#human_response?: outgoing, no ``automation_rule_id``, and a
    User's or one with ``external_echo`` (sent from the native app); only such a reply is
    the first reply (#valid_first_reply?, #dispatch_create_events). A bot's echo counts,
    an automation's message through a user's token does not."""
    cw = Chatwoot()
    cw.contact()
    conv = cw.conversation()
    cw.app("POST", f"/conversations/{conv}/messages",
           {"content": "regra", "content_attributes": {"automation_rule_id": 9}}, bot=False)
    state = cw.emulator.conversations[conv]
    assert state.first_reply_created_at is None and state.waiting_since is not None
    cw.app("POST", f"/conversations/{conv}/messages",
           {"content": "do celular", "content_attributes": {"external_echo": True}})
    assert state.first_reply_created_at is not None and state.waiting_since is None


def test_a_label_change_reports_the_cache_column_and_a_reorder_is_no_change():
    """acts-as-taggable-on on Conversation (labelable.rb ``acts_as_taggable_on :labels``,
    the ``cached_label_list`` column of app/models/conversation.rb): ``label_list=`` is a
    change only when the sorted lists differ, and ``save_cached_tag_list`` writes the
    ", "-joined cache in the same save, so ``previous_changes`` (and so
    ``changed_attributes``) holds both; a reorder changes only the cache, which is not in
    ``list_of_keys``: no conversation_updated."""
    cw = Chatwoot()
    cw.contact()
    conv = cw.conversation()
    cw.drain()
    cw.app("POST", f"/conversations/{conv}/labels", {"labels": ["vip", "suporte"]})
    [update] = cw.updates()
    assert [next(iter(item)) for item in update] == ["label_list", "cached_label_list",
                                                    "updated_at"]
    assert update[1]["cached_label_list"] == {"previous_value": None,
                                              "current_value": "vip, suporte"}
    status, body = cw.app("POST", f"/conversations/{conv}/labels",
                          {"labels": ["suporte", "vip"]})
    assert body == {"payload": ["suporte", "vip"]} and len(cw.updates()) == 1
