"""Who a person is: one key for every name WhatsApp gives them. The one place that decides
which key a contact resolves to.

WhatsApp names a person several ways, and changes them: a phone number (E.164), a LID
(``...@lid``, which hides the number), a BSUID (``BR.1502...``, for people with a
username), provider chat ids. :mod:`identity` turns each name into a key; this module
links the names an event carries together (a uazapi ``sender_pn`` beside a LID chat id,
a 360dialog ``wa_id`` beside a ``user_id``) so that every later event, under any of them,
resolves to the same person, the same Chatwoot contact and the same conversation.

The links live in the store (scope ``alias``: a name's key -> the person's key), written
with :meth:`Store.add_value`, so the first link wins and every host shares it. A person
keeps the first key they were known by: someone known by phone keeps the phone key when
their LID shows up, and a store written by 0.1 keeps its keys (a name that 0.1 keyed
differently, see :func:`identity.legacy_key`, resolves to the person 0.1 recorded).

What a person last wrote from (scope ``address``) is where replies go: a LID chat is
answered on the LID, a user who withholds their number through the BSUID.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from .errors import StoreError, store_log_level
from .identity import ContactIdentity
from .message_ids import MessageIds
from .store import Store

log = logging.getLogger("chatwoot_mirror.people")

ALIASES = "alias"
ADDRESSES = "address"

#: which name becomes the person's key when none is known yet: a phone first (it is what
#: Chatwoot shows and searches), then the ids that last longest
_PREFERENCE = {"phone": 0, "bsuid": 1, "lid": 2, "opaque": 3, "group": 4}


class People:
    """Resolves contacts to people through the links in ``store``."""

    def __init__(
        self,
        store: Store,
        identify: Callable[[object], ContactIdentity],
        legacy_key: Callable[[object], str | None],
        on_merge: Callable[[str, str], None] | None = None,
    ) -> None:
        self.store = store
        self._identify = identify
        self._legacy_key = legacy_key
        #: ``on_merge(base, mergee)``: queue Chatwoot's side of a merge (the mirror does)
        self.on_merge = on_merge

    def identity(self, contact: object) -> ContactIdentity:
        """``contact``'s identity under its person's key (read-only). Raises ``ValueError``
        for what is not a contact; a store failure gives the name's own key (logged)."""
        found = self._identify(contact)
        try:
            person = self._person(found, contact)
            if person is None or person == found.key:
                return found
            return self._as(found, person)
        except StoreError as exc:
            log.log(store_log_level(exc), "contact links unreadable, using the name's own "
                    "key contact=%s error=%s", found.key, exc)
            return found

    def learn(self, contact: object, aliases: Iterable[object] = ()) -> ContactIdentity:
        """An event from the person: link ``contact`` and ``aliases`` (other names the same
        event gives them) to one person, remember ``contact`` as where they last wrote
        from, and return the identity to use. Never raises for the store (logged)."""
        primary = self._identify(contact)
        names = [(primary, contact)]
        for alias in aliases:
            try:
                found = self._identify(alias)
            except ValueError:
                continue
            # a second form of the same name still counts when 0.1 keyed it apart
            if found.kind != "group" and all(
                    found.key != n.key or self._legacy_key(alias) != self._legacy_key(raw)
                    for n, raw in names):
                names.append((found, alias))
        try:
            return self._learn(primary, names)
        except StoreError as exc:
            log.log(store_log_level(exc), "contact links not recorded contact=%s error=%s",
                    primary.key, exc)
            return primary

    def current(self, person: str) -> str:
        """The person ``person`` is now: themselves, or the one they were merged into (so
        what was queued for them before the merge reaches that person's conversation)."""
        return self._follow(person) or person

    def of_receipt(self, contact: object, provider_id: str,
                   ids: MessageIds) -> ContactIdentity | None:
        """Whose receipt this is: the contact it names, else (a receipt naming only the
        message: Z-PRO's acks carry no number) the person the id map says the message is
        to, so it still reaches that message. ``None`` when neither says."""
        if isinstance(contact, ContactIdentity):
            return contact
        if contact is not None and str(contact).strip():
            try:
                return self.identity(contact)
            except ValueError:
                return None
        try:
            located = ids.find(provider_id)
            if located is None:
                return None
            return self.address(located.contact_key) or ContactIdentity(
                key=located.contact_key, kind="opaque", identifier=located.contact_key)
        except StoreError as exc:
            log.log(store_log_level(exc), "receipt without a contact unplaced "
                    "provider_message=%s error=%s", provider_id, exc)
            return None

    def address(self, person: str) -> ContactIdentity | None:
        """Where ``person`` last wrote from, or ``None`` when no event recorded it."""
        text = self.store.get_value(ADDRESSES, person, time.time())
        return ContactIdentity.from_json(text) if text else None

    # -- the decision -----------------------------------------------------------------------

    def _person(self, found: ContactIdentity, contact: object) -> str | None:
        """The person ``found`` belongs to, if known: linked, or recorded by 0.1 under the
        key 0.1 gave it, or recorded under its own key (the host's own calls record people
        without linking them)."""
        linked = self._follow(found.key)
        if linked:
            return linked
        old = self._legacy_key(contact)
        if old:
            linked = self._follow(old)
            if linked:
                return linked
            if self.store.get_contact(old) is not None:
                return old
        return None

    def _known(self, found: ContactIdentity, contact: object) -> str | None:
        person = self._person(found, contact)
        if person is None and self.store.get_contact(found.key) is not None:
            return found.key
        return person

    def _learn(self, primary: ContactIdentity,
               names: list[tuple[ContactIdentity, object]]) -> ContactIdentity:
        persons = [self._known(n, raw) for n, raw in names]
        known = [p for p in persons if p]
        if known:
            person = known[0]
        else:
            person = min((n for n, _ in names), key=lambda n: _PREFERENCE.get(n.kind, 9)).key
        now = time.time()
        others = {p for p in known if p != person}
        for (name, _), found in zip(names, persons, strict=True):
            # only new names are linked, so the steady state writes nothing; a name that is
            # another person already is for the merge below
            if found is None:
                held = self.store.add_value(ALIASES, name.key, person, now)
                if held != person:
                    others.add(held)  # another host linked it first
        if others:
            person = self._merge(person, others)
        phone = next((n.phone_number for n, _ in names if n.phone_number), None)
        address = self._as(primary, person, phone)
        text = address.to_json()
        if self.store.get_value(ADDRESSES, person, now) != text:
            self.store.set_value(ADDRESSES, person, text)
        return address

    def _follow(self, name: str) -> str | None:
        """The person ``name`` is linked to, through the forwards merges leave (a merged
        person's own key links to the person they were merged into)."""
        now, seen = time.time(), list[str]()
        person = self.store.get_value(ALIASES, name, now)
        if person == name:
            return person  # a person's own key: the usual case, one read
        while person is not None and person not in seen and len(seen) < 8:
            seen.append(person)
            onward = self.store.get_value(ALIASES, person, now)
            if onward is None or onward == person:
                return person
            person = onward
        return seen[-1] if seen else None

    def _merge(self, person: str, others: set[str]) -> str:
        """Several people we kept apart turn out to be one. The one whose Chatwoot contact
        is oldest stays (Chatwoot's contact_merge keeps the base, and ids grow with age);
        each other one forwards to it from now on, hands over its handoff state when the
        base has none, and its Chatwoot side is queued (``on_merge``)."""
        def age(key: str) -> tuple[int, int, str]:
            record = self.store.get_contact(key)
            contact_id = record.contact_id if record else None
            return (contact_id is None, contact_id or 0, key)

        base, *mergees = sorted({person, *others}, key=age)
        self.store.set_value(ALIASES, base, base)  # the base stays itself, whatever linked it
        for mergee in mergees:
            self.store.set_value(ALIASES, mergee, base)  # the forward: replaces its self-link
            moved = self.store.get_handoff(mergee)
            if moved is not None and self.store.get_handoff(base) is None:
                self.store.put_handoff(replace(moved, contact_key=base, version=1), None)
            if self.on_merge is not None:
                self.on_merge(base, mergee)  # which logs the merge once Chatwoot's side is done
            else:
                log.info("contacts merged base=%s mergee=%s via=store", base, mergee)
        return base

    def _as(self, found: ContactIdentity, person: str,
            phone: str | None = None) -> ContactIdentity:
        """``found`` (the form written from: replies go there) under ``person``'s key, with
        the person's phone number when this name has none."""
        if phone is None and found.phone_number is None:
            known = self.address(person)
            phone = known.phone_number if known else None
        return replace(found, key=person, phone_number=found.phone_number or phone)
