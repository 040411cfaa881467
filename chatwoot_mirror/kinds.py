"""How each kind of WhatsApp message shows to agents in Chatwoot: the one place that
decides it.

Adapters say what arrived (``shown_as``: one of :data:`KINDS`, with the customer's words
or the message's data as ``text``); this module words it in the mirror's language
(:attr:`Texts.kinds <chatwoot_mirror.texts.Texts.kinds>`). Chatwoot has no reactions,
edits or deletes: they are posted as short replies to the message they concern, and are
:data:`QUIET`: they never pause the bot, count as a bot turn or fire a handoff trigger.
"""

from __future__ import annotations

from .texts import Texts

REACTION, EDIT, DELETE = "reaction", "edit", "delete"
STICKER, LOCATION, CONTACTS, ORDER, POLL, UNSUPPORTED = (
    "sticker", "location", "contacts", "order", "poll", "unsupported")
#: a catalog product the customer shared or asks about
PRODUCT = "product"
#: a message known only by its receipt: another tool sent it through the provider's API
UNSEEN = "unseen"
#: a message the provider's webhook names without its content (Z-PRO's webhook carries
#: no file, and no text for a photo without a caption)
WITHHELD = "withheld"
KINDS = frozenset({REACTION, EDIT, DELETE, STICKER, LOCATION, CONTACTS, ORDER, PRODUCT,
                   POLL, UNSUPPORTED, WITHHELD, UNSEEN})
#: shown to agents, never answered, never a trigger
QUIET = frozenset({REACTION, EDIT, DELETE})


def render(texts: Texts, shown_as: str | None, text: str, raw_type: str = "", *,
           files: bool = False) -> str:
    """What the agent reads for a message of kind ``shown_as`` (``None``: as it is).

    Never nothing: a message with neither words nor ``files`` is shown as
    :data:`UNSUPPORTED` (a customer's message dropped for being empty would be one the
    agent never knew was sent)."""
    if not shown_as:
        if text.strip() or files:
            return text
        shown_as = UNSUPPORTED
    template = texts.kinds.get(shown_as)
    if template is None:
        return text or f"[{raw_type or shown_as}]"
    # str.format with a value the customer wrote is safe: only the template is parsed
    kind = texts.kind_names.get(raw_type, raw_type) if raw_type else "?"
    return template.format(text=text.strip(), type=kind).strip()
