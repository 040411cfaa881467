"""Contact keys: one stable key per person, whatever form the host hands us.

The key doubles as the Chatwoot contact_inbox ``source_id``. Chatwoot reads that
``source_id`` on public ``POST /contacts`` and returns the existing contact_inbox
when it knows it, which is what makes contact creation idempotent. Rails path
segments cannot hold ``.``, ``/`` or ``?``, so keys use ``[A-Za-z0-9_-]`` only.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

_FORMATTING = re.compile(r"[\s().\-/]")
_BSUID = re.compile(r"^[A-Z]{2}\.[A-Za-z0-9]+$")
_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PHONE_JID_DOMAINS = {"c.us", "s.whatsapp.net"}


@dataclass(frozen=True)
class ContactIdentity:
    """Who a message is from, in the forms Chatwoot needs.

    ``key`` is stable for a person and is used as the contact_inbox ``source_id``;
    ``phone_number`` is E.164 (``+`` and digits) or ``None`` when there is no phone
    (a BSUID-only user, a group); ``identifier`` is the Chatwoot contact identifier.
    """

    key: str
    kind: str  # "phone", "bsuid", "group", "lid" or "opaque"
    identifier: str
    phone_number: str | None = None
    raw: str = ""

    @property
    def source_id(self) -> str:
        return self.key

    def to_json(self) -> str:
        return json.dumps({"key": self.key, "kind": self.kind, "identifier": self.identifier,
                           "phone_number": self.phone_number, "raw": self.raw})

    @classmethod
    def from_json(cls, text: str) -> ContactIdentity:
        return cls(**json.loads(text))


def identify(
    contact: object,
    *,
    br_ninth_digit: bool = True,
    default_country_code: str | None = None,
) -> ContactIdentity:
    """Turn whatever the host has (phone, JID, ``wa_id``, BSUID) into a :class:`ContactIdentity`.

    ``br_ninth_digit``: Brazilian mobiles written without the ninth digit
    (``55 11 8765-4321``, as older WhatsApp JIDs carry them) map to the same key
    as ``55 11 98765-4321``. ``default_country_code``: a bare national number
    (no ``+``, at most 11 digits, not already starting with that code) gets it
    prepended; numbers starting with a trunk ``0`` lose it first.

    Raises ``ValueError`` for an empty contact.
    """
    raw = str(contact).strip() if contact is not None else ""
    if not raw:
        raise ValueError("contact is empty: pass a phone number, WhatsApp JID or user id")

    if "@" in raw:
        user, _, domain = raw.partition("@")
        user = user.split(":", 1)[0]  # multi-device JIDs: 5511...:12@s.whatsapp.net
        domain = domain.lower()
        if domain in _PHONE_JID_DOMAINS and user.isdigit():
            return _phone(user, raw, br_ninth_digit)
        if domain == "g.us" and _SAFE.match(user):
            return ContactIdentity(key=f"wag-{user}", kind="group", identifier=raw, raw=raw)
        if domain == "lid" and user.isdigit():
            return ContactIdentity(key=f"lid-{user}", kind="lid", identifier=raw, raw=raw)
        return _opaque(raw)

    if _BSUID.match(raw):
        # BSUIDs ("BR.1502576394655843") have exactly one dot; "_" never occurs in them,
        # so swapping it in keeps keys distinct.
        return ContactIdentity(
            key="bsuid-" + raw.replace(".", "_"), kind="bsuid", identifier=raw, raw=raw
        )

    compact = _FORMATTING.sub("", raw)
    international = compact.startswith("+")
    digits = compact.lstrip("+")
    if digits.isdigit():
        if not international and default_country_code:
            national = digits.lstrip("0") if digits.startswith("0") else digits
            if digits.startswith("0") or (
                len(digits) <= 11 and not digits.startswith(default_country_code)
            ):
                digits = default_country_code + national
        if 7 <= len(digits) <= 15 and digits[0] != "0":
            return _phone(digits, raw, br_ninth_digit)
    return _opaque(raw)


def _phone(digits: str, raw: str, br_ninth_digit: bool) -> ContactIdentity:
    if br_ninth_digit:
        digits = brazilian_mobile_with_ninth_digit(digits)
    return ContactIdentity(
        key=f"wa-{digits}", kind="phone", identifier=digits, phone_number=f"+{digits}", raw=raw
    )


def brazilian_mobile_with_ninth_digit(digits: str) -> str:
    """``551187654321`` -> ``5511987654321``; anything else unchanged.

    Brazilian mobiles gained a leading 9 (2012-2016); the old 8-digit form of a
    mobile starts with 6-9, landlines start with 2-5 and are left alone.
    """
    if len(digits) == 12 and digits.startswith("55") and digits[4] in "6789":
        return digits[:4] + "9" + digits[4:]
    return digits


def _opaque(raw: str) -> ContactIdentity:
    if _SAFE.match(raw):
        key = f"id-{raw}"
    else:
        key = "id-" + hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]
    return ContactIdentity(key=key, kind="opaque", identifier=raw[:255], raw=raw)
