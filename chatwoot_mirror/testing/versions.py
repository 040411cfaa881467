"""What changes with the Chatwoot version the emulator plays: one table, read once.

The emulator behaves like Chatwoot 4.16.2 unless told otherwise
(``Emulator(chatwoot_version="4.10.1")``, ``--chatwoot-version``). Only the differences a
bot's code can notice are modelled; each names the release that brought it, as recorded in
``research/chatwoot.md`` ("Version differences") and the files cited below.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_VERSION = "4.16.2"
#: the oldest release whose behaviour is modelled; older ones differ in ways not listed here
OLDEST_VERSION = "4.10.0"
_OLDEST = (4, 10, 0)

#: app/controllers/concerns/access_token_auth_helper.rb, BOT_ACCESSIBLE_ENDPOINTS: the
#: (controller, action) pairs an AgentBot token may call, each with the release it came in
_BOT_ENDPOINTS_SINCE: dict[tuple[str, str], tuple[int, ...]] = {
    ("conversations", "toggle_status"): (0,),
    ("conversations", "toggle_priority"): (0,),
    ("conversations", "create"): (0,),
    ("conversations", "update"): (0,),
    ("messages", "create"): (0,),
    ("assignments", "create"): (0,),
    ("conversations", "custom_attributes"): (4, 2, 0),
    ("conversations", "toggle_typing_status"): (4, 12, 0),
    ("conversations", "show"): (4, 14, 2),  # #14655
    ("labels", "index"): (4, 14, 2),
    ("labels", "create"): (4, 14, 2),
}


def parse(version: str) -> tuple[int, int, int]:
    """``"4.16.2"`` -> ``(4, 16, 2)``; a version outside what is modelled is a ValueError
    naming the range, so a typo fails when the emulator is built, not in a test's middle."""
    m = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.(\d+))?", str(version).strip())
    if not m:
        raise ValueError(f"chatwoot_version {version!r} is not like 4.16.2")
    parsed = (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    if parsed < _OLDEST:
        raise ValueError(f"chatwoot_version {version!r}: the emulator models "
                         f"{OLDEST_VERSION} to {DEFAULT_VERSION}")
    return parsed


@dataclass(frozen=True)
class Behaviour:
    """The version-dependent rules, decided once from the version."""

    version: tuple[int, int, int]
    #: AgentBot-token (controller, action) pairs
    bot_endpoints: frozenset[tuple[str, str]]
    #: X-Chatwoot-Delivery on API-inbox webhooks (4.12.0)
    delivery_header: bool
    #: X-Chatwoot-Timestamp / X-Chatwoot-Signature on API-inbox webhooks (4.13.0, #13892)
    signs_webhooks: bool
    #: a new conversation in an inbox with an active AgentBot gets it as
    #: assignee_agent_bot, and that column is one conversation_updated reports (4.16.2, #14875)
    bot_assigned_at_creation: bool
    #: Attachment JSON names the file's content_type, and its extension is filled (4.13.0, #13945)
    attachment_content_type: bool
    #: an audio attachment's data_url is the inline-disposition redirect (4.14.0, #14315)
    inline_audio_url: bool
    #: on Chatwoot Cloud, token API access needs the api_and_webhooks feature (4.16.0, #14973)
    token_api_gate: bool
    #: Conversation#list_of_keys: a save changing one of these sends conversation_updated
    update_keys: frozenset[str]

    @property
    def label(self) -> str:
        return ".".join(str(x) for x in self.version)


_UPDATE_KEYS = ("team_id", "assignee_id", "status", "snoozed_until", "custom_attributes",
                "label_list", "waiting_since", "first_reply_created_at", "priority")


def behaviour(version: str = DEFAULT_VERSION) -> Behaviour:
    v = parse(version)
    bot_assigned = v >= (4, 16, 2)
    keys = set(_UPDATE_KEYS)
    if bot_assigned:
        keys.add("assignee_agent_bot_id")
    return Behaviour(
        version=v,
        bot_endpoints=frozenset(k for k, since in _BOT_ENDPOINTS_SINCE.items() if v >= since),
        delivery_header=v >= (4, 12, 0),
        signs_webhooks=v >= (4, 13, 0),
        bot_assigned_at_creation=bot_assigned,
        attachment_content_type=v >= (4, 13, 0),
        inline_audio_url=v >= (4, 14, 0),
        token_api_gate=v >= (4, 16, 0),
        update_keys=frozenset(keys),
    )
