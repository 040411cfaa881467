"""uazapi (uazapiGO v2).

* Webhooks: the real deliveries are a flat envelope ``{EventType, message, chat, owner,
  token, ...}``, not the ``{event, instance, data}`` of the published spec. ``messages``
  events carry one message; ``messages_update`` carries receipts for a batch of ids.
  uazapi v1 (the Node build) bodies are refused with a log line.
* Who wrote: ``fromMe=false`` is the customer; ``fromMe=true, wasSentByApi=false`` was
  typed on the phone or WhatsApp Web (an ``owner`` event); ``fromMe=true,
  wasSentByApi=true`` is an echo of a ``/send/*`` call (ours carry our ``track_source``).
  The customer is ``message.chatid``; ``sender`` is a LID and, on ``fromMe`` messages,
  the instance owner.
* Groups are skipped unless ``include_groups=True``. ``messageTimestamp`` is in ms.
* Sending: ``POST {base}/send/text`` and ``/send/media`` with the ``token`` header.
  Files: ``POST {base}/message/download`` returns a link (kept about two days).
* Verification: every webhook carries the instance token; it must match ours.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import uuid
from collections.abc import Mapping
from typing import Any

import requests

from chatwoot_mirror.client import Attachment
from chatwoot_mirror.identity import ContactIdentity
from chatwoot_mirror.kinds import (
    CONTACTS,
    EDIT,
    LOCATION,
    ORDER,
    POLL,
    PRODUCT,
    QUIET,
    REACTION,
    STICKER,
    UNSUPPORTED,
)
from chatwoot_mirror.media import MediaError, MediaRef, MediaTooLarge
from chatwoot_mirror.outbound import host_of
from chatwoot_mirror.untrusted import UntrustedInput, parse_json

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
)
from .base import ECHO, INTEGRATION, MESSAGE, OWNER, STATUS, InboundEvent

TRACK_SOURCE = "chatwoot-mirror"
_MEDIA_KINDS = {
    "image": "image", "video": "video", "gif": "video", "ptv": "video", "audio": "audio",
    "ptt": "audio", "myaudio": "audio", "document": "document", "sticker": "sticker",
    "user_created_sticker": "sticker",
}

log = logging.getLogger("chatwoot_mirror.integrations.uazapi")


class UazapiAdapter(HttpAdapter):
    """``UazapiAdapter("https://acme.uazapi.com", instance_token)``."""

    name = "uazapi"

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        include_groups: bool = False,
        webhook_secret: str | None = None,
        track_source: str = TRACK_SOURCE,
        typing_delay_ms: int = 0,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (3.05, 15.0),
    ) -> None:
        super().__init__(session=session, timeout=timeout)
        if not base_url or not token:
            raise ValueError("base_url and token are required: the instance's server URL "
                             "and token from the uazapi panel")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.include_groups = include_groups
        self.webhook_secret = webhook_secret
        self.track_source = track_source
        self.typing_delay_ms = typing_delay_ms


    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> UazapiAdapter:
        """``UAZAPI_URL`` and ``UAZAPI_TOKEN`` (required), ``UAZAPI_INCLUDE_GROUPS``,
        ``UAZAPI_WEBHOOK_SECRET``."""
        return cls(
            env_value(environ, "UAZAPI_URL", "the instance's server, e.g. "
                      "https://acme.uazapi.com") or "",
            env_value(environ, "UAZAPI_TOKEN", "the instance token from the uazapi panel") or "",
            include_groups=env_flag(environ, "UAZAPI_INCLUDE_GROUPS"),
            webhook_secret=env_value(environ, "UAZAPI_WEBHOOK_SECRET", "", required=False),
        )

    def _headers(self) -> dict[str, str]:
        return {"token": self.token}

    # -- inbound ------------------------------------------------------------------------------

    def verify(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str] | None = None
    ) -> bool:
        """uazapi signs nothing and sends no header we choose; its webhook URL can carry
        our own ``?token=<webhook_secret>``, checked before the body is even parsed. The
        instance token every payload carries is checked too (and alone, without a
        webhook secret: the body is then parsed first, within the size limit)."""
        if self.webhook_secret:
            given_secret = (query or {}).get("token") or ""
            if not hmac.compare_digest(given_secret.encode(), self.webhook_secret.encode()):
                return False
        try:
            data = parse_json(body)
        except UntrustedInput:
            return False
        given = data.get("token") if isinstance(data, dict) else None
        return isinstance(given, str) and hmac.compare_digest(given.encode(),
                                                              self.token.encode())

    def parse(self, headers: Mapping[str, str], body: bytes) -> list[InboundEvent]:
        data = load_json(body, self.name)
        if not isinstance(data, dict):
            return [] if data is None else skip(self.name, "not_an_object")
        event_type = data.get("EventType")
        if event_type == "messages" and isinstance(data.get("message"), dict):
            event = self._message(data["message"], obj(data.get("chat")))
            return [event] if event is not None else []
        if event_type == "messages_update":
            return self._receipts(data)
        if event_type == "connection":
            instance = obj(data.get("instance"))
            log.info("uazapi connection status=%s", str(instance.get("status"))[:30])
            return []
        if "event" in data and "data" in data:
            return skip(self.name, "uazapi_v1_body_unsupported")
        return skip(self.name, f"event_{str(event_type)[:40]}")

    def _message(self, message: dict[str, Any], chat: dict[str, Any]) -> InboundEvent | None:
        chatid = str(message.get("chatid") or chat.get("wa_chatid") or "")
        if not chatid:
            skip(self.name, "message_without_chat")
            return None
        is_group = bool(message.get("isGroup")) or chatid.endswith("@g.us")
        if is_group and not self.include_groups:
            log.debug("uazapi group message skipped")
            return None
        from_me = bool(message.get("fromMe"))
        if not from_me:
            kind = MESSAGE
        elif not message.get("wasSentByApi"):
            kind = OWNER  # typed on the phone or WhatsApp Web
        elif message.get("track_source") == self.track_source:
            kind = ECHO  # our own /send/* call, mirrored when we sent it
        else:
            kind = INTEGRATION  # another tool on this instance (a campaign sender, n8n)
        content = message.get("content")
        content = content if isinstance(content, dict) else {"text": content}
        text = str(message.get("text") or content.get("text") or "")
        media_type = str(message.get("mediaType") or "")
        message_type = str(message.get("messageType") or "")
        raw_type = media_type or str(message.get("type") or message_type)
        attachments: tuple[MediaRef, ...] = ()
        message_id = str(message.get("messageid") or message.get("id") or "") or None
        reply_to = _id(message.get("quoted"))
        shown_as: str | None = None
        sticker = "sticker" in media_type.lower() or "sticker" in message_type.lower()
        if message.get("type") == "reaction":
            if not text:
                return None  # a reaction taken back
            shown_as, reply_to = REACTION, _id(message.get("reaction"))
        elif _id(message.get("edited")):
            shown_as, reply_to = EDIT, _id(message.get("edited"))
        elif (media_type in _MEDIA_KINDS or sticker) and message_id:
            text = str(content.get("caption") or text)
            size = content.get("fileLength")
            attachments = (MediaRef(
                source=self.name, ref=message_id,
                kind="sticker" if sticker else _MEDIA_KINDS[media_type],
                mime_type=_str(content.get("mimetype")), filename=_str(content.get("fileName")),
                size=int(size) if isinstance(size, (int, float)) else None,
            ),)
            shown_as = STICKER if sticker else None
        elif media_type == "location":
            lat, lng = content.get("degreesLatitude"), content.get("degreesLongitude")
            text = "\n".join(filter(None, [
                str(content.get("name") or ""), str(content.get("address") or ""),
                f"https://maps.google.com/?q={lat},{lng}" if lat is not None else ""]))
            shown_as = LOCATION
        elif message_type == "PollUpdateMessage" or (message.get("type") == "poll"
                                                      and message.get("vote")):
            text, shown_as = str(message.get("vote") or ""), POLL
        elif media_type in ("list_response", "buttons_response") or message_type in (
                "ListResponseMessage", "ButtonsResponseMessage"):
            text = str(message.get("vote") or content.get("title") or text
                       or message.get("buttonOrListid") or "")
        elif message_type == "OrderMessage":
            text, shown_as = _order(content), ORDER
        elif message_type == "ProductMessage":
            text, shown_as = _product(content), PRODUCT
        elif media_type == "vcard" or message_type in ("ContactMessage",
                                                        "ContactsArrayMessage"):
            text, shown_as = text or str(content.get("displayName") or ""), CONTACTS
            card = content.get("vcard")
            attachments = vcard_file(card) if isinstance(card, str) else ()
        elif not text:
            shown_as = UNSUPPORTED
        sender_name = message.get("senderName")
        if is_group and kind == MESSAGE and sender_name:
            text = f"{sender_name}: {text}"  # the group is the contact; say who spoke
        if from_me or is_group:
            name = chat.get("name") or chat.get("wa_name") or message.get("groupName")
        else:
            name = sender_name or chat.get("wa_name") or chat.get("name")
        return InboundEvent(
            kind=kind, contact=chatid, text=text, name=_str(name) or None,
            message_id=message_id, timestamp=_ms(message.get("messageTimestamp")),
            attachments=attachments, raw_type=raw_type or message_type,
            expects_reply=shown_as not in QUIET and shown_as != UNSUPPORTED,
            aliases=() if is_group else _aliases(chatid, message, chat, from_me),
            reply_to=reply_to, shown_as=shown_as,
        )

    def _receipts(self, data: dict[str, Any]) -> list[InboundEvent]:
        event = obj(data.get("event"))
        ids = event.get("MessageIDs")
        if not isinstance(ids, list):
            return skip(self.name, "receipt_without_ids")
        state = str(data.get("state") or event.get("Type") or "").lower()
        stamp = event.get("Timestamp")
        return [
            InboundEvent(kind=STATUS, contact=str(event.get("Chat") or ""), message_id=str(i),
                         timestamp=seconds(stamp), raw_type="receipt", status=state)
            for i in ids if i
        ]

    # -- outbound -----------------------------------------------------------------------------

    def _post(self, operation: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._json(operation, "POST", self.base_url + path, json=body,
                          headers=self._headers())

    #: uazapi keeps the ``track_id`` we send with the message and finds it again
    #: (``POST /message/find``): a send tried again after a crash is looked up first
    tracks_sends = True

    def sent_before(self, contact: str | ContactIdentity, track_id: str) -> str | None:
        found = self._post("find_sent", "/message/find",
                           {"track_source": self.track_source, "track_id": track_id,
                            "limit": 1})
        for message in dicts(found.get("messages")):
            if message.get("track_id") == track_id and message.get("messageid"):
                return str(message["messageid"])
        return None

    def send_text(
        self, contact: str | ContactIdentity, text: str, *, reply_to: str | None = None,
        track_id: str | None = None,
    ) -> str | None:
        body: dict[str, Any] = {
            "number": digits_of(contact), "text": text,
            "track_source": self.track_source, "track_id": track_id or uuid.uuid4().hex,
        }
        if self.typing_delay_ms:
            body["delay"] = self.typing_delay_ms
        if reply_to:
            body["replyid"] = reply_to
        return _str(self._post("send_text", "/send/text", body).get("messageid"))

    def send_media(
        self,
        contact: str | ContactIdentity,
        url_or_bytes: str | bytes,
        mime_type: str,
        caption: str | None = None,
        filename: str | None = None,
        *,
        reply_to: str | None = None,
        track_id: str | None = None,
    ) -> str | None:
        kind = kind_of(mime_type)
        file = (base64.b64encode(url_or_bytes).decode("ascii")
                if isinstance(url_or_bytes, bytes) else url_or_bytes)
        body: dict[str, Any] = {
            "number": digits_of(contact), "type": kind, "file": file,
            "track_source": self.track_source, "track_id": track_id or uuid.uuid4().hex,
        }
        if caption and kind != "audio":
            body["text"] = caption
        if filename and kind == "document":
            body["docName"] = filename
        if reply_to:
            body["replyid"] = reply_to
        return _str(self._post("send_media", "/send/media", body).get("messageid"))

    def download(self, media: MediaRef, max_bytes: int) -> Attachment:
        if media.size is not None and media.size > max_bytes:
            raise MediaTooLarge(media.size)
        try:
            info = self._post("download_media", "/message/download",
                              {"id": media.ref, "return_link": True})
        except ProviderError as exc:
            raise MediaError(str(exc), retryable=exc.retryable) from None
        mime = media.mime_type or _str(info.get("mimetype"))
        ref = MediaRef(**{**media.to_dict(), "mime_type": mime})
        if info.get("base64Data"):
            try:
                data = base64.b64decode(str(info["base64Data"]), validate=False)
            except (binascii.Error, ValueError):
                raise MediaError("download_media: invalid base64 in the answer") from None
            if len(data) > max_bytes:
                raise MediaTooLarge(len(data))
            return as_attachment(ref, data, mime)
        if not info.get("fileURL"):
            raise MediaError("download_media: no fileURL in the answer")
        # the link is public (no token): never send the instance token to it. It is the
        # provider's choice of URL: only the uazapi server itself may be private.
        data, content_type = self._fetch("download_media", str(info["fileURL"]), max_bytes,
                                         media.size, trusted=(host_of(self.base_url),))
        return as_attachment(ref, data, content_type)


def _str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _id(value: Any) -> str | None:
    """A WhatsApp message id in ``quoted``/``reaction``/``edited`` (``""`` when none)."""
    return value if isinstance(value, str) and value and " " not in value else None


def _ms(value: Any) -> float | None:
    try:
        return float(value) / 1000.0
    except (TypeError, ValueError):
        return None


def _money(amount1000: Any, currency: Any) -> str:
    """WhatsApp's ``…Amount1000`` (thousandths) as ``BRL 159.30`` (``""`` when absent)."""
    if isinstance(amount1000, bool) or not isinstance(amount1000, (int, float, str)):
        return ""
    try:
        value = float(amount1000) / 1000
    except ValueError:
        return ""
    return f"{currency if isinstance(currency, str) else ''} {value:.2f}".strip()


def _order(content: dict[str, Any]) -> str:
    """A catalog order as whatsmeow's ``OrderMessage`` carries it: its title and item
    count, the total (the items themselves are not in the message: WhatsApp fetches them
    from the catalog), and the customer's note."""
    count = content.get("itemCount")
    title = str(content.get("orderTitle") or content.get("orderID") or "").strip()
    lines = [f"{title} ({count})" if isinstance(count, int) and title else title,
             (f"Total: {total}" if (total := _money(content.get("totalAmount1000"),
                                                     content.get("totalCurrencyCode")))
              else ""),
             str(content.get("message") or "").strip()]
    return "\n".join(line for line in lines if line)


def _product(content: dict[str, Any]) -> str:
    """A product shared from a catalog (whatsmeow's ``ProductMessage``): its title, price,
    retailer id and link, and what the customer wrote with it."""
    product = obj(content.get("product"))
    lines = [str(product.get("title") or product.get("retailerID")
                 or product.get("productID") or "").strip(),
             _money(product.get("salePriceAmount1000") or product.get("priceAmount1000"),
                    product.get("currencyCode")),
             str(product.get("url") or "").strip(),
             str(content.get("body") or "").strip()]
    return "\n".join(line for line in lines if line)


def _aliases(chatid: str, message: dict[str, Any], chat: dict[str, Any],
             from_me: bool) -> tuple[str, ...]:
    """The customer's other names in a message: the chat's LID or phone JID, and, on the
    customer's own messages, the sender's (on ``fromMe`` ones ``sender*`` are the
    instance owner, never the customer)."""
    fields = [message.get("chatlid"), chat.get("wa_chatid"), chat.get("wa_chatlid")]
    if not from_me:
        fields += [message.get("sender_pn"), message.get("sender_lid"), message.get("sender")]
    return other_names(chatid, fields)
