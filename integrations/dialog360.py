"""360dialog (WhatsApp Business API): Cloud API and On-Premise.

* Webhooks: the Cloud API forwards Meta's body (``entry[].changes[].value``); On-Premise
  puts ``contacts``/``messages``/``statuses`` at the top level. Both are read; every
  entry, change, message and status is iterated (never ``[0]``).
* Sending: ``POST {base}/messages`` (Cloud) or ``{base}/v1/messages`` (On-Premise) with
  the ``D360-API-KEY`` header. Since 2026 a user may hide their number behind a username:
  such a contact is a BSUID (``BR.1502…``) and is sent to as ``recipient``.
* Files: ``GET {base}/{media_id}`` gives a ``lookaside.fbsbx.com`` URL; 360dialog serves
  the same path and query from its own host with the API key (the key is never sent to
  Meta's host).
* Echoes: the Cloud API does not echo messages sent through it (they come back only as
  statuses). A Coexistence number also sends ``smb_message_echoes`` for messages typed in
  the WhatsApp Business app: those are ``owner`` events.
* Verification: 360dialog does not sign number webhooks. Add a required header in the
  360dialog Hub (webhook settings) carrying a secret, or put ``?token=<secret>`` in the
  webhook URL, and pass the same ``webhook_secret`` here.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from chatwoot_mirror.client import Attachment
from chatwoot_mirror.identity import ContactIdentity
from chatwoot_mirror.kinds import (
    CONTACTS,
    DELETE,
    EDIT,
    LOCATION,
    ORDER,
    PRODUCT,
    QUIET,
    REACTION,
    STICKER,
    UNSUPPORTED,
)
from chatwoot_mirror.media import MediaError, MediaNotReady, MediaRef
from chatwoot_mirror.outbound import host_of

from ._env import env_flag, env_value
from ._files import as_attachment, kind_of
from ._http import HttpAdapter, ProviderError
from ._payload import (
    dicts,
    digits_of,
    load_json,
    obj,
    other_names,
    seconds,
    skip,
    vcard_file,
    vcards,
)
from ._shared_secret import SharedSecretWebhooks
from .base import MESSAGE, OWNER, STATUS, InboundEvent

CLOUD_URL = "https://waba-v2.360dialog.io"
ON_PREMISE_HOSTS = {"waba.360dialog.io", "waba-sandbox.360dialog.io"}
MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
# Media ids as the APIs hand them out: Cloud API ids are digits ("1234567890123456"),
# On-Premise ids hex with optional dashes ("b1c68f38-8734-4ad3-b4a1-ef0c10d683aa").
_CLOUD_MEDIA_ID = re.compile(r"[0-9]{1,32}")
_ONPREM_MEDIA_ID = re.compile(r"[0-9A-Fa-f][0-9A-Fa-f-]{7,63}")
_BSUID_CHARS = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
#: Graph error codes that say "later", which Cloud API (and 360dialog, passing them on)
#: answers with HTTP 400 (Meta's "WhatsApp error codes": throttling and temporary errors):
#: 2 temporary API issue, 4 too many API calls, 80007 WABA rate limit, 130429 throughput
#: rate limit, 131000 something went wrong, 131016 service unavailable, 131048 spam rate
#: limit, 131056 pair rate limit, 131057 account in maintenance, 133004 server
#: temporarily unavailable. Everything else in a 4xx (invalid recipient, policy, 131047's
#: closed window...) is permanent.
RETRYABLE_CODES = frozenset({2, 4, 80007, 130429, 131000, 131016, 131048, 131056, 131057,
                             133004})

log = logging.getLogger("chatwoot_mirror.integrations.dialog360")


class Dialog360Adapter(SharedSecretWebhooks, HttpAdapter):
    """``Dialog360Adapter(api_key)``; ``base_url`` for On-Premise or the sandbox (detected
    from the host, or say ``on_premise=``)."""

    name = "dialog360"

    def __init__(
        self,
        api_key: str,
        base_url: str = CLOUD_URL,
        *,
        on_premise: bool | None = None,
        webhook_secret: str | None = None,
        secret_header: str = "X-Webhook-Secret",
        insecure: bool = False,
        other_senders: bool = False,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (3.05, 15.0),
    ) -> None:
        super().__init__(session=session, timeout=timeout)
        # Cloud API never sends us a message another tool sent on the number, only its
        # statuses; opt-in, since a host that also sends through its own client would see
        # its messages shown twice
        self.mirrors_other_senders = other_senders
        if not api_key:
            raise ValueError("api_key is empty: copy the channel's API key from the 360dialog Hub")
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        host = urlsplit(self.base_url).hostname or ""
        self.on_premise = host in ON_PREMISE_HOSTS if on_premise is None else on_premise
        self.webhook_secret = webhook_secret
        self.secret_header = secret_header
        self.insecure = insecure

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Dialog360Adapter:
        """``D360_API_KEY`` (required), ``D360_BASE_URL``, ``D360_WEBHOOK_SECRET``,
        ``D360_WEBHOOK_INSECURE``, ``D360_OTHER_SENDERS``."""
        return cls(
            env_value(environ, "D360_API_KEY", "copy the channel's API key from the 360dialog "
                      "Hub (Channels > API key)") or "",
            env_value(environ, "D360_BASE_URL", "", required=False) or CLOUD_URL,
            webhook_secret=env_value(environ, "D360_WEBHOOK_SECRET", "", required=False),
            insecure=env_flag(environ, "D360_WEBHOOK_INSECURE"),
            other_senders=env_flag(environ, "D360_OTHER_SENDERS"),
        )

    def _retryable(self, response: requests.Response) -> bool:
        if super()._retryable(response):
            return True
        try:
            data = response.json()
        except ValueError:
            return "rate limit" in response.text[:2000].lower()
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            code = error.get("code")
            if isinstance(code, str) and code.isdigit():
                code = int(code)
            return code in RETRYABLE_CODES
        # 360dialog's own refusal: "You have exceeded the endpoint rate limit." (HTTP 400)
        text = json.dumps(data).lower() if isinstance(data, (dict, list)) else ""
        return "rate limit" in text

    def _headers(self) -> dict[str, str]:
        return {"D360-API-KEY": self.api_key}

    # -- inbound ------------------------------------------------------------------------------

    def parse(self, headers: Mapping[str, str], body: bytes) -> list[InboundEvent]:
        data = load_json(body, self.name)
        if not isinstance(data, dict):
            return [] if data is None else skip(self.name, "not_an_object")
        if isinstance(data.get("entry"), list):
            events: list[InboundEvent] = []
            for entry in data["entry"]:
                for change in dicts(entry.get("changes") if isinstance(entry, dict) else None):
                    value = change.get("value")
                    if not isinstance(value, dict):
                        continue
                    field = change.get("field")
                    if field == "messages":
                        events.extend(self._value(value))
                    elif field == "smb_message_echoes":
                        events.extend(self._echoes(value))
                    else:
                        skip(self.name, f"field_{str(field)[:40]}")
            return events
        if any(k in data for k in ("messages", "statuses", "errors")):
            return self._value(data)  # On-Premise: the same objects at the top level
        return skip(self.name, "unknown_shape")

    def _value(self, value: dict[str, Any]) -> list[InboundEvent]:
        names: dict[str, str] = {}
        #: each id of a contacts[] entry -> all of that entry's ids (wa_id, user_id): the
        #: same person, whichever the message is from
        same: dict[str, tuple[str, ...]] = {}
        for contact in dicts(value.get("contacts")):
            name = obj(contact.get("profile")).get("name")
            ids = tuple(str(contact[key]) for key in ("wa_id", "user_id") if contact.get(key))
            for one in ids:
                same[one] = ids
                if name:
                    names[one] = str(name)
        events = []
        for message in dicts(value.get("messages")):
            sender = message.get("from") or message.get("from_user_id")
            if not sender:
                skip(self.name, "message_without_sender")
                continue
            event = self._message(MESSAGE, str(sender), message, names.get(str(sender)))
            if event is not None:
                others = [str(message[k]) for k in ("from", "from_user_id") if message.get(k)]
                events.append(replace(event, aliases=other_names(
                    str(sender), [*same.get(str(sender), ()), *others])))
        for status in dicts(value.get("statuses")):
            errors = dicts(status.get("errors"))
            error = None
            if errors:
                first = errors[0]
                details = obj(first.get("error_data")).get("details")
                error = f"{first.get('code')} {details or first.get('title') or ''}".strip()
            events.append(InboundEvent(
                kind=STATUS,
                contact=str(status.get("recipient_id") or status.get("recipient_user_id") or ""),
                message_id=_str(status.get("id")),
                timestamp=seconds(status.get("timestamp")),
                raw_type="status",
                status=_str(status.get("status")),
                error=error,
            ))
        for problem in dicts(value.get("errors")):
            log.warning("360dialog reported an error code=%s title=%s",
                        problem.get("code"), str(problem.get("title"))[:100])
        return events

    def _echoes(self, value: dict[str, Any]) -> list[InboundEvent]:
        events = []
        for echo in dicts(value.get("message_echoes")):
            contact = echo.get("to") or echo.get("to_user_id")
            if contact:
                event = self._message(OWNER, str(contact), echo, None)
                if event is not None:
                    events.append(event)
        return events

    def _message(self, kind: str, contact: str, message: dict[str, Any],
                 name: str | None) -> InboundEvent | None:
        raw_type = str(message.get("type") or "")
        body = obj(message.get(raw_type))
        reply_to = _str(obj(message.get("context")).get("id"))
        shown = _shown(self.name, raw_type, body, message)
        if shown is None:
            return None  # a reaction taken back: nothing to show
        text, shown_as, attachments, target = shown
        if raw_type == "unsupported" and _str(body.get("type")):
            # Meta names the kind it does not deliver (poll_creation, view_once, event...)
            raw_type = str(body["type"])
        return InboundEvent(
            kind=kind, contact=contact, text=text, name=name,
            message_id=_str(message.get("id")), timestamp=seconds(message.get("timestamp")),
            attachments=attachments, raw_type=raw_type,
            expects_reply=shown_as not in QUIET and shown_as != UNSUPPORTED,
            reply_to=target or reply_to, shown_as=shown_as,
        )

    # -- outbound -----------------------------------------------------------------------------

    def _messages_url(self) -> str:
        return self.base_url + ("/v1/messages" if self.on_premise else "/messages")

    def _envelope(self, contact: str | ContactIdentity) -> dict[str, Any]:
        address = digits_of(contact)
        body: dict[str, Any] = {"recipient_type": "individual"}
        if not self.on_premise:
            body["messaging_product"] = "whatsapp"
        if "." in address and address[:2].isalpha() and set(address[:2]) <= _BSUID_CHARS:
            body["recipient"] = address  # a BSUID: the user hides their number
        else:
            body["to"] = address
        return body

    def _send(self, operation: str, body: dict[str, Any]) -> str | None:
        data = self._json(operation, "POST", self._messages_url(), json=body,
                          headers=self._headers())
        messages = data.get("messages") or []
        if messages and isinstance(messages[0], dict):
            return _str(messages[0].get("id"))
        return None

    def send_text(
        self, contact: str | ContactIdentity, text: str, *, reply_to: str | None = None
    ) -> str | None:
        body = self._envelope(contact)
        # On-Premise takes the bare body (as Chatwoot's own 360dialog provider sends it)
        content = {"body": text} if self.on_premise else {"body": text, "preview_url": False}
        body.update(type="text", text=content)
        return self._send("send_text", _quoting(body, reply_to))

    def send_media(
        self,
        contact: str | ContactIdentity,
        url_or_bytes: str | bytes,
        mime_type: str,
        caption: str | None = None,
        filename: str | None = None,
        *,
        reply_to: str | None = None,
    ) -> str | None:
        kind = kind_of(mime_type)
        if isinstance(url_or_bytes, bytes):
            media: dict[str, Any] = {"id": self.upload(url_or_bytes, mime_type, filename)}
        else:
            media = {"link": url_or_bytes}
        if caption and kind != "audio":
            media["caption"] = caption
        if filename and kind == "document":
            media["filename"] = filename
        body = self._envelope(contact)
        body.update({"type": kind, kind: media})
        return self._send("send_media", _quoting(body, reply_to))

    def upload(self, data: bytes, mime_type: str, filename: str | None = None) -> str:
        """Upload a file to 360dialog; its media id."""
        url = self.base_url + ("/v1/media" if self.on_premise else "/media")
        result = self._json(
            "upload_media", "POST", url, headers=self._headers(),
            data={"messaging_product": "whatsapp"},
            files={"file": (filename or "file", data, mime_type)},
        )
        media_id = result.get("id") or ((result.get("media") or [{}])[0]).get("id")
        if not media_id:
            raise ProviderError("no media id in the answer", operation="upload_media")
        return str(media_id)

    def download(self, media: MediaRef, max_bytes: int) -> Attachment:
        # The id goes into a URL path: only the documented shapes, never "../admin".
        shape = _ONPREM_MEDIA_ID if self.on_premise else _CLOUD_MEDIA_ID
        if not shape.fullmatch(media.ref):
            raise MediaError("download_media: the media id is not of the documented shape")
        try:
            return self._download(media, max_bytes)
        except MediaNotReady as exc:
            # Meta has the file before it sends the webhook, so a 404 means gone, not late;
            # and 360dialog blocks callers after 20 4xx downloads in an hour: never again
            raise MediaError(str(exc), retryable=False) from None

    def _download(self, media: MediaRef, max_bytes: int) -> Attachment:
        trusted = (host_of(self.base_url),)
        if self.on_premise:
            data, content_type = self._fetch("download_media",
                                             f"{self.base_url}/v1/media/{media.ref}",
                                             max_bytes, media.size, headers=self._headers(),
                                             trusted=trusted)
            return as_attachment(media, data, content_type)
        try:
            info = self._json("media_url", "GET", f"{self.base_url}/{media.ref}",
                              headers=self._headers())
        except ProviderError as exc:
            raise MediaError(str(exc), retryable=exc.retryable) from None
        if not info.get("url"):
            raise MediaError("media_url: no url in the answer")
        size = info.get("file_size")
        data, content_type = self._fetch(
            "download_media", self._on_our_host(str(info["url"])), max_bytes,
            int(size) if isinstance(size, int) else media.size, headers=self._headers(),
            trusted=trusted,
        )
        mime = media.mime_type or _str(info.get("mime_type"))
        return as_attachment(MediaRef(**{**media.to_dict(), "mime_type": mime}), data,
                             content_type)

    def _on_our_host(self, url: str) -> str:
        """Meta's lookaside URL, served by 360dialog: same path and query, our base host."""
        parts = urlsplit(url)
        base = urlsplit(self.base_url)
        return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _shown(source: str, raw_type: str, body: dict[str, Any], message: dict[str, Any]
           ) -> tuple[str, str | None, tuple[MediaRef, ...], str | None] | None:
    """One Cloud API message object as (text, shown_as, files, the message it concerns),
    from Meta's "Messages webhook reference" (one page per type); ``None`` for a
    reaction taken back."""
    if raw_type == "text":
        said = str(body.get("body") or "")
        # a product enquiry: the customer wrote about a product of the catalog (Meta's
        # "Text messages" reference, context.referred_product)
        product = obj(obj(message.get("context")).get("referred_product"))
        if product.get("product_retailer_id"):
            return (f"{product['product_retailer_id']}\n{said}".strip(), PRODUCT, (), None)
        return said, None, (), None
    if raw_type in MEDIA_TYPES:
        files: tuple[MediaRef, ...] = ()
        if body.get("id"):
            files = (MediaRef(source=source, ref=str(body["id"]), kind=raw_type,
                              mime_type=_str(body.get("mime_type")),
                              filename=_str(body.get("filename"))),)
        return (str(body.get("caption") or ""), STICKER if raw_type == "sticker" else None,
                files, None)
    if raw_type == "location":
        return _location(body), LOCATION, (), None
    if raw_type == "contacts":
        cards = message.get("contacts")
        return _contacts(cards), CONTACTS, vcard_file(vcards(cards)), None
    if raw_type == "interactive":
        reply = obj(body.get(str(body.get("type"))))
        return (str(reply.get("title") or reply.get("body") or reply.get("response_json")
                    or ""), None, (), None)
    if raw_type == "button":
        return str(body.get("text") or body.get("payload") or ""), None, (), None
    if raw_type == "order":
        return _order(body), ORDER, (), None
    if raw_type == "reaction":
        if not body.get("emoji"):
            return None
        return str(body["emoji"]), REACTION, (), _str(body.get("message_id"))
    if raw_type == "edit":  # Coexistence numbers: the customer edited a message
        edited = obj(body.get("message"))
        inner = obj(edited.get(str(edited.get("type") or "text")))
        return (str(inner.get("body") or inner.get("caption") or ""), EDIT, (),
                _str(body.get("original_message_id")))
    if raw_type == "revoke":  # Coexistence numbers: the customer deleted a message
        return "", DELETE, (), _str(body.get("original_message_id"))
    if raw_type == "system":  # "user changed number" and the like: Meta's own words
        return str(body.get("body") or ""), UNSUPPORTED if not body.get("body") else None, \
            (), None
    return "", UNSUPPORTED, (), None


def _order(body: dict[str, Any]) -> str:
    """A catalog order: one line per item, then the total per currency."""
    lines: list[str] = []
    totals: dict[str, float] = {}
    for item in dicts(body.get("product_items")):
        quantity, price = _number(item.get("quantity")) or 0.0, _number(item.get("item_price"))
        currency = str(item.get("currency") or "")
        line = f"{quantity:g} × {item.get('product_retailer_id') or '?'}"
        if price is not None:
            line += f" — {currency} {price:.2f}".rstrip()
            totals[currency] = totals.get(currency, 0.0) + price * quantity
        lines.append(line)
    lines += [f"Total: {currency} {total:.2f}" for currency, total in totals.items()]
    if body.get("text"):
        lines.append(str(body["text"]))
    return "\n".join(lines)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _location(body: dict[str, Any]) -> str:
    lines = [str(body[k]) for k in ("name", "address") if body.get(k)]
    if body.get("latitude") is not None and body.get("longitude") is not None:
        lines.append(f"https://maps.google.com/?q={body['latitude']},{body['longitude']}")
    return "\n".join(lines)


def _contacts(value: Any) -> str:
    lines = []
    for card in dicts(value):
        name = str(obj(card.get("name")).get("formatted_name") or "")
        phones = ", ".join(str(p["phone"]) for p in dicts(card.get("phones")) if p.get("phone"))
        lines.append(" ".join(filter(None, [name, phones])))
    return "\n".join(lines)


def _quoting(body: dict[str, Any], reply_to: str | None) -> dict[str, Any]:
    """A reply on the phone: Cloud API's (and On-Premise's) ``context.message_id``."""
    if reply_to:
        body["context"] = {"message_id": reply_to}
    return body
