"""The command-line programs stop on SIGTERM whichever thread the kernel hands it to
(chatwoot_mirror/_stop.py). Found by the sample bot ignoring a SIGTERM under load: the
main thread sat in an untimed ``Event.wait()`` while the signal went to a worker thread."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import signal, sys, threading, time
from chatwoot_mirror._stop import wait_for_stop

def other():
    # once the handler is in place and the main thread waits, signal THIS thread: the
    # main thread gets no EINTR and must notice the pending handler on its own
    while signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        time.sleep(0.01)
    time.sleep(0.3)
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

threading.Thread(target=other, daemon=True).start()
wait_for_stop()
print("stopped", flush=True)
"""


def test_a_sigterm_delivered_to_another_thread_stops_the_wait():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          timeout=120)
    assert (done.returncode, done.stdout.strip()) == (0, "stopped"), done.stderr
