"""chatwoot_mirror.testing: a faithful fake Chatwoot for tests, benchmarks and demos.

    from chatwoot_mirror.testing import FakeChatwoot

    with FakeChatwoot(lock_to_single_conversation=True) as chatwoot:
        mirror = Mirror(Config(url=chatwoot.url, inbox_identifier=chatwoot.inbox_identifier))
"""

from __future__ import annotations

from .emulator import Emulator, Faults
from .server import FakeChatwoot

__all__ = ["Emulator", "FakeChatwoot", "Faults"]
