"""ChatwootClient: the public client API and the Application API over one ``requests.Session``.

Every call has explicit connect/read timeouts and maps failures onto
:mod:`chatwoot_mirror.errors`. Log lines and exception messages name the
operation, never the URL: public-API URLs contain the inbox identifier, which
is enough to post into the inbox.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from urllib3.exceptions import NameResolutionError, NewConnectionError

from ._version import __version__
from .errors import (
    AmbiguousDelivery,
    AuthError,
    ChatwootError,
    NotFound,
    RateLimited,
    Rejected,
    Unavailable,
)

log = logging.getLogger("chatwoot_mirror.client")

#: Pauses between the tries of a request that is safe to repeat (GETs, and a contact
#: create with its fixed source_id), each scaled by a random 0.5 to 1.0: a few tries over
#: at most about 1.5 s before the message falls back to the outbox's backoff.
SHORT_RETRIES = (0.1, 0.4, 1.0)

_BOT_NOT_ALLOWED = "not authorized for bots"
_FLOOD = "too many messages"
_MAX_DETAIL = 300


@dataclass(frozen=True)
class Attachment:
    """A file to upload with a message (multipart ``attachments[]``)."""

    data: bytes
    filename: str
    content_type: str = "application/octet-stream"


class ChatwootClient:
    """Thin, typed access to the Chatwoot endpoints this library uses.

    ``bot_token`` is an AgentBot access token; ``api_token`` a user access token.
    Application-API calls pick the token they need (``token="bot"`` or ``"user"``).
    """

    def __init__(
        self,
        base_url: str,
        inbox_identifier: str,
        *,
        account_id: int | None = None,
        bot_token: str | None = None,
        api_token: str | None = None,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.inbox_identifier = inbox_identifier
        self.account_id = account_id
        self._tokens = {"bot": bot_token, "user": api_token}
        self.timeout = (connect_timeout, read_timeout)
        self.session = session or _session_for(self.base_url)
        self.session.headers.update(
            {"Accept": "application/json", "User-Agent": f"chatwoot-mirror/{__version__}"}
        )
        #: Every HTTP request sent, by operation name; benchmarks and ``stats`` read it.
        self.request_count = 0
        #: ``observe(answered, error)`` for every request; ``is_down()`` skips short
        #: retries during an outage (the mirror's :class:`~chatwoot_mirror.pacing.Pacer`)
        self.health: Any = None
        self.short_retries: tuple[float, ...] = SHORT_RETRIES
        self._rng = random.Random()

    # -- plumbing ---------------------------------------------------------------------------

    def _public(self, path: str = "") -> str:
        return f"{self.base_url}/public/api/v1/inboxes/{self.inbox_identifier}{path}"

    def _app(self, path: str) -> str:
        if self.account_id is None:
            raise AuthError("CHATWOOT_ACCOUNT_ID is not configured", operation="application_api")
        return f"{self.base_url}/api/v1/accounts/{self.account_id}{path}"

    def _auth(self, token: str, operation: str) -> dict[str, str]:
        value = self._tokens.get(token)
        if not value:
            variable = "CHATWOOT_BOT_TOKEN" if token == "bot" else "CHATWOOT_API_TOKEN"
            raise AuthError(f"{variable} is not configured", operation=operation)
        return {"api_access_token": value}

    def _app_call(
        self, operation: str, method: str, path: str, *, token: str = "bot",
        json: Any = None,
    ) -> Any:
        """One Application-API call as the token's owner (``bot`` or ``user``)."""
        return self._request(operation, method, self._app(path), json=json,
                             headers=self._auth(token, operation), token=token)

    def _request(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        json: Any = None,
        data: Mapping[str, Any] | None = None,
        files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Send one request. One that is safe to repeat (``idempotent``; GETs by default)
        is tried again after a short pause when Chatwoot did not answer, unless Chatwoot
        is down; anything else is tried once (posting a message twice is a duplicate:
        the outbox looks before it posts again)."""
        repeat = method == "GET" if idempotent is None else idempotent
        pauses = self.short_retries if repeat else ()
        for pause in (*pauses, None):
            if self.health is not None:
                self.health.take()  # the pace counts requests, not messages
            try:
                result = self._send(operation, method, url, json=json, data=data,
                                    files=files, params=params, headers=headers, token=token)
            except (Unavailable, AmbiguousDelivery) as exc:
                if self.health is not None:
                    self.health.observe(exc.status is not None and exc.status < 500, str(exc))
                if pause is None or (self.health is not None and self.health.is_down()):
                    raise
                time.sleep(pause * self._rng.uniform(0.5, 1.0))
                continue
            except ChatwootError:
                if self.health is not None:
                    self.health.observe(True)  # it answered, if with a refusal
                raise
            if self.health is not None:
                self.health.observe(True)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self,
        operation: str,
        method: str,
        url: str,
        *,
        json: Any,
        data: Mapping[str, Any] | None,
        files: list[tuple[str, tuple[str, bytes, str]]] | None,
        params: Mapping[str, Any] | None,
        headers: Mapping[str, str] | None,
        token: str | None,
    ) -> Any:
        self.request_count += 1
        try:
            response = self.session.request(
                method,
                url,
                json=json,
                data=data,
                files=files,
                params=params,
                headers=headers,
                timeout=self.timeout,
            )
        except requests.ConnectTimeout:
            raise Unavailable("connection timed out", operation=operation) from None
        except requests.ReadTimeout:
            if method == "GET":
                raise Unavailable(
                    "no answer before the read timeout", operation=operation
                ) from None
            raise AmbiguousDelivery(
                "sent, but no answer before the read timeout", operation=operation
            ) from None
        except requests.ConnectionError as exc:
            if method == "GET" or _never_sent(exc):
                raise Unavailable("cannot connect", operation=operation) from None
            raise AmbiguousDelivery(
                "connection dropped after the request was sent", operation=operation
            ) from None
        except requests.RequestException as exc:
            raise Unavailable(type(exc).__name__, operation=operation) from None

        status = response.status_code
        if 200 <= status < 300:
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                raise Unavailable(
                    "answered 2xx with a body that is not JSON", operation=operation, status=status
                ) from None
        raise _error_for(response, operation, token)

    # -- public client API (no authentication; identity is the source_id) -----------------

    def get_inbox(self) -> dict[str, Any]:
        return self._request("get_inbox", "GET", self._public())

    def create_contact(
        self,
        source_id: str,
        *,
        name: str | None = None,
        phone_number: str | None = None,
        identifier: str | None = None,
        identifier_hash: str | None = None,
        email: str | None = None,
        custom_attributes: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create the contact_inbox for ``source_id``, or return the existing one unchanged."""
        body: dict[str, Any] = {"source_id": source_id}
        for key, value in (
            ("name", name),
            ("phone_number", phone_number),
            ("identifier", identifier),
            ("identifier_hash", identifier_hash),
            ("email", email),
        ):
            if value:
                body[key] = value
        if custom_attributes:
            body["custom_attributes"] = dict(custom_attributes)
        # the same source_id gives the same contact_inbox: safe to repeat
        return self._request("create_contact", "POST", self._public("/contacts"), json=body,
                             idempotent=True)

    def get_contact(self, source_id: str) -> dict[str, Any]:
        return self._request("get_contact", "GET", self._public(f"/contacts/{source_id}"))

    def list_conversations(self, source_id: str) -> list[dict[str, Any]]:
        """All conversations of the contact_inbox, resolved ones included, in no order."""
        result = self._request(
            "list_conversations", "GET", self._public(f"/contacts/{source_id}/conversations")
        )
        return result or []

    def create_conversation(
        self, source_id: str, *, custom_attributes: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        body = {"custom_attributes": dict(custom_attributes)} if custom_attributes else {}
        return self._request(
            "create_conversation",
            "POST",
            self._public(f"/contacts/{source_id}/conversations"),
            json=body,
        )

    def get_conversation_public(self, source_id: str, conversation_id: int) -> dict[str, Any]:
        return self._request(
            "get_conversation",
            "GET",
            self._public(f"/contacts/{source_id}/conversations/{conversation_id}"),
        )

    def create_incoming_message(
        self,
        source_id: str,
        conversation_id: int,
        content: str,
        *,
        attachments: Iterable[Attachment] = (),
        echo_id: str | None = None,
    ) -> dict[str, Any]:
        """Post a message from the contact (the public API can only create ``incoming``)."""
        url = self._public(f"/contacts/{source_id}/conversations/{conversation_id}/messages")
        files = _files(attachments)
        if files:
            data = {"content": content}
            if echo_id:
                data["echo_id"] = echo_id
            return self._request("create_incoming_message", "POST", url, data=data, files=files)
        body: dict[str, Any] = {"content": content}
        if echo_id:
            body["echo_id"] = echo_id
        return self._request("create_incoming_message", "POST", url, json=body)

    def list_messages_public(
        self, source_id: str, conversation_id: int, *, before: int | None = None
    ) -> list[dict[str, Any]]:
        """The latest 20 chat messages (oldest first), or the 20 before message ``before``."""
        result = self._request(
            "list_messages",
            "GET",
            self._public(f"/contacts/{source_id}/conversations/{conversation_id}/messages"),
            params={"before": before} if before else None,
        )
        return result or []

    def toggle_typing_public(self, source_id: str, conversation_id: int, on: bool) -> None:
        self._request(
            "toggle_typing",
            "POST",
            self._public(f"/contacts/{source_id}/conversations/{conversation_id}/toggle_typing"),
            json={"typing_status": "on" if on else "off"},
        )

    # -- Application API (api_access_token) -----------------------------------------------

    def create_message(
        self,
        conversation_id: int,
        content: str,
        *,
        message_type: str = "outgoing",
        private: bool = False,
        source_id: str | None = None,
        content_attributes: Mapping[str, Any] | None = None,
        attachments: Iterable[Attachment] = (),
        token: str = "bot",
    ) -> dict[str, Any]:
        """Create a message as the token's owner (``outgoing`` by the AgentBot by default)."""
        operation = "create_message"
        url = self._app(f"/conversations/{conversation_id}/messages")
        headers = self._auth(token, operation)
        files = _files(attachments)
        body: dict[str, Any] = {
            "content": content,
            "message_type": message_type,
            "private": private,
        }
        if source_id:
            body["source_id"] = source_id
        if content_attributes:
            body["content_attributes"] = dict(content_attributes)
        if files:
            import json as _json

            form = {
                "content": content,
                "message_type": message_type,
                "private": "true" if private else "false",
            }
            if source_id:
                form["source_id"] = source_id
            if content_attributes:
                # Chatwoot accepts content_attributes as a JSON string in multipart forms.
                form["content_attributes"] = _json.dumps(dict(content_attributes))
            return self._request(
                operation, "POST", url, data=form, files=files, headers=headers, token=token
            )
        return self._request(operation, "POST", url, json=body, headers=headers, token=token)

    def toggle_status(
        self, conversation_id: int, status: str, *, token: str = "bot"
    ) -> dict[str, Any]:
        return self._app_call("toggle_status", "POST",
                              f"/conversations/{conversation_id}/toggle_status",
                              json={"status": status}, token=token)

    def get_conversation(self, conversation_id: int, *, token: str = "bot") -> dict[str, Any]:
        return self._app_call("get_conversation", "GET", f"/conversations/{conversation_id}",
                              token=token)

    def get_labels(self, conversation_id: int, *, token: str = "bot") -> list[str]:
        result = self._app_call("get_labels", "GET", f"/conversations/{conversation_id}/labels",
                                token=token)
        return list((result or {}).get("payload", []))

    def set_labels(
        self, conversation_id: int, labels: Iterable[str], *, token: str = "bot"
    ) -> list[str]:
        """Replace the conversation's whole label list (Chatwoot has no 'add one label')."""
        result = self._app_call("set_labels", "POST", f"/conversations/{conversation_id}/labels",
                                json={"labels": list(labels)}, token=token)
        return list((result or {}).get("payload", []))

    def set_custom_attributes(
        self, conversation_id: int, attributes: Mapping[str, Any], *, token: str = "bot"
    ) -> dict[str, Any]:
        """Replace the conversation's whole custom_attributes hash."""
        result = self._app_call("set_custom_attributes", "POST",
                                f"/conversations/{conversation_id}/custom_attributes",
                                json={"custom_attributes": dict(attributes)}, token=token)
        return dict((result or {}).get("custom_attributes", {}))

    def assign(
        self,
        conversation_id: int,
        assignee_id: int | None,
        *,
        assignee_type: str | None = None,
        token: str = "bot",
    ) -> Any:
        body: dict[str, Any] = {"assignee_id": assignee_id}
        if assignee_type:
            body["assignee_type"] = assignee_type
        return self._app_call("assign", "POST", f"/conversations/{conversation_id}/assignments",
                              json=body, token=token)

    def toggle_typing_status(
        self, conversation_id: int, on: bool, *, token: str = "bot"
    ) -> None:
        self._app_call("toggle_typing_status", "POST",
                       f"/conversations/{conversation_id}/toggle_typing_status",
                       json={"typing_status": "on" if on else "off"}, token=token)

    def merge_contacts(self, base_contact_id: int, mergee_contact_id: int) -> Any:
        """``POST /actions/contact_merge`` (user token): the mergee's conversations and
        contact inboxes move to the base contact, and the mergee is deleted."""
        return self._app_call("merge_contacts", "POST", "/actions/contact_merge",
                              json={"base_contact_id": base_contact_id,
                                    "mergee_contact_id": mergee_contact_id}, token="user")

    def list_agents(self) -> list[dict[str, Any]]:
        """The account's agents with ``availability_status`` (user token)."""
        result = self._app_call("list_agents", "GET", "/agents", token="user")
        return list(result or [])

    def get_account(self) -> dict[str, Any]:
        """The account with its ``settings`` (user token)."""
        return dict(self._app_call("get_account", "GET", "", token="user") or {})

    def list_inboxes(self) -> list[dict[str, Any]]:
        """The account's inboxes with their settings (user token); an API inbox carries
        ``inbox_identifier``, ``webhook_url`` and ``lock_to_single_conversation``."""
        result = self._app_call("list_inboxes", "GET", "/inboxes", token="user")
        return list((result or {}).get("payload") or [])

    def update_message_status(
        self,
        conversation_id: int,
        message_id: int,
        status: str,
        *,
        external_error: str | None = None,
    ) -> dict[str, Any]:
        """Report delivered/read/failed for an agent's message (user token, API inboxes only)."""
        body: dict[str, Any] = {"status": status}
        if external_error:
            body["external_error"] = external_error
        return self._app_call("update_message_status", "PATCH",
                              f"/conversations/{conversation_id}/messages/{message_id}",
                              json=body, token="user")

    def close(self) -> None:
        self.session.close()


def _session_for(base_url: str) -> requests.Session:
    """A Session that reads proxy and CA-bundle settings from the environment once.

    With ``trust_env`` on, requests re-reads every environment variable on each request to
    look for proxies: a third of a delivery's CPU in our drain benchmark. The environment
    is read here instead, with the same rules (``HTTPS_PROXY``, ``NO_PROXY``,
    ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``)."""
    session = requests.Session()
    proxies = requests.utils.get_environ_proxies(base_url)
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    session.trust_env = False
    session.proxies.update(proxies)
    if bundle:
        session.verify = bundle
    return session


def _files(attachments: Iterable[Attachment]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("attachments[]", (a.filename, a.data, a.content_type)) for a in attachments]


def _never_sent(exc: requests.ConnectionError) -> bool:
    """True when the connection failed before any byte of the request left."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, (NewConnectionError, NameResolutionError, ConnectionRefusedError)):
            return True
        reason = getattr(cause, "reason", None)
        if isinstance(reason, BaseException) and id(reason) not in seen:
            cause = reason
            continue
        cause = cause.args[0] if cause.args and isinstance(cause.args[0], BaseException) else (
            cause.__cause__ or cause.__context__
        )
    return False


def _detail(response: requests.Response) -> str:
    """Chatwoot's own error text: ``message`` (public API) or ``error`` (Application API)."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:_MAX_DETAIL] if text else response.reason or "error"
    if isinstance(body, dict):
        for key in ("message", "error", "errors"):
            value = body.get(key)
            if value:
                text = value if isinstance(value, str) else "; ".join(map(str, value))
                return text[:_MAX_DETAIL]
    return (response.reason or "error")[:_MAX_DETAIL]


#: Accounts::BaseController#validate_token_api_access's 403 (Chatwoot >= 4.16.0, #14973)
_NO_API_ACCESS = "api access is not enabled for this account"


def _error_for(response: requests.Response, operation: str, token: str | None) -> ChatwootError:
    status = response.status_code
    detail = _detail(response)
    if status in (401, 403):
        if _BOT_NOT_ALLOWED in detail.lower():
            detail += (
                "; AgentBot tokens may only create messages, toggle status/typing/priority, "
                "assign and set labels/custom attributes: this call needs CHATWOOT_API_TOKEN "
                "(a user access token)"
            )
        elif _NO_API_ACCESS in detail.lower():
            detail += ("; this Chatwoot Cloud account's plan has no API access (the "
                       "api_and_webhooks feature, Chatwoot 4.16+): tokens work again on a "
                       "plan that includes it")
        elif "invalid access token" in detail.lower():
            variable = "CHATWOOT_BOT_TOKEN" if token == "bot" else "CHATWOOT_API_TOKEN"
            detail += f"; check {variable}"
        return AuthError(detail, operation=operation, status=status)
    if status == 404:
        return NotFound(detail, operation=operation, status=status)
    if status == 429:
        retry_after = response.headers.get("Retry-After")
        try:
            seconds = float(retry_after) if retry_after else None
        except ValueError:
            seconds = None
        return RateLimited(
            detail, operation=operation, status=status, scope="global", retry_after=seconds
        )
    if status == 422 and _FLOOD in detail.lower():
        return RateLimited(detail, operation=operation, status=status, scope="conversation")
    if status in (400, 409, 413, 422):
        return Rejected(detail, operation=operation, status=status)
    if status >= 500 and operation == "create_contact":
        detail += (
            "; Chatwoot also answers 500 when identifier_hash does not match: "
            "check CHATWOOT_HMAC_TOKEN if identity validation is on"
        )
    return Unavailable(detail, operation=operation, status=status)
