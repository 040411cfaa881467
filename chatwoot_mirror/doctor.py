"""``chatwoot-mirror doctor``: is this configuration going to work? Each problem with its fix.

Checks, in order (a failed step stops the ones that depend on it):

1. the configuration loads (every ``CHATWOOT_*`` variable valid);
2. the local store opens;
3. Chatwoot answers at ``CHATWOOT_URL`` and the inbox identifier exists;
4. with ``CHATWOOT_API_TOKEN``: the API inbox's settings, read through the Application
   API: a webhook URL is set, points where Chatwoot may call (Chatwoot >= 4.14 refuses
   private and loopback targets unless ``SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true``), its
   webhooks can be verified (secret or URL token), and ``lock_to_single_conversation`` is on.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import requests

from .client import ChatwootClient
from .config import Config
from .errors import AuthError, ChatwootError, ConfigError, NotFound, StoreError
from .store import SQLiteStore


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def run(
    environ: Mapping[str, str] | None = None,
    *,
    dotenv: bool = True,
    session: requests.Session | None = None,
) -> list[Check]:
    """Every check's outcome; the configuration is read like ``Config.from_env``."""
    checks: list[Check] = []
    try:
        config = Config.from_env(environ, dotenv=dotenv)
    except ConfigError as exc:
        return [Check("configuration", False, str(exc),
                      f"set {exc.variable} in the environment or .env (see .env.example)")]
    if not config.enabled:
        return [Check("configuration", True, "CHATWOOT_ENABLED=false: mirroring is off")]
    checks.append(Check("configuration", True, f"Chatwoot at {config.url}"))
    try:
        SQLiteStore(config.db_path).close()
        checks.append(Check("store", True, config.db_path))
    except StoreError as exc:
        checks.append(Check("store", False, str(exc),
                            "point CHATWOOT_MIRROR_DB at a writable file"))
    client = ChatwootClient(
        config.url, config.inbox_identifier, account_id=config.account_id,
        bot_token=config.bot_token, api_token=config.api_token,
        connect_timeout=config.connect_timeout, read_timeout=config.read_timeout,
        session=session,
    )
    try:
        inbox = client.get_inbox()
    except NotFound:
        checks.append(Check(
            "inbox", False, "Chatwoot answers, but has no inbox with this identifier",
            "copy the API inbox's 'Inbox Identifier' (Settings > Inboxes > your API inbox > "
            "Configuration) into CHATWOOT_INBOX_ID"))
        return checks
    except ChatwootError as exc:
        checks.append(Check(
            "chatwoot", False, f"Chatwoot is not reachable: {exc}",
            "check CHATWOOT_URL (the address you open Chatwoot at, without /app) and that "
            "this machine can reach it"))
        return checks
    checks.append(Check("inbox", True, f"inbox {inbox.get('name')!r} found"))
    if not config.has_bot_token:
        checks.append(Check(
            "bot token", True, "not set: bot replies are shown as customer messages with "
            f"the prefix {config.bot_prefix!r}"))
    if not config.api_token:
        checks.append(Check(
            "inbox settings", True, "not checked: set CHATWOOT_API_TOKEN (a user's access "
            "token, Profile settings) to check the webhook URL, secret and conversation lock"))
        return checks
    checks.extend(_inbox_settings(client, config))
    return checks


def _inbox_settings(client: ChatwootClient, config: Config) -> list[Check]:
    try:
        inboxes = client.list_inboxes()
    except AuthError as exc:
        return [Check("inbox settings", False, f"CHATWOOT_API_TOKEN was refused: {exc}",
                      "use the access token of an administrator (Profile settings > Access "
                      "token) and the right CHATWOOT_ACCOUNT_ID")]
    except ChatwootError as exc:
        return [Check("inbox settings", False, f"inboxes could not be read: {exc}",
                      "check CHATWOOT_ACCOUNT_ID")]
    inbox = next((i for i in inboxes if i.get("inbox_identifier") == config.inbox_identifier),
                 None)
    if inbox is None:
        return [Check("inbox settings", False, "the inbox is not in this account",
                      "set CHATWOOT_ACCOUNT_ID to the account of the API inbox (the number "
                      "after /accounts/ in Chatwoot's address bar)")]
    checks = []
    url = str(inbox.get("webhook_url") or inbox.get("callback_webhook_url") or "")
    if not url:
        checks.append(Check(
            "webhook url", False, "the inbox has no webhook URL: agents' replies never reach "
            "the bot", "set the inbox's Webhook URL to https://<your bot>/chatwoot/webhook"))
    elif _private(urlsplit(url).hostname or ""):
        checks.append(Check(
            "webhook url", False, f"{url} is a private or loopback address",
            "Chatwoot >= 4.14 refuses to call private addresses: use a public address for "
            "the bot, or have Chatwoot's operator set SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true"))
    else:
        checks.append(Check("webhook url", True, url))
    checks.append(_verification(inbox, url, config))
    if inbox.get("lock_to_single_conversation"):
        checks.append(Check("conversation lock", True, "lock_to_single_conversation is on"))
    else:
        checks.append(Check(
            "conversation lock", False, "lock_to_single_conversation is off: Chatwoot opens a "
            "new conversation whenever the last one is resolved",
            "turn on 'Lock to single conversation' in the inbox's settings (or keep it off "
            "on purpose and set CHATWOOT_RESOLVED_POLICY=new)"))
    return checks


def _verification(inbox: Mapping[str, object], url: str, config: Config) -> Check:
    secret = inbox.get("secret")
    if secret:
        if not config.webhook_secret:
            return Check("webhook secret", False, "the inbox signs its webhooks but "
                         "CHATWOOT_WEBHOOK_SECRET is not set",
                         "copy the inbox's webhook secret into CHATWOOT_WEBHOOK_SECRET")
        if secret != config.webhook_secret:
            return Check("webhook secret", False, "CHATWOOT_WEBHOOK_SECRET differs from the "
                         "inbox's secret: every webhook would be refused",
                         "copy the inbox's webhook secret into CHATWOOT_WEBHOOK_SECRET")
        return Check("webhook secret", True, "matches the inbox's secret")
    if config.webhook_token:
        token = parse_qs(urlsplit(url).query).get("token", [""])[0]
        if token != config.webhook_token:
            return Check("webhook secret", False, "the webhook URL does not carry "
                         "CHATWOOT_WEBHOOK_TOKEN", "end the inbox's Webhook URL with "
                         "?token=<CHATWOOT_WEBHOOK_TOKEN>")
        return Check("webhook secret", True, "the webhook URL carries CHATWOOT_WEBHOOK_TOKEN")
    if config.webhook_insecure:
        return Check("webhook secret", True, "unverified on purpose (CHATWOOT_WEBHOOK_INSECURE)")
    return Check("webhook secret", False, "this Chatwoot does not sign webhooks (< 4.13) and "
                 "no CHATWOOT_WEBHOOK_TOKEN is set", "set CHATWOOT_WEBHOOK_TOKEN to a long "
                 "random string and end the inbox's Webhook URL with ?token=<it>")


def _private(host: str) -> bool:
    """True for loopback, private and link-local addresses (and names that resolve to
    one); an unresolvable name is left to Chatwoot."""
    if not host:
        return False
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        addresses = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            addresses = {ipaddress.ip_address(info[4][0])
                         for info in socket.getaddrinfo(host, None)}
        except (OSError, ValueError):
            return False
    return any(a.is_private or a.is_loopback or a.is_link_local for a in addresses)
