"""A host process for the multi-process tests: queues exchanges, then drains or hangs.

usage: python mirror_child.py CONTACTS(comma) EXCHANGES TAG close|hang
Settings come from the CHATWOOT_* environment.
"""

from __future__ import annotations

import sys
import time

from chatwoot_mirror import Config, Mirror


def main() -> None:
    contacts, exchanges, tag, mode = sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3], \
        sys.argv[4]
    mirror = Mirror(Config.from_env(dotenv=False))
    for i in range(exchanges):
        for contact in contacts:
            mirror.log_exchange(contact, f"{tag} q{i} {contact}", f"{tag} a{i} {contact}")
    print("queued", flush=True)
    if mode == "hang":
        time.sleep(600)
    mirror.close(timeout=60)


if __name__ == "__main__":
    main()
