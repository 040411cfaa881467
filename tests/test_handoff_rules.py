"""The handoff state machine, transition by transition (chatwoot_mirror.handoff.rules).

Each row is (current record, event) -> (outcome, the record stored, the actions). The
machine that runs it against a real store has its own test below."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from chatwoot_mirror.handoff import Handoff
from chatwoot_mirror.handoff import rules as d  # the kinds, actions and outcomes
from chatwoot_mirror.handoff.rules import BOT, HUMAN, Event, decide
from chatwoot_mirror.store import HandoffRecord, SQLiteStore

KEY = "wa-5511987654321"
NOW = 1_800_000_000.0  # this host's clock
T = 1_700_000_000.0  # Chatwoot's clock of the last event applied


def rec(state: str, *, changed_at: float = T, last_human_at: float | None = None,
        turns: int = 0, version: int = 3, reason: str = "before",
        conversation_id: int | None = 7) -> HandoffRecord:
    return HandoffRecord(KEY, state, reason, changed_at,
                         last_human_at if state == HUMAN or last_human_at else None,
                         conversation_id, turns, version)


def ev(kind: str, to: str | None, reason: str = "why", *, at: float | None = None,
       human: bool = False, conversation_id: int | None = None, max_turns: int = 0) -> Event:
    return Event(KEY, kind, to, reason, NOW, at=at, conversation_id=conversation_id,
                 human_activity=human, max_bot_turns=max_turns)


HUMAN_AT = T - 50  # a paused contact's last human message

# (id, current, event, outcome, expected record or None when nothing is written, actions)
TABLE = [
    # -- Chatwoot pauses: an agent replied, opened, took over, was assigned
    ("cw-pause-first", None, ev(d.CHATWOOT, HUMAN, "agent_reply", at=T, human=True,
                                 conversation_id=9),
     d.PAUSED, HandoffRecord(KEY, HUMAN, "agent_reply", T, T, 9, 0, 1), ()),
    ("cw-pause-from-bot", rec(BOT, turns=4), ev(d.CHATWOOT, HUMAN, "assigned", at=T + 1),
     d.PAUSED, HandoffRecord(KEY, HUMAN, "assigned", T + 1, NOW, 7, 0, 4), ()),
    ("cw-pause-stale", rec(BOT), ev(d.CHATWOOT, HUMAN, "agent_reply", at=T - 1),
     d.STALE, None, ()),
    ("cw-pause-same-instant", rec(BOT), ev(d.CHATWOOT, HUMAN, "opened", at=T),
     d.STALE, None, ()),
    ("cw-pause-replayed", rec(HUMAN, last_human_at=HUMAN_AT),
     ev(d.CHATWOOT, HUMAN, "opened", at=T), d.UNCHANGED, None, ()),
    ("cw-pause-already-paused-newer", rec(HUMAN, last_human_at=HUMAN_AT),
     ev(d.CHATWOOT, HUMAN, "opened", at=T + 5), d.UNCHANGED,
     rec(HUMAN, changed_at=T + 5, last_human_at=HUMAN_AT, version=4), ()),
    ("cw-agent-writes-again", rec(HUMAN, last_human_at=HUMAN_AT),
     ev(d.CHATWOOT, HUMAN, "agent_reply", at=T + 5, human=True), d.UNCHANGED,
     rec(HUMAN, changed_at=T + 5, last_human_at=T + 5, version=4), ()),
    ("cw-stale-agent-reply-still-moves-idle-clock", rec(HUMAN, last_human_at=HUMAN_AT),
     ev(d.CHATWOOT, HUMAN, "agent_reply", at=T - 10, human=True), d.UNCHANGED,
     rec(HUMAN, last_human_at=T - 10, version=4), ()),
    ("cw-late-agent-reply-after-resolve", rec(BOT),
     ev(d.CHATWOOT, HUMAN, "agent_reply", at=T - 10, human=True), d.STALE, None, ()),
    # -- Chatwoot resumes: resolved, pending, unassigned
    ("cw-resume", rec(HUMAN, last_human_at=HUMAN_AT), ev(d.CHATWOOT, BOT, "resolved", at=T + 1),
     d.RESUMED, rec(BOT, changed_at=T + 1, last_human_at=HUMAN_AT, reason="resolved",
                  version=4), d.RESUME),
    ("cw-resume-stale", rec(HUMAN, last_human_at=HUMAN_AT),
     ev(d.CHATWOOT, BOT, "resolved", at=T - 1), d.STALE, None, ()),
    ("cw-resume-replayed", rec(BOT), ev(d.CHATWOOT, BOT, "resolved", at=T), d.UNCHANGED, None, ()),
    ("cw-first-resume-records-time", None, ev(d.CHATWOOT, BOT, "resolved", at=T),
     d.UNCHANGED, HandoffRecord(KEY, BOT, "resolved", T, None, None, 0, 1), ()),
    ("cw-resume-of-bot-moves-clock", rec(BOT), ev(d.CHATWOOT, BOT, "pending", at=T + 3),
     d.UNCHANGED, rec(BOT, changed_at=T + 3, version=4), ()),
    # -- local pauses: a trigger, the bot, an explicit call (never stale: no Chatwoot time)
    ("trigger-first", None, ev(d.TRIGGER, HUMAN, "keyword_detected"),
     d.PAUSED, HandoffRecord(KEY, HUMAN, "keyword_detected", 0.0, NOW, None, 0, 1),
     d.LOCAL_PAUSE),
    ("trigger-from-bot", rec(BOT, turns=2), ev(d.TRIGGER, HUMAN, "after_hours"),
     d.PAUSED, rec(HUMAN, last_human_at=NOW, reason="after_hours", version=4), d.LOCAL_PAUSE),
    ("trigger-while-paused", rec(HUMAN, last_human_at=HUMAN_AT),
     ev(d.TRIGGER, HUMAN, "keyword_detected"), d.UNCHANGED, None, ()),
    ("bot-declares-handoff", rec(BOT), ev(d.BOT_HANDOFF, HUMAN, "sales"),
     d.PAUSED, rec(HUMAN, last_human_at=NOW, reason="sales", version=4), d.LOCAL_PAUSE),
    ("bot-fails", rec(BOT), ev(d.BOT_FAILURE, HUMAN, "ai_failure"),
     d.PAUSED, rec(HUMAN, last_human_at=NOW, reason="ai_failure", version=4), d.LOCAL_PAUSE),
    ("explicit-handoff", rec(BOT), ev(d.EXPLICIT, HUMAN, "user_request"),
     d.PAUSED, rec(HUMAN, last_human_at=NOW, reason="user_request", version=4), d.LOCAL_PAUSE),
    # -- the owner typed on the business phone: a quiet pause that starts the idle clock
    ("owner-first", None, ev(d.OWNER, HUMAN, "owner_reply", human=True),
     d.PAUSED, HandoffRecord(KEY, HUMAN, "owner_reply", 0.0, NOW, None, 0, 1), ()),
    ("owner-again", rec(HUMAN, last_human_at=HUMAN_AT), ev(d.OWNER, HUMAN, "owner_reply",
                                                           human=True),
     d.UNCHANGED, rec(HUMAN, last_human_at=NOW, version=4), ()),
    # -- local resumes
    ("explicit-resume", rec(HUMAN, last_human_at=HUMAN_AT), ev(d.EXPLICIT, BOT, "explicit"),
     d.RESUMED, rec(BOT, last_human_at=HUMAN_AT, reason="explicit", version=4), d.RESUME),
    ("explicit-resume-never-paused", None, ev(d.EXPLICIT, BOT, "explicit"), d.UNCHANGED, None, ()),
    ("explicit-resume-of-bot", rec(BOT), ev(d.EXPLICIT, BOT, "explicit"), d.UNCHANGED, None, ()),
    ("idle-resume", rec(HUMAN, last_human_at=HUMAN_AT), ev(d.IDLE, BOT, "idle_timeout"),
     d.RESUMED, rec(BOT, last_human_at=HUMAN_AT, reason="idle_timeout", version=4), d.RESUME),
    # -- bot turns and the max-turns trigger
    ("turn-first", None, ev(d.BOT_TURN, None, max_turns=3),
     d.COUNTED, HandoffRecord(KEY, BOT, None, 0.0, None, None, 1, 1), ()),
    ("turn-counted", rec(BOT, turns=1), ev(d.BOT_TURN, None, max_turns=3),
     d.COUNTED, rec(BOT, turns=2, version=4), ()),
    ("turn-reaches-max", rec(BOT, turns=2), ev(d.BOT_TURN, None, max_turns=3),
     d.PAUSED, rec(HUMAN, last_human_at=NOW, reason="max_turns", version=4), d.LOCAL_PAUSE),
    ("turn-without-max", rec(BOT, turns=99), ev(d.BOT_TURN, None),
     d.COUNTED, rec(BOT, turns=100, version=4), ()),
    ("turn-while-paused", rec(HUMAN, last_human_at=HUMAN_AT, turns=5),
     ev(d.BOT_TURN, None, max_turns=3),
     d.COUNTED, rec(HUMAN, last_human_at=HUMAN_AT, turns=6, version=4), ()),
]


@pytest.mark.parametrize("current,event,outcome,record,actions",
                         [row[1:] for row in TABLE], ids=[row[0] for row in TABLE])
def test_transition(current, event, outcome, record, actions):
    decision = decide(current, event)
    assert decision.outcome == outcome
    assert decision.record == record
    assert decision.actions == actions
    assert decision.changed == (outcome in (d.PAUSED, d.RESUMED))


def test_a_change_of_hands_restarts_the_bot_turn_count():
    paused = decide(rec(BOT, turns=7), ev(d.TRIGGER, HUMAN, "keyword_detected")).record
    assert paused is not None and paused.bot_turns == 0
    resumed = decide(paused, ev(d.EXPLICIT, BOT, "explicit")).record
    assert resumed is not None and resumed.bot_turns == 0


def test_every_written_record_is_one_version_newer():
    for _, current, _event, _, record, _ in TABLE:
        if record is not None:
            assert record.version == (current.version if current else 0) + 1


@pytest.mark.parametrize("kwargs", [
    {"kind": "mystery", "to": HUMAN},
    {"kind": d.BOT_TURN, "to": HUMAN},
    {"kind": d.TRIGGER, "to": None},
    {"kind": d.TRIGGER, "to": "robot"},
    {"kind": d.EXPLICIT, "to": BOT, "at": T},  # only Chatwoot events carry its time
])
def test_impossible_events_are_refused(kwargs):
    with pytest.raises(ValueError):
        Event(KEY, reason="x", now=NOW, **kwargs)


def test_the_machine_stores_each_decision_with_compare_and_set(tmp_path):
    """Many threads deciding at once on one contact lose no bot turn: a writer that lost
    the compare-and-set decides again on the fresh record."""
    store = SQLiteStore(str(tmp_path / "m.db"))
    machine = Handoff(store, max_bot_turns=0)
    threads = [threading.Thread(target=lambda: [machine.bot_turn(KEY) for _ in range(25)])
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    record = store.get_handoff(KEY)
    assert record is not None and record.bot_turns == 200 and record.version == 200
    store.close()


def test_the_machine_runs_actions_and_callbacks_only_when_hands_change(tmp_path):
    store = SQLiteStore(str(tmp_path / "m.db"))
    machine = Handoff(store)
    ran: list[tuple[str, tuple[str, ...]]] = []
    machine.executor = lambda event, decision, identity: ran.append(
        (event.kind, decision.actions))
    told: list[tuple[str, str]] = []
    machine.on_handoff.append(lambda key, reason: told.append(("handoff", reason)))
    machine.on_resume.append(lambda key, reason: told.append(("resume", reason)))
    assert machine.pause(KEY, "keyword_detected", kind=d.TRIGGER).changed
    assert not machine.pause(KEY, "keyword_detected", kind=d.TRIGGER).changed
    assert machine.resume(KEY, "resolved", kind=d.CHATWOOT, at=T).changed
    assert machine.resume(KEY, "resolved", kind=d.CHATWOOT, at=T).outcome == d.UNCHANGED
    assert machine.pause(KEY, "agent_reply", kind=d.CHATWOOT, at=T - 1).outcome == d.STALE
    assert ran == [(d.TRIGGER, d.LOCAL_PAUSE), (d.CHATWOOT, d.RESUME)]
    assert told == [("handoff", "keyword_detected"), ("resume", "resolved")]
    stored = store.get_handoff(KEY)
    assert stored == replace(stored, state=BOT, reason="resolved", changed_at=T)
    store.close()
