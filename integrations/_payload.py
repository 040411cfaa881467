"""Careful readers of provider payloads: headers, JSON bodies, addresses, timestamps."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from chatwoot_mirror.identity import ContactIdentity
from chatwoot_mirror.media import INLINE_FILE, INLINE_MAX, MediaRef
from chatwoot_mirror.untrusted import UntrustedInput, parse_json

log = logging.getLogger("chatwoot_mirror.integrations.payload")


def header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def load_json(body: bytes, provider: str) -> Any:
    """The webhook's JSON, or ``None`` (logged once) when it is not JSON we will read
    (see :func:`chatwoot_mirror.untrusted.parse_json`: too deep, NaN, bad UTF-8)."""
    try:
        return parse_json(body)
    except UntrustedInput as exc:
        log.warning("webhook skipped provider=%s reason=%s", provider, exc.reason)
        return None


def obj(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one: a field of the wrong type
    reads as absent instead of failing the whole webhook."""
    return value if isinstance(value, dict) else {}


def dicts(value: Any) -> list[dict[str, Any]]:
    """The objects in ``value`` when it is a JSON array (others dropped), else none."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def other_names(contact: str, values: Iterable[Any]) -> tuple[str, ...]:
    """The other names a provider gives the customer in one event
    (:attr:`InboundEvent.aliases`): the distinct non-blank strings among ``values``, in
    order, other than ``contact``."""
    names: list[str] = []
    for value in values:
        if isinstance(value, str):
            value = value.strip()
            if value and value != contact and value not in names:
                names.append(value)
    return tuple(names)


def vcards(cards: Any) -> str:
    """Cloud API ``contacts[]`` (name, phones, emails, org) as vCard 3.0 text, for
    agents to save the card (RFC 2426; ``;``, ``,`` and newlines escaped)."""
    out: list[str] = []
    for card in cards if isinstance(cards, list) else []:
        if not isinstance(card, dict):
            continue
        name = obj(card.get("name"))
        full = str(name.get("formatted_name") or name.get("first_name") or "")
        lines = ["BEGIN:VCARD", "VERSION:3.0", f"FN:{_vtext(full)}",
                 f"N:{_vtext(str(name.get('last_name') or ''))};"
                 f"{_vtext(str(name.get('first_name') or full))};;;"]
        for phone in dicts(card.get("phones")):
            if phone.get("phone"):
                wa_id = "".join(ch for ch in str(phone.get("wa_id") or "") if ch.isdigit())
                lines.append(f"TEL;TYPE={_vtext(str(phone.get('type') or 'CELL'))}"
                             f"{';waid=' + wa_id if wa_id else ''}:{_vtext(str(phone['phone']))}")
        for email in dicts(card.get("emails")):
            if email.get("email"):
                lines.append(f"EMAIL:{_vtext(str(email['email']))}")
        org = obj(card.get("org"))
        if org.get("company"):
            lines.append(f"ORG:{_vtext(str(org['company']))}")
        lines.append("END:VCARD")
        out.append("\r\n".join(lines))
    return "\r\n".join(out)


def vcard_file(card: str) -> tuple[MediaRef, ...]:
    """A contact card's vCard text as the ``contact.vcf`` agents can save (none when
    ``card`` is not a vCard)."""
    if not card.lstrip().upper().startswith("BEGIN:VCARD"):
        return ()
    return (MediaRef(source=INLINE_FILE, ref=card[:INLINE_MAX], kind="document",
                     mime_type="text/vcard", filename="contact.vcf"),)


def vcard_summary(card: str) -> str:
    """The names and phones of a vCard's contacts, one line each (``FN`` and ``TEL``
    properties, parameters and item groups such as ``item1.TEL;waid=...`` ignored)."""
    people: list[list[str]] = []
    for line in card.splitlines()[:500]:
        name, _, value = line.partition(":")
        prop = name.split(";")[0].rsplit(".", 1)[-1].strip().upper()
        value = value.strip().replace("\\,", ",").replace("\\;", ";")
        if prop == "BEGIN":
            people.append([])
        elif people and prop in ("FN", "TEL") and value:
            people[-1].append(value)
    return "\n".join(" ".join(person) for person in people if person)


def _vtext(value: str) -> str:
    return (value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r", "").replace("\n", "\\n"))[:500]


def skip(provider: str, reason: str) -> list[Any]:
    log.info("webhook skipped provider=%s reason=%s", provider, reason)
    return []


def digits_of(contact: str | ContactIdentity) -> str:
    """The address a provider needs: the number exactly as WhatsApp gave it (Brazilian
    numbers keep or lack the 9th digit as they came) when we have it, else E.164 digits."""
    if isinstance(contact, ContactIdentity):
        raw = contact.raw or contact.identifier
        if contact.kind == "phone" and not raw.replace("+", "").split("@")[0].isdigit():
            raw = contact.identifier  # a formatted number such as "+55 (11) 9..."
        contact = raw
    text = str(contact).strip()
    if "@" in text:
        user, _, domain = text.partition("@")
        if domain in ("s.whatsapp.net", "c.us"):
            return user.split(":", 1)[0]
        return text  # group and LID JIDs are sent to as they are
    return "".join(ch for ch in text if ch.isalnum() or ch == ".")


def seconds(value: Any) -> float | None:
    """A provider's timestamp (a number, or digits in a string) as float seconds."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
