"""Who talks to a contact, the bot or humans.

* :mod:`.rules`: the rules, one pure function;
* :mod:`.machine`: runs them against the store with compare-and-set;
* :mod:`.actions`: what a decision asks for (tell the customer, open, label, note...).
"""

from __future__ import annotations

from .actions import HandoffActions
from .machine import Callback, Handoff
from .rules import BOT, HUMAN, Decision, Event, decide

__all__ = ["BOT", "HUMAN", "Callback", "Decision", "Event", "Handoff", "HandoffActions",
           "decide"]
