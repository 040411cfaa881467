"""The one handoff decision: (current record, event) -> (new record, actions).

Pure: no store, no clock, no configuration beyond what the event carries. Every path
that pauses or resumes the bot builds an :class:`Event` and comes here, so the rules
below are the whole state machine:

* Chatwoot events carry Chatwoot's time (``at``). Webhooks arrive in any order, so an
  event not strictly newer than the last one applied changes nothing: a late "agent
  replied" cannot pause a conversation resolved after that reply (*stale*; a late event
  that agrees with where the contact is, a replay say, is *unchanged*).
* Local decisions (a trigger, the owner typing, the bot, an idle timeout, an explicit
  call) have ``at=None``: they change hands without moving that clock, so skew between
  this host's clock and Chatwoot's cannot make a later Chatwoot event look stale.
* A first "bot" event for a contact never handed off changes nothing but records its
  time, so an older "human" event arriving late stays stale.
* A human message (an agent's reply, the owner typing) moves the idle clock of a paused
  contact, even when the event is stale or changes nothing.
* Bot replies are counted since the contact last changed hands; reaching
  ``max_bot_turns`` hands the contact to humans.
* Chatwoot opening a pending conversation because its call to the bot failed
  (``CHATWOOT_BOT_ERROR``) is not a takeover: a pause that Chatwoot's own opening caused
  is undone and the conversation goes back to pending, when its activity message is not
  older than that opening and no person has replied or been assigned since; a pause a
  human caused stays, however soon after the opening it came.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..store.base import HandoffRecord

HUMAN, BOT = "human", "bot"

# -- where an event comes from --------------------------------------------------------------
CHATWOOT = "chatwoot"  # a verified webhook: an agent replied, took over, resolved...
TRIGGER = "trigger"  # a customer message hit a keyword, or came after hours
OWNER = "owner"  # a person typed on the business phone, outside Chatwoot
BOT_HANDOFF = "bot_handoff"  # the bot declared a handoff (BotReply.handoff, a marker)
BOT_FAILURE = "bot_failure"  # the bot function raised
BOT_TURN = "bot_turn"  # the bot replied once more (the max-turns trigger)
IDLE = "idle"  # no human message for CHATWOOT_RESUME_AFTER_MINUTES
EXPLICIT = "explicit"  # the host called handoff() or resume()
#: a verified webhook: Chatwoot opened the conversation because its call to the bot failed
CHATWOOT_BOT_ERROR = "chatwoot_bot_error"
KINDS = frozenset({CHATWOOT, TRIGGER, OWNER, BOT_HANDOFF, BOT_FAILURE, BOT_TURN, IDLE, EXPLICIT,
                   CHATWOOT_BOT_ERROR})

# -- what a decision asks to be done (executed by handoff.actions) ---------------------------
NOTIFY = "notify"  # tell the customer (the handoff, after-hours or resume text)
OPEN = "open"  # open the Chatwoot conversation for agents
LABEL = "label"  # label it (and record handoff_reason)
NOTE = "note"  # leave a private note with the reason and the transcript
TYPING_OFF = "typing_off"  # the bot stops "typing"
UNASSIGN = "unassign"  # nobody stays assigned once the bot has the customer again
PENDING = "pending"  # the conversation goes back to pending (the bot's queue)

#: a pause the bot's side decided: the customer is told, agents get an open conversation
LOCAL_PAUSE = (NOTIFY, OPEN, LABEL, NOTE)
#: any resume: the customer is told, the console shows the bot in charge again
RESUME = (NOTIFY, TYPING_OFF, UNASSIGN)
#: the pause reasons of Chatwoot's own status changes (what its bot-error opening causes)
OPENED_BY_CHATWOOT = frozenset({"taken_over", "opened"})
#: Chatwoot writes a message's time in whole seconds, a conversation's with fractions: an
#: activity written right after its opening may read up to this much earlier
TIME_GRAIN = 1.0

# -- what happened, as a webhook answers it --------------------------------------------------
PAUSED, RESUMED, UNCHANGED, STALE, COUNTED = "paused", "resumed", "unchanged", "stale", "counted"


@dataclass(frozen=True)
class Event:
    """Something that may move a contact between the bot and humans."""

    contact_key: str
    kind: str
    #: ``HUMAN`` or ``BOT``; ``None`` for ``BOT_TURN`` (which may end in ``HUMAN``)
    to: str | None
    reason: str
    #: the event's own time (local clock), for the idle clock and first records
    now: float
    #: Chatwoot's time of a webhook event; ``None`` for local decisions
    at: float | None = None
    conversation_id: int | None = None
    #: a human wrote to the customer (moves the idle clock)
    human_activity: bool = False
    #: ``BOT_TURN`` only: hand over when the count reaches this (0: never)
    max_bot_turns: int = 0
    #: words for the agents' private note (the NOTE action); not part of the decision
    note: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown handoff event kind {self.kind!r}")
        if (self.to is None) != (self.kind == BOT_TURN) or self.to not in (HUMAN, BOT, None):
            raise ValueError(f"{self.kind} event with target {self.to!r}")
        if self.kind not in (CHATWOOT, CHATWOOT_BOT_ERROR) and self.at is not None:
            raise ValueError("only Chatwoot events carry Chatwoot's time")


@dataclass(frozen=True)
class Decision:
    """The new record to store (``None``: nothing to write), what happened, and what to do."""

    record: HandoffRecord | None
    outcome: str
    actions: tuple[str, ...] = ()
    reason: str | None = None

    @property
    def changed(self) -> bool:
        """The contact changed hands."""
        return self.outcome in (PAUSED, RESUMED)


def decide(current: HandoffRecord | None, event: Event) -> Decision:
    """The state machine: what ``event`` does to a contact whose record is ``current``."""
    if event.kind == BOT_TURN:
        return _count_turn(current, event)
    if event.kind == CHATWOOT_BOT_ERROR:
        return _bot_error(current, event)
    human_at = (event.at if event.at is not None else event.now) if event.human_activity else None
    if current is None:
        if event.to == BOT:  # the bot had the contact: record the time, change nothing
            first = HandoffRecord(event.contact_key, BOT, event.reason, event.at or 0.0,
                                  None, event.conversation_id, version=1)
            return Decision(first if event.at is not None else None, UNCHANGED)
        # never handed off before: the bot had the contact, at version 0
        return _change(HandoffRecord(event.contact_key, BOT, None, 0.0, None, None),
                       event, human_at)
    record = current
    if human_at is not None and record.state == HUMAN:
        record = replace(record, last_human_at=max(record.last_human_at or 0.0, human_at))
    if event.at is not None and event.at <= record.changed_at:
        # a newer event decided: stale, unless it had decided the same thing
        return _unchanged(current, record, UNCHANGED if record.state == event.to else STALE)
    if record.state == event.to:
        if event.at is not None:
            record = replace(record, changed_at=event.at)
        if event.to == HUMAN and record.reason in OPENED_BY_CHATWOOT \
                and event.reason not in OPENED_BY_CHATWOOT:
            # a person answered or took it after Chatwoot's own opening: the pause is
            # theirs now, and a bot-error activity arriving later must not undo it
            record = replace(record, reason=event.reason)
        return _unchanged(current, record, UNCHANGED)
    return _change(record, event, human_at)


def _change(record: HandoffRecord, event: Event, human_at: float | None) -> Decision:
    to = event.to or HUMAN
    changed = replace(
        record,
        state=to,
        reason=event.reason,
        changed_at=event.at if event.at is not None else record.changed_at,
        bot_turns=0,
        last_human_at=(human_at or event.now) if to == HUMAN else record.last_human_at,
        conversation_id=event.conversation_id or record.conversation_id,
        version=record.version + 1,
    )
    if to == BOT:
        actions: tuple[str, ...] = RESUME
    elif event.kind in (CHATWOOT, OWNER):
        actions = ()  # an agent (or the owner) is already talking: nothing to announce
    else:
        actions = LOCAL_PAUSE
    return Decision(changed, PAUSED if to == HUMAN else RESUMED, actions, event.reason)


def _bot_error(current: HandoffRecord | None, event: Event) -> Decision:
    """Chatwoot opened the conversation because its webhook to the bot failed."""
    at = event.at if event.at is not None else event.now
    if current is None or current.state == BOT:
        # the opening's own events have not come yet (or never will): the bot keeps the
        # contact, they will be stale, and the conversation goes back to pending
        base = current or HandoffRecord(event.contact_key, BOT, None, 0.0, None,
                                        event.conversation_id)
        record = replace(base, changed_at=max(base.changed_at, at),
                         version=base.version + 1)
        return Decision(record, UNCHANGED, (PENDING,), event.reason)
    # Chatwoot's evidence, not a time window: its activity follows the opening it
    # explains (so it is not older than it), and nobody has acted since (a reply or an
    # assignment makes the pause a person's, above). A bot error only happens to a
    # pending conversation, so an earlier opening still on record was undone since.
    if current.reason in OPENED_BY_CHATWOOT and at >= current.changed_at - TIME_GRAIN:
        record = replace(current, state=BOT, reason=event.reason, bot_turns=0,
                         changed_at=max(current.changed_at, at), version=current.version + 1)
        return Decision(record, RESUMED, (PENDING,), event.reason)
    return Decision(None, UNCHANGED)  # a person took over: theirs it stays


def _unchanged(current: HandoffRecord, record: HandoffRecord, outcome: str) -> Decision:
    if record == current:
        return Decision(None, outcome)
    return Decision(replace(record, version=current.version + 1), outcome)


def _count_turn(current: HandoffRecord | None, event: Event) -> Decision:
    record = current or HandoffRecord(event.contact_key, BOT, None, 0.0, None, None)
    counted = replace(record, bot_turns=record.bot_turns + 1)
    limit = event.max_bot_turns
    if limit and counted.bot_turns >= limit and counted.state == BOT:
        # the max-turns trigger: a local pause like a keyword's (the count starts again)
        return _change(counted, replace(event, kind=TRIGGER, to=HUMAN, reason="max_turns"),
                       None)
    return Decision(replace(counted, version=record.version + 1), COUNTED)
