"""Z-PRO (ZDG), a Whaticket-family platform. **Partly inferred: check against your tenant.**

Confirmed in Z-PRO's public help centre: an API token made under Admin > API, sent as
``Authorization: Bearer <token>``; endpoint names (SendMessageAPIText,
SendMessageAPIFileURL, ...); tickets Aberto / Pendente / Fechado. Not public, and taken
from the open-source relatives Z-PRO most likely shares conventions with (Izing, Whaticket
SaaS, Z-PRO-compatible front ends), hence configurable here:

* send text: ``POST {base}/v2/api/external/{api_id}`` with ``{body, number, externalKey,
  isClosed}`` (``send_path``); a file by URL: ``POST .../url`` with ``{mediaUrl, body,
  number, externalKey}`` (``media_path``); the answer has no message id (Izing queues the
  send), so ``externalKey`` is the id we return and find again in status callbacks;
* webhooks: a connection's message webhook ``{mensagem, sender, fromMe, chamadoId,
  ticketData{...}}``, and Izing-style callbacks ``{type: "hookMessageStatus", ack,
  messageId, number, externalKey}`` / ``{type: "hookSessionStatus", ...}``.

Neither webhook is signed: put ``?token=<secret>`` in the URL you give Z-PRO and pass the
same ``webhook_secret``. A ``fromMe`` message is our own send when we sent that text to
that number in the last five minutes, otherwise a person typing in Z-PRO (``owner``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import requests

from chatwoot_mirror.identity import ContactIdentity
from chatwoot_mirror.kinds import CONTACTS, LOCATION, UNSUPPORTED, WITHHELD
from chatwoot_mirror.media import MediaRef
from chatwoot_mirror.scoped import ScopedValues

from ._echoes import RecentSends
from ._env import env_flag, env_value
from ._http import HttpAdapter
from ._payload import digits_of, load_json, obj, other_names, skip, vcard_file, vcard_summary
from ._shared_secret import SharedSecretWebhooks
from .base import ECHO, MESSAGE, OWNER, STATUS, InboundEvent

#: Izing's ack levels (-1 invalid number, -2 session error, then WhatsApp's)
ACKS = {-2: "failed", -1: "failed", 0: "pending", 1: "sent", 2: "delivered", 3: "read",
        4: "played"}

log = logging.getLogger("chatwoot_mirror.integrations.zpro")


class ZproAdapter(SharedSecretWebhooks, HttpAdapter):
    """``ZproAdapter("https://api.zpro.example.com", api_id, token, webhook_secret=...)``."""

    name = "zpro"

    def __init__(
        self,
        base_url: str,
        api_id: str,
        token: str,
        *,
        send_path: str = "/v2/api/external/{api_id}",
        media_path: str = "/v2/api/external/{api_id}/url",
        close_ticket: bool = False,
        webhook_secret: str | None = None,
        insecure: bool = False,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (3.05, 15.0),
    ) -> None:
        super().__init__(session=session, timeout=timeout)
        if not (base_url and api_id and token):
            raise ValueError("base_url, api_id and token are required (Z-PRO: Admin > API)")
        self.base_url = base_url.rstrip("/")
        self.api_id = api_id
        self.token = token
        self.send_path = send_path
        self.media_path = media_path
        self.close_ticket = close_ticket
        self.webhook_secret = webhook_secret
        self.insecure = insecure
        self.secret_header = "X-Webhook-Token"
        self.recent = RecentSends()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ZproAdapter:
        """``ZPRO_URL``, ``ZPRO_API_ID``, ``ZPRO_TOKEN`` (required), ``ZPRO_SEND_PATH``,
        ``ZPRO_MEDIA_PATH``, ``ZPRO_WEBHOOK_SECRET``, ``ZPRO_WEBHOOK_INSECURE``."""
        hint = "Z-PRO: Admin > API (the API's id, token and your backend's URL)"
        return cls(
            env_value(environ, "ZPRO_URL", hint) or "",
            env_value(environ, "ZPRO_API_ID", hint) or "",
            env_value(environ, "ZPRO_TOKEN", hint) or "",
            send_path=env_value(environ, "ZPRO_SEND_PATH", "", required=False)
            or "/v2/api/external/{api_id}",
            media_path=env_value(environ, "ZPRO_MEDIA_PATH", "", required=False)
            or "/v2/api/external/{api_id}/url",
            webhook_secret=env_value(environ, "ZPRO_WEBHOOK_SECRET", "", required=False),
            insecure=env_flag(environ, "ZPRO_WEBHOOK_INSECURE"),
        )

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def _url(self, path: str) -> str:
        return self.base_url + path.format(api_id=self.api_id)

    # -- inbound ------------------------------------------------------------------------------

    def parse(self, headers: Mapping[str, str], body: bytes) -> list[InboundEvent]:
        data = load_json(body, self.name)
        if not isinstance(data, dict):
            return [] if data is None else skip(self.name, "not_an_object")
        kind = data.get("type")
        if kind == "hookMessageStatus":
            given = data.get("ack")
            ack = given if isinstance(given, int) else 99
            # Izing's negative acks, as codes the mirror explains to agents
            code = {-1: "invalid_number", -2: "session_error"}.get(ack)
            words = str(data["error"])[:200] if data.get("error") else ""
            return [InboundEvent(
                kind=STATUS, contact=str(data.get("number") or ""),
                message_id=str(data.get("externalKey") or data.get("messageId") or "") or None,
                raw_type=kind, status=ACKS.get(ack, "unknown"),
                error=" ".join(filter(None, [code, words])) or None,
            )]
        if kind == "hookSessionStatus":
            log.info("zpro session status=%s", str(data.get("status"))[:30])
            return []
        # Whaticket leaves ``mensagem`` out when the message has no text (a photo without
        # a caption): the ticket's id still says a message came
        if data.get("sender") and ("mensagem" in data or "chamadoId" in data):
            return self._message(data)
        return skip(self.name, f"unknown_shape_{str(kind)[:30]}")

    def _message(self, data: dict[str, Any]) -> list[InboundEvent]:
        if data.get("isGroup"):
            return skip(self.name, "group_message")
        contact = str(data["sender"])
        said = data.get("mensagem")
        text = said if isinstance(said, str) else ""
        ticket = obj(data.get("ticketData"))
        if data.get("fromMe"):
            kind = ECHO if self.recent.pop(digits_of(contact), text) else OWNER
        else:
            kind = MESSAGE
        shown, shown_as, files = _shown(text)
        # No message id in this webhook: the ticket, its update time and the text make one,
        # so a redelivered webhook is recognised.
        fingerprint = hashlib.sha256(
            json.dumps([data.get("chamadoId"), ticket.get("updatedAt"), text]).encode()
        ).hexdigest()[:24]
        return [InboundEvent(
            kind=kind, contact=contact, text=shown,
            name=str(data.get("name") or "") or None,
            message_id=f"zpro-{fingerprint}", raw_type="message",
            attachments=files, shown_as=shown_as,
            expects_reply=shown_as not in (WITHHELD, UNSUPPORTED),
            aliases=_aliases(contact, data, ticket),
        )]

    # -- outbound -----------------------------------------------------------------------------

    def share_state(self, values: Callable[[str], ScopedValues]) -> None:
        # an echo may reach another host than the one that sent the message
        self.recent.share(values(f"echo:{self.name}"))

    def send_text(
        self, contact: str | ContactIdentity, text: str, *, reply_to: str | None = None
    ) -> str | None:
        # Z-PRO's send API has no quote field (its API docs): a reply goes out as a plain
        # message, and Chatwoot still shows the agent's quote
        number = digits_of(contact)
        key = f"chatwoot-mirror-{uuid.uuid4().hex[:16]}"
        self.recent.add(number, text)
        self._json("send_text", "POST", self._url(self.send_path), headers=self._headers(),
                   json={"body": text, "number": number, "externalKey": key,
                         "isClosed": self.close_ticket})
        return key

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
        number = digits_of(contact)
        key = f"chatwoot-mirror-{uuid.uuid4().hex[:16]}"
        if isinstance(url_or_bytes, bytes):
            self._json("send_media", "POST", self._url(self.send_path), headers=self._headers(),
                       data={"body": caption or "", "number": number, "externalKey": key},
                       files={"media": (filename or "file", url_or_bytes, mime_type)})
        else:
            self._json("send_media", "POST", self._url(self.media_path),
                       headers=self._headers(),
                       json={"mediaUrl": url_or_bytes, "body": caption or "", "number": number,
                             "externalKey": key})
        return key


#: Whaticket's rendering of a location (``getBodyMessage``'s ``msgLocation``: a base64
#: thumbnail, then a Maps link) and of a live location
_MAPS = re.compile(r"https://maps\.google\.com/maps\?q=(-?[\d.]+)%2C(-?[\d.]+)")
_LIVE = re.compile(r"^Latitude: (-?[\d.]+) - Longitude: (-?[\d.]+)$")


def _shown(text: str) -> tuple[str, str | None, tuple[MediaRef, ...]]:
    """What a Whaticket-family ``mensagem`` is, as :func:`getBodyMessage` wrote it
    (INFERENCE for Z-PRO: Whaticket SaaS's ``wbotMessageListener.ts``): a contact card is
    its raw vCard, a location a data-URL thumbnail and a Maps link, a message without text
    (a photo without caption, a sticker's file) no ``mensagem`` at all. The webhook never
    carries files."""
    if not text.strip():
        return "", WITHHELD, ()
    card = vcard_file(text)  # () unless the text is a vCard
    if card:
        return vcard_summary(text), CONTACTS, card
    found = _MAPS.search(text) or _LIVE.match(text.strip())
    if found:
        # the thumbnail (kilobytes of base64) is of no use to an agent: the link is
        return f"https://maps.google.com/?q={found[1]},{found[2]}", LOCATION, ()
    return text, None, ()


def _aliases(contact: str, data: dict[str, Any], ticket: dict[str, Any]) -> tuple[str, ...]:
    """The customer's other names in a Whaticket-style webhook: the ticket contact's
    number when it differs from ``sender`` (a LID beside the phone), and the provider's
    own contact id, scoped by company (``zpro:<company>:<contact>``): one record per
    person in the Whaticket family, whatever WhatsApp calls them (INFERENCE, see
    research/providers.md section 4)."""
    person = obj(ticket.get("contact"))
    company, contact_id = data.get("companyId"), ticket.get("contactId") or person.get("id")
    scoped = None
    if isinstance(contact_id, int) and not isinstance(contact_id, bool):
        scoped = f"zpro:{company if isinstance(company, int) else 0}:{contact_id}"
    return other_names(contact, [person.get("number"), scoped])
