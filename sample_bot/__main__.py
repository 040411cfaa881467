"""``python -m sample_bot [--port 5000] [--host 127.0.0.1]``: the whole loop in one command."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading

from dotenv import load_dotenv
from werkzeug.serving import make_server

from chatwoot_mirror._args import port_number
from chatwoot_mirror._stop import wait_for_stop
from chatwoot_mirror.errors import ConfigError

from .app import build


def main(argv: list[str] | None = None, prog: str = "python -m sample_bot") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=(
        "A pt-BR FAQ bot mirrored into Chatwoot, with a web console. Without CHATWOOT_URL "
        "it runs against the built-in Chatwoot emulator."))
    parser.add_argument("--port", type=port_number, default=os.environ.get("PORT") or "5000",
                        help="port to listen on (default: $PORT or 5000)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (0.0.0.0 to accept other machines)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s "
                        "%(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    load_dotenv(".env", override=False)
    try:
        server = make_server(args.host, args.port, app=None, threaded=True)  # type: ignore[arg-type]
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}; try --port 5001",
              file=sys.stderr)
        return 2
    try:
        sample = build(server.server_port, host=args.host)
    except ConfigError as exc:
        print(f"configuration problem: {exc}", file=sys.stderr)
        server.server_close()
        return 2
    server.app = sample.app
    mode = "the built-in Chatwoot emulator" if sample.chatwoot else sample.mirror.config.url
    print(f"sample bot mirroring into {mode}")
    for name, url in sample.urls().items():
        print(f"  {name:<22} {url}")
    print("open the console in a browser; Ctrl+C stops")
    sys.stdout.flush()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                     daemon=True).start()
    wait_for_stop()
    # Every stage below is bounded (the server's poll, the mirror's 2 s drain and 5 s stop,
    # the store's 1 s close, the emulator's 2 s stop): the watchdog only tells if one
    # ever is not, naming what still runs, instead of a process that never exits.
    watchdog = threading.Timer(SHUTDOWN_SECONDS, _overdue)
    watchdog.daemon = True
    watchdog.start()
    server.shutdown()
    # closed too, so Chatwoot's webhooks while the mirror drains are refused at once
    # instead of waiting on a socket nobody serves
    server.server_close()
    sample.close()
    watchdog.cancel()
    return 0


#: The longest the sample may take to stop after SIGTERM or Ctrl+C (seconds).
SHUTDOWN_SECONDS = 15.0


def _overdue() -> None:
    running = sorted(t.name for t in threading.enumerate() if t is not threading.current_thread())
    logging.getLogger("sample_bot").error(
        "shutdown overdue after %.0fs, exiting; still running threads=%s", SHUTDOWN_SECONDS,
        ",".join(running))
    logging.shutdown()
    os._exit(1)


if __name__ == "__main__":
    raise SystemExit(main())
