"""Contact keys: one stable key per person, whatever form the host hands us.

The key doubles as the Chatwoot contact_inbox ``source_id``. Chatwoot reads that
``source_id`` on public ``POST /contacts`` and returns the existing contact_inbox
when it knows it, which is what makes contact creation idempotent. Rails path
segments cannot hold ``.``, ``/`` or ``?``, so keys use ``[A-Za-z0-9_-]`` only.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass

import phonenumbers

_FORMATTING = re.compile(r"[\s().\-/]")
_BSUID = re.compile(r"^[A-Z]{2}\.[A-Za-z0-9]+$")
_SAFE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_PHONE_JID_DOMAINS = {"c.us", "s.whatsapp.net"}
_MEXICAN_OLD_MOBILE = re.compile(r"^\+521\d{10}$")


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
    return _identify(raw, br_ninth_digit, default_country_code)


@functools.lru_cache(maxsize=8192)
def _identify(raw: str, br_ninth_digit: bool, default_country_code: str | None
              ) -> ContactIdentity:
    """identify's work, remembered: a pure function of its arguments, and a host calls it
    several times per message with the same few contacts (libphonenumber parses are the
    costly part)."""
    if "@" in raw:
        user, _, domain = raw.partition("@")
        user = user.split(":", 1)[0]  # multi-device JIDs: 5511...:12@s.whatsapp.net
        domain = domain.lower()
        if domain in _PHONE_JID_DOMAINS and user.isdigit():
            number = _parse("+" + user, user, None)
            if number is not None:
                return _phone(number, raw, br_ninth_digit)
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
    if compact.startswith("00") and compact[2:].isdigit():
        compact = "+" + compact[2:]  # the international call prefix most countries dial
    digits = compact.lstrip("+")
    if digits.isdigit() and len(compact) - len(digits) <= 1:
        number = _parse(compact if compact.startswith("+") else None, digits,
                        default_country_code)
        if number is not None:
            return _phone(number, raw, br_ninth_digit)
    return _opaque(raw)


def _parse(international: str | None, digits: str,
           default_country_code: str | None) -> phonenumbers.PhoneNumber | None:
    """libphonenumber's reading of a number: with ``+``, as written; without, as a WhatsApp
    id (country code first) unless it only reads as a national number of the default
    country (a trunk ``0``, or too short to carry a country code). ``None`` when it is not a
    possible number at all."""
    candidates = [international] if international else []
    if not international:
        if default_country_code and (digits.startswith("0") or (
                len(digits) <= 11 and not digits.startswith(default_country_code))):
            region = phonenumbers.region_code_for_country_code(int(default_country_code))
            candidates.append(f"national:{region}:{digits}")
        candidates.append("+" + digits)
    for candidate in candidates:
        if _MEXICAN_OLD_MOBILE.match(candidate):
            # WhatsApp ids still carry the 1 Mexico dropped from mobiles in 2019; today's
            # plan has no 13-digit Mexican number for libphonenumber to read
            candidate = "+52" + candidate[4:]
        try:
            if candidate.startswith("national:"):
                _, region, national = candidate.split(":", 2)
                number = phonenumbers.parse(national, region)
            else:
                number = phonenumbers.parse(candidate, None)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(number):
            return number
    return None


def _phone(number: phonenumbers.PhoneNumber, raw: str, br_ninth_digit: bool) -> ContactIdentity:
    digits = whatsapp_number(number, br_ninth_digit=br_ninth_digit)
    return ContactIdentity(
        key=f"wa-{digits}", kind="phone", identifier=digits, phone_number=f"+{digits}", raw=raw
    )


def whatsapp_number(number: phonenumbers.PhoneNumber, *, br_ninth_digit: bool = True) -> str:
    """The E.164 digits WhatsApp knows a mobile by, from libphonenumber's reading.

    libphonenumber already drops trunk prefixes (``+44 07911...``, Argentina's ``15``) and
    knows each country's ranges. On top of it, the forms WhatsApp ids carry that are not
    today's dialling plan: a Brazilian mobile without its ninth digit
    (``55 11 8765-4321``, when ``br_ninth_digit``), an Argentine mobile without the ``9``
    after 54 (each rewritten only when the result is a valid mobile number); a Mexican
    mobile with the ``1`` after 52 is read without it before (see :func:`_parse`)."""
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]
    cc, national = str(number.country_code), str(number.national_number)
    rewritten = None
    if cc == "55" and br_ninth_digit:
        candidate = brazilian_mobile_with_ninth_digit(e164)
        rewritten = candidate if candidate != e164 else None
    elif cc == "54" and len(national) == 10 and not national.startswith("9"):
        rewritten = "549" + national
    if rewritten and _is_mobile("+" + rewritten):
        return rewritten
    return e164


def _is_mobile(e164: str) -> bool:
    number = phonenumbers.parse(e164, None)
    return phonenumbers.is_valid_number(number) and phonenumbers.number_type(number) in (
        phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)


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


def legacy_key(contact: object, *, br_ninth_digit: bool = True,
               default_country_code: str | None = None) -> str | None:
    """The key version 0.1 gave ``contact`` when it differs from today's, else ``None``.

    0.1 read numbers with hand-written rules: it kept a Mexican ``521`` and an Argentine
    ``54`` without the ``9``, kept a trunk zero after the country code
    (``+44 07911...`` gave ``wa-4407911...``) and hashed ``00``-prefixed numbers. A store
    written by 0.1 holds people under those keys; they keep them (see people.py)."""
    raw = str(contact).strip() if contact is not None else ""
    if not raw:
        return None
    return _legacy_or_none(raw, br_ninth_digit, default_country_code)


@functools.lru_cache(maxsize=8192)
def _legacy_or_none(raw: str, br_ninth_digit: bool,
                    default_country_code: str | None) -> str | None:
    today = _identify(raw, br_ninth_digit, default_country_code).key
    old = _legacy_key(raw, br_ninth_digit, default_country_code)
    return old if old != today else None


def _legacy_key(raw: str, br_ninth_digit: bool, default_country_code: str | None) -> str:
    if "@" in raw:
        user, _, domain = raw.partition("@")
        user = user.split(":", 1)[0]
        if domain.lower() in _PHONE_JID_DOMAINS and user.isdigit():
            return "wa-" + (brazilian_mobile_with_ninth_digit(user) if br_ninth_digit else user)
        return identify(raw).key  # groups, LIDs and opaque ids did not change
    if _BSUID.match(raw):
        return identify(raw).key
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
            return "wa-" + (brazilian_mobile_with_ninth_digit(digits) if br_ninth_digit
                            else digits)
    return _opaque(raw).key
