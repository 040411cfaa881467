"""Issue #29 item 6: a client we did not write. ``openapi-python-client`` (pinned in the
test extra) generates Python clients from Chatwoot's own swagger, the public client API
(``client_swagger.json``) and the Application API (``application_swagger.json``), both
copied unchanged from chatwoot/chatwoot at 59442e57 into tests/fixtures/contracts. The
clients are generated at test time into a temporary directory, so a regenerated swagger or
a new generator release is tested as it is, and a scenario runs through them against the
emulator over HTTP: contact, conversation, messages, toggle status, assignment, labels,
custom attributes, priority and message status.

The generated models parse what the emulator answers (``from_dict``: enums, nested
objects, required keys), and where a generated client cannot parse a response, because
the swagger references a schema the generator had to drop, the raw answer is validated
against the swagger's own response schema instead. Where the swagger and Chatwoot's code
disagree, the code wins; those places are listed in ``SWAGGER_ERRORS`` with the file that
shows it.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
from conftest import FIXTURES

from chatwoot_mirror.testing import FakeChatwoot

SWAGGER = FIXTURES / "chatwoot" / "swagger" / "tag_groups"
GENERATOR_VERSION = "0.29.1"

#: Where Chatwoot's swagger says one thing and its code another (the code wins).
SWAGGER_ERRORS = {
    "public POST /contacts": "source_id is read (contacts_controller.rb#create) but not "
                             "documented; sent as an additional property",
    "PATCH messages/{id} (status)": "the API channel's status update "
                                    "(conversations/messages_controller.rb#update) is not in "
                                    "the swagger; sent through the generated client's httpx "
                                    "client",
    "GET messages": "the 200 answer refers to #/components/schemas/contact, which the "
                    "generator drops (duplicate model names in the swagger); the raw JSON is "
                    "checked against the swagger's response schema",
    "assignee_id, sla_policy_id": "typed number in the swagger, so the client sends 3.0; "
                                  "Rails casts it to the integer column",
}


#: Where the generator itself is wrong, and what the fixture does about it.
GENERATOR_BUGS = {
    "Unset not imported": "an operation with a JSON or multipart body (messages create) "
                          "annotates ``body: A | B | Unset`` without importing Unset; the "
                          "import is added after generating",
}


def _repair(package_dir: Path) -> None:
    for path in package_dir.rglob("*.py"):
        text = path.read_text()
        if "| Unset" in text and "from ...types import Response, UNSET\n" in text:
            path.write_text(text.replace("from ...types import Response, UNSET\n",
                                         "from ...types import Response, UNSET, Unset\n"))


def _generate(out: Path, spec: str, package: str) -> None:
    config = out / f"{package}.yml"
    # no post hooks: the generated code is imported, not kept, so it needs no formatting
    config.write_text(f"project_name_override: {package}\npackage_name_override: {package}\n"
                      "post_hooks: []\n")
    done = subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path",
         str(SWAGGER / spec), "--meta", "none", "--output-path", str(out / package),
         "--config", str(config)],
        capture_output=True, text=True, timeout=600, check=False)
    assert (out / package / "client.py").exists(), done.stdout + done.stderr
    _repair(out / package)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModuleType, ...]]:
    import openapi_python_client

    assert openapi_python_client.__version__ == GENERATOR_VERSION
    out = tmp_path_factory.mktemp("generated")
    _generate(out, "client_swagger.json", "cw_public")
    _generate(out, "application_swagger.json", "cw_app")
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("cw_public"), importlib.import_module("cw_app")
    finally:
        sys.path.remove(str(out))
        for name in [n for n in sys.modules if n.split(".")[0] in ("cw_public", "cw_app")]:
            del sys.modules[name]


def _api(package: ModuleType, module: str) -> Any:
    return importlib.import_module(f"{package.__name__}.api.{module}")


def _model(package: ModuleType, name: str) -> Any:
    return getattr(importlib.import_module(f"{package.__name__}.models"), name)


def _ok(response: Any) -> Any:
    """The parsed answer of a 200, with the raw one in the failure message."""
    assert response.status_code == 200, response.content
    assert response.parsed is not None, response.content
    return response.parsed


def _response_schema(spec: str, path: str, method: str) -> dict[str, Any]:
    """The swagger's 200 schema of one operation, its references resolvable."""
    document = json.loads((SWAGGER / spec).read_text())
    schema = document["paths"][path][method]["responses"]["200"]["content"][
        "application/json"]["schema"]
    return {**schema, "components": document["components"]}


def test_a_generated_client_runs_the_whole_scenario(generated):
    public, app = generated
    with FakeChatwoot() as cw:
        anonymous = public.Client(base_url=cw.url, raise_on_unexpected_status=True)

        def token(value: str, strict: bool = True) -> Any:
            return app.AuthenticatedClient(base_url=cw.url, token=value, prefix="",
                                           auth_header_name="api_access_token",
                                           raise_on_unexpected_status=strict)

        bot, agent = token(cw.bot_token), token(cw.user_token)
        inbox = cw.inbox_identifier

        # contact, conversation, an incoming message (public client API)
        payload = _model(public, "PublicContactCreateUpdatePayload")(
            name="Maria Silva", phone_number="+5511987654321")
        payload["source_id"] = "wa-5511987654321"  # see SWAGGER_ERRORS
        contact = _ok(_api(public, "contacts_api.create_a_contact").sync_detailed(
            inbox, client=anonymous, body=payload))
        assert contact.source_id == "wa-5511987654321" and contact.name == "Maria Silva"
        conversation = _ok(_api(public, "conversations_api.create_a_conversation")
                           .sync_detailed(inbox, contact.source_id, client=anonymous,
                                          body=_model(public, "PublicConversationCreatePayload")()))
        conv = int(conversation.id)
        message = _ok(_api(public, "messages_api.create_a_message").sync_detailed(
            inbox, contact.source_id, conv, client=anonymous,
            body=_model(public, "PublicMessageCreatePayload")(content="Oi, quero ajuda")))
        assert message.content == "Oi, quero ajuda"

        # the bot answers and reads the conversation (Application API, bot token)
        create = _model(app, "ConversationMessageCreatePayload")
        reply = _ok(_api(app, "messages.create_a_new_message_in_a_conversation").sync_detailed(
            1, conv, client=bot, body=create(content="Olá! Como posso ajudar?")))
        shown = _ok(_api(app, "conversations.get_details_of_a_conversation").sync_detailed(
            1, conv, client=bot))
        assert int(shown.id) == conv and shown.status.value == "open"

        # priority, custom attributes, labels (bot token)
        priority = _model(app, "UpdateConversationBodyPriority")
        updated = _ok(_api(app, "conversations.update_conversation").sync_detailed(
            1, conv, client=bot,
            body=_model(app, "UpdateConversationBody")(priority=priority("high"))))
        assert updated.priority == "high"
        attributes = _model(app, "UpdateCustomAttributesOfAConversationBodyCustomAttributes")()
        attributes["plano"] = "ouro"
        _ok(_api(app, "conversations.update_custom_attributes_of_a_conversation").sync_detailed(
            1, conv, client=bot,
            body=_model(app, "UpdateCustomAttributesOfAConversationBody")(
                custom_attributes=attributes)))
        labels = _ok(_api(app, "conversations.conversation_add_labels").sync_detailed(
            1, conv, client=bot,
            body=_model(app, "ConversationAddLabelsBody")(labels=["vip", "suporte"])))
        assert list(labels.payload) == ["vip", "suporte"]
        listed = _ok(_api(app, "conversations.list_all_labels_of_a_conversation").sync_detailed(
            1, conv, client=bot))
        assert list(listed.payload) == ["vip", "suporte"]

        # an agent takes it, and the bot hands back by resolving it
        assigned = _ok(_api(app, "conversation_assignments.assign_a_conversation").sync_detailed(
            1, conv, client=agent,
            body=_model(app, "AssignAConversationBody")(assignee_id=3)))
        assert int(assigned.id) == 3
        status = _model(app, "ToggleStatusOfAConversationBodyStatus")
        toggled = _ok(_api(app, "conversations.toggle_status_of_a_conversation").sync_detailed(
            1, conv, client=bot,
            body=_model(app, "ToggleStatusOfAConversationBody")(status=status("resolved"))))
        assert toggled.payload.current_status.value == "resolved"

        # the delivery receipt: not in the swagger, sent through the client's own session
        # with a user token (a bot's is refused: BOT_ACCESSIBLE_ENDPOINTS has messages#create
        # only)
        refused = bot.get_httpx_client().patch(
            f"/api/v1/accounts/1/conversations/{conv}/messages/{int(reply.id)}",
            json={"status": "delivered"})
        assert refused.status_code == 401
        answer = agent.get_httpx_client().patch(
            f"/api/v1/accounts/1/conversations/{conv}/messages/{int(reply.id)}",
            json={"status": "delivered"})
        assert answer.status_code == 200 and answer.json()["status"] == "delivered"

        # a question with options, answered by the customer (public client API)
        ask = _model(app, "ConversationMessageCreatePayloadContentType")
        question = _ok(_api(app, "messages.create_a_new_message_in_a_conversation")
                       .sync_detailed(1, conv, client=bot, body=create(
                           content="Tudo certo?", content_type=ask("input_select"))))
        picked = _model(public, "PublicMessageUpdatePayloadSubmittedValues")(
            title="Sim", value="sim")
        answered = _ok(_api(public, "messages_api.update_a_message").sync_detailed(
            inbox, contact.source_id, conv, int(question.id), client=anonymous,
            body=_model(public, "PublicMessageUpdatePayload")(submitted_values=picked)))
        assert answered.content_attributes["submitted_values"] == {"title": "Sim",
                                                                   "value": "sim"}

        # everything, as the agent reads it
        full = _ok(_api(app, "conversations.get_details_of_a_conversation").sync_detailed(
            1, conv, client=agent))
        assert full.status.value == "resolved" and full.labels == ["vip", "suporte"]
        assert full.custom_attributes["plano"] == "ouro"
        assert int(full.meta.assignee.id) == 3
        # its 200 has no generated model (SWAGGER_ERRORS): a client that does not raise
        messages = _api(app, "messages.list_all_messages").sync_detailed(
            1, conv, client=token(cw.user_token, strict=False))
        assert messages.status_code == 200
        body = json.loads(messages.content)
        jsonschema.validate(body, _response_schema(
            "application_swagger.json",
            "/api/v1/accounts/{account_id}/conversations/{conversation_id}/messages", "get"))
        assert [m["content"] for m in body["payload"] if m["message_type"] != 2] == [
            "Oi, quero ajuda", "Olá! Como posso ajudar?", "Tudo certo?"]
        assert [m["status"] for m in body["payload"] if m["id"] == int(reply.id)] == [
            "delivered"]

        # the customer sees the conversation and both messages (public client API)
        seen = _ok(_api(public, "messages_api.list_all_conversation_messages").sync_detailed(
            inbox, contact.source_id, conv, client=anonymous))
        assert [m.content for m in seen] == ["Oi, quero ajuda", "Olá! Como posso ajudar?",
                                             "Tudo certo?"]


def test_the_swagger_errors_name_what_they_work_around():
    """Each listed swagger error is still one: the swagger does not document it."""
    public = json.loads((SWAGGER / "client_swagger.json").read_text())
    app = json.loads((SWAGGER / "application_swagger.json").read_text())
    contact_payload = public["components"]["schemas"]["public_contact_create_update_payload"]
    assert "source_id" not in contact_payload["properties"]
    message_paths = [p for p in app["paths"] if p.endswith("/messages/{message_id}")]
    assert all("patch" not in app["paths"][p] for p in message_paths)
    assert SWAGGER_ERRORS
