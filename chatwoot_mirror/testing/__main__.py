"""Run the Chatwoot emulator standalone: ``python -m chatwoot_mirror.testing --port 3000``."""

from __future__ import annotations

import argparse
import sys

from .._args import port_number
from .._stop import wait_for_stop
from .emulator import Faults
from .server import FakeChatwoot
from .versions import DEFAULT_VERSION, parse


def chatwoot_version(value: str) -> str:
    try:
        parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def build_parser(prog: str = "python -m chatwoot_mirror.testing") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="A faithful fake Chatwoot (public client API, Application API, webhooks).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=port_number, default=3000, help="port (0 = any free port)")
    p.add_argument("--inbox-identifier", help="API inbox identifier (random if not given)")
    p.add_argument("--bot-token", help="AgentBot access token (random if not given)")
    p.add_argument("--user-token", help="user access token (random if not given)")
    p.add_argument("--webhook-url", help="the API inbox webhook URL (none if not given)")
    p.add_argument("--webhook-secret", help="signs webhooks when given (Chatwoot >= 4.13)")
    p.add_argument("--lock-to-single-conversation", action="store_true",
                   help="the inbox setting of the same name")
    p.add_argument("--bot-active", action="store_true",
                   help="an AgentBot is connected: new conversations start pending")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to each request")
    p.add_argument("--error-rate", type=float, default=0.0, help="share of requests that 500")
    p.add_argument("--rate-limit", type=int, default=None,
                   help="requests per minute before a bare 429 (Chatwoot's default is 3000)")
    p.add_argument("--hmac-token",
                   help="the inbox's HMAC token for identity validation (random if not given)")
    p.add_argument("--enforce-identity", action="store_true",
                   help="the inbox's 'enforce user identity' (hmac_mandatory): every public "
                        "contact call needs identifier_hash = HMAC-SHA256(token, identifier)")
    p.add_argument("--no-api-access", action="store_true",
                   help="a Chatwoot Cloud account without the api_and_webhooks feature: "
                        "token calls answer 403 (4.16.0 and later)")
    p.add_argument("--chatwoot-version", type=chatwoot_version, default=DEFAULT_VERSION,
                   help="the Chatwoot release to behave like, 4.10.0 to 4.16.2 (default "
                        f"{DEFAULT_VERSION}): bot endpoints, webhook signing, bot assignment")
    p.add_argument("--port-file", help="write the port here once listening (for scripts)")
    return p


def parse_args(argv: list[str] | None = None, prog: str | None = None) -> argparse.Namespace:
    """The command line's options; a wrong one exits 2 with argparse's message."""
    parser = build_parser(prog) if prog else build_parser()
    args = parser.parse_args(argv)
    if args.enforce_identity and not args.hmac_token:
        # a random token nobody knows would refuse every contact call
        parser.error("--enforce-identity needs --hmac-token (the token clients hash with)")
    return args


def build(argv: list[str] | None = None, prog: str | None = None) -> FakeChatwoot:
    """The emulator the command line describes, not started."""
    return from_args(parse_args(argv, prog))


def from_args(args: argparse.Namespace) -> FakeChatwoot:
    return FakeChatwoot(
        host=args.host,
        port=args.port,
        inbox_identifier=args.inbox_identifier,
        bot_token=args.bot_token,
        user_token=args.user_token,
        webhook_url=args.webhook_url,
        webhook_secret=args.webhook_secret,
        lock_to_single_conversation=args.lock_to_single_conversation,
        bot_active=args.bot_active,
        hmac_token=args.hmac_token,
        hmac_mandatory=args.enforce_identity,
        faults=Faults(latency=args.latency, error_rate=args.error_rate,
                      rate_limit_per_minute=args.rate_limit),
        chatwoot_version=args.chatwoot_version,
        api_access=not args.no_api_access,
    )


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = parse_args(argv, prog)
    emulator = from_args(args)
    try:
        chatwoot = emulator.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; "
              f"try --port {args.port + 1 if args.port else 3001} (or --port 0 for any free "
              "port)", file=sys.stderr)
        return 2
    shown = {
        "url": chatwoot.url,
        "inbox identifier": chatwoot.inbox_identifier
        + ("" if args.inbox_identifier else " (random)"),
        "account id": chatwoot.account_id,
        "bot token": chatwoot.bot_token + ("" if args.bot_token else " (random)"),
        "user token": chatwoot.user_token + ("" if args.user_token else " (random)"),
        "webhook url": args.webhook_url or "(none)",
        "webhook secret": "(set)" if args.webhook_secret else "(none: webhooks unsigned)",
        "lock to single conversation": args.lock_to_single_conversation,
        "bot active": args.bot_active,
        "latency": f"{args.latency}s",
        "enforce user identity": args.enforce_identity,
        "behaves like chatwoot": args.chatwoot_version,
    }
    print("fake Chatwoot listening")  # a test double: printing its own tokens is the point
    for name, value in shown.items():
        print(f"  {name:<28} {value}")
    print("\nfor your .env (pass the same --inbox-identifier, --bot-token and --user-token "
          "next time and it stays valid):")
    for name, value in {**chatwoot.env(), "CHATWOOT_API_TOKEN": chatwoot.user_token}.items():
        print(f"{name}={value}")
    sys.stdout.flush()
    if args.port_file:
        with open(args.port_file, "w") as f:
            f.write(str(chatwoot.port))
    wait_for_stop()
    chatwoot.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
