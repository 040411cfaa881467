"""The ``chatwoot-mirror`` command.

    chatwoot-mirror doctor        is the configuration going to work? (exit 1 on a problem)
    chatwoot-mirror status        the outbox, dead letters and paused contacts
    chatwoot-mirror flush         deliver what is queued now, then exit
    chatwoot-mirror retry-dead    queue the dead letters again
    chatwoot-mirror emulator      run the Chatwoot emulator (python -m chatwoot_mirror.testing)
    chatwoot-mirror demo          run the sample bot and its console (python -m sample_bot)

Settings come from the environment and ``.env``, as for the library.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from . import doctor
from ._version import __version__
from .config import Config
from .doctor import HEALTH_KEY, HEALTH_SCOPE
from .errors import ConfigError, StoreError
from .mirror import Mirror
from .store import parse_store_url


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["emulator"]:
        from .testing.__main__ import main as emulator

        return emulator(args[1:], prog="chatwoot-mirror emulator") or 0
    if args[:1] == ["demo"]:
        # the sample ships inside the package as chatwoot_mirror.sample_bot
        demo = importlib.import_module("chatwoot_mirror.sample_bot.__main__")
        return int(demo.main(args[1:], prog="chatwoot-mirror demo") or 0)
    parser = _parser()
    options = parser.parse_args(args)
    if options.command is None:
        parser.print_help(out)
        return 2
    try:
        return options.run(options, out)
    except ConfigError as exc:
        print(f"configuration problem: {exc}", file=out)
        return 1
    except StoreError as exc:
        print(f"store problem: {exc}", file=out)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatwoot-mirror",
                                     description="Mirror a bot into Chatwoot: operations.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command")
    check = commands.add_parser("doctor", help="check the configuration against Chatwoot")
    check.set_defaults(run=_doctor)
    status = commands.add_parser("status", help="outbox, dead letters, paused contacts")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(run=_status)
    flush = commands.add_parser("flush", help="deliver what is queued, then exit")
    flush.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    flush.set_defaults(run=_flush)
    retry = commands.add_parser("retry-dead", help="queue the dead letters again")
    retry.add_argument("keys", nargs="*", help="only these message keys (default: all)")
    retry.set_defaults(run=_retry_dead)
    commands.add_parser("emulator", help="run the Chatwoot emulator (see emulator --help)")
    commands.add_parser("demo", help="run the sample bot and its web console (see demo --help)")
    return parser


def _doctor(options: argparse.Namespace, out: TextIO) -> int:
    checks = doctor.run()
    for check in checks:
        label = "PROBLEM" if not check.ok else "warning" if check.warning else "ok     "
        print(f"{label} {check.name}: {check.detail}", file=out)
        if check.fix and (not check.ok or check.warning):
            print(f"        fix: {check.fix}", file=out)
    problems = sum(not c.ok for c in checks)
    warnings = sum(c.ok and c.warning for c in checks)
    if problems:
        print(f"{problems} problem(s), {warnings} warning(s)", file=out)
    elif warnings:
        print(f"it will work; {warnings} warning(s)", file=out)
    else:
        print("everything looks right", file=out)
    return 1 if problems else 0


def _offline_mirror() -> Mirror:
    """The store and counters, without workers: reading it changes nothing."""
    return Mirror(Config.from_env(), start=False)


def _status(options: argparse.Namespace, out: TextIO) -> int:
    config = Config.from_env()
    scheme, path = parse_store_url(config.store)
    if config.enabled and (scheme == "memory" or (scheme == "sqlite"
                                                  and not os.path.exists(path))):
        # reading must not create a store where none exists (memory:// never has one here)
        if options.json:
            print(json.dumps({"store": None, "queued": 0, "dead_letters": 0,
                              "paused_contacts": []}), file=out)
        else:
            print(f"no store at {config.store} yet: nothing queued, nobody paused", file=out)
        return 0
    mirror = Mirror(config, start=False)
    if not mirror.enabled:
        print("mirroring is disabled (CHATWOOT_ENABLED=false)", file=out)
        return 0
    try:
        stats = mirror.stats()
        if stats["queued"] is None:
            print(f"the store does not answer: {stats['store_error']}", file=out)
            return 1
        paused = mirror.handoff_state.paused()
        dead = mirror.dead_letters(limit=20)
        # what the running mirrors last saw of Chatwoot (this process sends nothing)
        seen = mirror.store.get_value(HEALTH_SCOPE, HEALTH_KEY, time.time())
    finally:
        mirror.store.close()
    report = {
        "queued": stats["queued"], "in_flight": stats["in_flight"],
        "oldest_queued_age_seconds": round(stats["oldest_queued_age"], 1),
        "spilled": stats["spilled"],
        "oldest_spilled_age_seconds": round(stats["oldest_spilled_age"], 1),
        "dead_letters": stats["dead_letters"],
        "paused_contacts": [{"contact": p.contact_key, "reason": p.reason,
                             "since": p.changed_at, "conversation": p.conversation_id}
                            for p in paused],
        "recent_dead_letters": dead,
        "chatwoot": _seen(seen),
    }
    if options.json:
        print(json.dumps(report, indent=2), file=out)
        return 0
    print(f"queued: {report['queued']} (in flight {report['in_flight']}, oldest "
          f"{report['oldest_queued_age_seconds']} s)", file=out)
    if report["spilled"]:
        print(f"spilled: {report['spilled']} write(s) kept locally while the store was "
              f"away (oldest {report['oldest_spilled_age_seconds']} s), moved as it "
              "answers", file=out)
    chatwoot = report["chatwoot"]
    if chatwoot:
        line = (f"chatwoot: {chatwoot['health']} since {_when(chatwoot['since'])} "
                f"(as a mirror saw it at {_when(chatwoot['seen_at'])})")
        if chatwoot["last_error"]:
            line += (f"; last error at {_when(chatwoot['last_error_at'])}: "
                     f"{chatwoot['last_error']}")
        print(line, file=out)
    else:
        print("chatwoot: not seen by any mirror yet", file=out)
    print(f"dead letters: {report['dead_letters']}", file=out)
    for item in dead:
        print(f"  {item['key']} contact={item['contact']} reason={item['reason']}", file=out)
    print(f"paused contacts (with humans): {len(paused)}", file=out)
    for p in paused:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(p.changed_at)) if (
            p.changed_at) else "?"
        print(f"  {p.contact_key} reason={p.reason} since={when} "
              f"conversation={p.conversation_id}", file=out)
    return 0


def _seen(text: str | None) -> dict[str, Any] | None:
    """The health record a mirror wrote (:mod:`.activity`), for ``status``."""
    if not text:
        return None
    seen = json.loads(text)
    state = seen.get("state") or ("ok" if seen.get("ok") else "degraded")
    return {"health": state, "since": seen.get("since") or seen.get("at"),
            "seen_at": seen.get("at"), "last_error": seen.get("last_error") or seen.get("error"),
            "last_error_at": seen.get("last_error_at") or (None if seen.get("ok") else
                                                           seen.get("at"))}


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "?"


def _flush(options: argparse.Namespace, out: TextIO) -> int:
    with Mirror.from_env() as mirror:
        if not mirror.enabled:
            print("mirroring is disabled (CHATWOOT_ENABLED=false)", file=out)
            return 0
        done = mirror.flush(options.timeout)
        stats = mirror.stats()
        counts = (f"{stats['delivered']} delivered, {stats['retried']} retried, "
                  f"{stats['queued']} still queued, {stats['dead_letters']} dead letters")
        mirror.close(timeout=0)
        if not done:
            print(f"not finished within {options.timeout:g} s: {counts}", file=out)
            return 1
        if stats["dead_letters"]:
            print(f"flushed, but Chatwoot refused some messages for good: {counts}; "
                  "'chatwoot-mirror status' shows why, 'chatwoot-mirror retry-dead' queues "
                  "them again", file=out)
            return 1
        print(f"delivered everything: {counts}", file=out)
        return 0


def _retry_dead(options: argparse.Namespace, out: TextIO) -> int:
    mirror = _offline_mirror()
    if not mirror.enabled:
        print("mirroring is disabled (CHATWOOT_ENABLED=false)", file=out)
        return 0
    try:
        count = mirror.retry_dead(options.keys or None)
    finally:
        mirror.store.close()
    print(f"{count} dead letter(s) queued again; a running bot (or chatwoot-mirror flush) "
          "delivers them", file=out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
