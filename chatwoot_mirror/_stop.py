"""How the command-line programs wait, in the main thread, for SIGTERM or Ctrl+C."""

from __future__ import annotations

import signal
import threading

#: How often the waiting main thread wakes (seconds): the longest a stop can go unnoticed.
WAKE_SECONDS = 0.5


def wait_for_stop() -> None:
    """Block until SIGTERM or SIGINT (Ctrl+C) arrives.

    Python runs a signal's handler in the main thread, and only when that thread runs
    bytecode. The kernel may deliver a process's signal to any thread that does not block
    it; when that is one of the mirror's or the server's threads, a main thread blocked on
    an untimed lock (``Event.wait()``) never runs the handler and the process ignores the
    SIGTERM for good. So the wait wakes every ``WAKE_SECONDS``."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(WAKE_SECONDS):
            pass
    except KeyboardInterrupt:
        pass
