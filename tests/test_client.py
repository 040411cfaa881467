from __future__ import annotations

import json

import pytest
import requests
import responses
from conftest import contract

from chatwoot_mirror import (
    AmbiguousDelivery,
    AuthError,
    ChatwootClient,
    NotFound,
    RateLimited,
    Rejected,
    Unavailable,
)
from chatwoot_mirror.client import Attachment

BASE = "https://chat.example.com"
INBOX = "Hk2uR9bWq7mZcX4tYp1sLe8D"
PUBLIC = f"{BASE}/public/api/v1/inboxes/{INBOX}"
APP = f"{BASE}/api/v1/accounts/1"


@pytest.fixture
def client():
    c = ChatwootClient(BASE, INBOX, account_id=1, bot_token="BOT-SECRET", api_token="USER-SECRET",
                       connect_timeout=1.5, read_timeout=4.0)
    yield c
    c.close()


@responses.activate
def test_create_contact_sends_source_id_and_returns_contract_shape(client):
    responses.post(
        f"{PUBLIC}/contacts", json=contract("chatwoot/public_api/contact_create_response.json")
    )
    result = client.create_contact(
        "wa-5511987654321", name="Maria Silva", phone_number="+5511987654321",
        identifier="5511987654321",
    )
    assert result["source_id"] == "wa-5511987654321"
    request = responses.calls[0].request
    assert json.loads(request.body) == {
        "source_id": "wa-5511987654321",
        "name": "Maria Silva",
        "phone_number": "+5511987654321",
        "identifier": "5511987654321",
    }
    assert "api_access_token" not in request.headers
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"].startswith("chatwoot-mirror/")


@responses.activate
def test_explicit_timeouts_are_used(client, monkeypatch):
    seen = {}
    original = requests.Session.request

    def spy(self, method, url, **kwargs):
        seen["timeout"] = kwargs.get("timeout")
        return original(self, method, url, **kwargs)

    monkeypatch.setattr(requests.Session, "request", spy)
    responses.get(PUBLIC, json=contract("chatwoot/public_api/inbox_show_response.json"))
    client.get_inbox()
    assert seen["timeout"] == (1.5, 4.0)


@responses.activate
def test_bot_message_goes_to_application_api_with_bot_token(client):
    responses.post(
        f"{APP}/conversations/128/messages",
        json=contract("chatwoot/application_api/message_create_response_agent_bot.json"),
    )
    result = client.create_message(128, "Claro!", source_id="cwm:k1",
                                   content_attributes={"chatwoot_mirror": {"key": "k1"}})
    assert result["sender"]["type"] == "agent_bot"
    request = responses.calls[0].request
    assert request.headers["api_access_token"] == "BOT-SECRET"
    assert json.loads(request.body) == {
        "content": "Claro!",
        "message_type": "outgoing",
        "private": False,
        "source_id": "cwm:k1",
        "content_attributes": {"chatwoot_mirror": {"key": "k1"}},
    }


@responses.activate
def test_status_update_uses_the_user_token(client):
    responses.patch(f"{APP}/conversations/128/messages/9004", json={"id": 9004})
    client.update_message_status(128, 9004, "failed", external_error="number not on WhatsApp")
    request = responses.calls[0].request
    assert request.headers["api_access_token"] == "USER-SECRET"
    assert json.loads(request.body) == {"status": "failed",
                                        "external_error": "number not on WhatsApp"}


@responses.activate
def test_attachments_are_multipart(client):
    responses.post(
        f"{PUBLIC}/contacts/wa-1/conversations/128/messages",
        json=contract("chatwoot/public_api/message_create_response.json"),
    )
    client.create_incoming_message(
        "wa-1", 128, "foto", attachments=[Attachment(b"\x89PNG...", "a.png", "image/png")]
    )
    request = responses.calls[0].request
    assert request.headers["Content-Type"].startswith("multipart/form-data")
    assert b'name="attachments[]"; filename="a.png"' in request.body
    assert b"image/png" in request.body and b"\x89PNG..." in request.body
    assert b'name="content"\r\n\r\nfoto' in request.body


@pytest.mark.parametrize(
    "status,body,error,detail",
    [
        (404, {"status": 404, "error": "Not Found"}, NotFound, "Not Found"),
        (422, {"message": "Phone number should be in e164 format",
               "attributes": ["phone_number"]}, Rejected, "e164"),
        (500, {"status": 500, "error": "Internal Server Error"}, Unavailable,
         "CHATWOOT_HMAC_TOKEN"),
        (503, "upstream down", Unavailable, "upstream down"),
    ],
)
@responses.activate
def test_public_errors_map_to_the_hierarchy(client, status, body, error, detail):
    kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
    responses.post(f"{PUBLIC}/contacts", status=status, **kwargs)
    with pytest.raises(error) as info:
        client.create_contact("wa-1", phone_number="123")
    assert info.value.status == status
    assert detail in str(info.value)
    assert INBOX not in str(info.value)


@responses.activate
def test_bare_429_is_rate_limited_globally(client):
    responses.post(f"{PUBLIC}/contacts/wa-1/conversations/5/messages", status=429,
                   body="Retry later", content_type="text/plain")
    with pytest.raises(RateLimited) as info:
        client.create_incoming_message("wa-1", 5, "oi")
    assert info.value.scope == "global" and info.value.retry_after is None
    assert info.value.retryable


@responses.activate
def test_flood_422_is_rate_limited_per_conversation(client):
    responses.post(f"{PUBLIC}/contacts/wa-1/conversations/5/messages", status=422,
                   json={"message": "Too many messages", "attributes": []})
    with pytest.raises(RateLimited) as info:
        client.create_incoming_message("wa-1", 5, "oi")
    assert info.value.scope == "conversation"


@responses.activate
def test_bot_token_on_forbidden_endpoint_gets_a_hint(client):
    responses.patch(
        f"{APP}/conversations/128/messages/1", status=401,
        json=contract("chatwoot/application_api/error_bot_not_allowed_401.json"),
    )
    client._tokens["user"] = "BOT-SECRET"  # a bot token pasted where a user token belongs
    with pytest.raises(AuthError) as info:
        client.update_message_status(128, 1, "delivered")
    assert "CHATWOOT_API_TOKEN" in str(info.value)
    assert "BOT-SECRET" not in str(info.value)


@responses.activate
def test_invalid_token_names_the_variable(client):
    responses.post(
        f"{APP}/conversations/128/messages", status=401,
        json=contract("chatwoot/application_api/error_invalid_token_401.json"),
    )
    with pytest.raises(AuthError, match="CHATWOOT_BOT_TOKEN"):
        client.create_message(128, "x")


@responses.activate
def test_app_api_422_is_rejected_with_chatwoot_message(client):
    responses.post(
        f"{APP}/conversations/128/messages", status=422,
        json=contract("chatwoot/application_api/error_message_create_422.json"),
    )
    with pytest.raises(Rejected, match="Incoming messages are only allowed in Api inboxes"):
        client.create_message(128, "x", message_type="incoming")


@responses.activate
def test_read_timeout_on_post_is_ambiguous_and_on_get_is_unavailable(client):
    responses.post(f"{PUBLIC}/contacts", body=requests.ReadTimeout("slow"))
    responses.get(f"{PUBLIC}/contacts/wa-1/conversations", body=requests.ReadTimeout("slow"))
    with pytest.raises(AmbiguousDelivery):
        client.create_contact("wa-1")
    with pytest.raises(Unavailable) as info:
        client.list_conversations("wa-1")
    assert not isinstance(info.value, AmbiguousDelivery)


@responses.activate
def test_connect_timeout_is_unavailable_not_ambiguous(client):
    responses.post(f"{PUBLIC}/contacts", body=requests.ConnectTimeout("down"))
    with pytest.raises(Unavailable) as info:
        client.create_contact("wa-1")
    assert not isinstance(info.value, AmbiguousDelivery)


def test_refused_connection_is_unavailable_not_ambiguous():
    client = ChatwootClient("http://127.0.0.1:9", "x", connect_timeout=0.5, read_timeout=0.5)
    with pytest.raises(Unavailable) as info:
        client.create_contact("wa-1")
    assert not isinstance(info.value, AmbiguousDelivery)


@responses.activate
def test_one_session_is_reused(client):
    responses.get(PUBLIC, json=contract("chatwoot/public_api/inbox_show_response.json"))
    first = client.session
    client.get_inbox()
    client.get_inbox()
    assert client.session is first and client.request_count == 2


def test_proxy_and_ca_bundle_come_from_the_environment_once(monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    client = ChatwootClient(BASE, INBOX)
    assert client.session.proxies["https"] == "http://proxy.internal:3128"
    assert client.session.verify == str(bundle)
    assert client.session.trust_env is False
    monkeypatch.setenv("NO_PROXY", "chat.example.com")
    assert "https" not in ChatwootClient(BASE, INBOX).session.proxies
