"""``chatwoot-mirror doctor``: is this configuration going to work? Every problem with its fix.

Checks, in order; a failed step skips only the checks that depend on it, so every
independent problem is reported in one run:

1. the configuration loads (every ``CHATWOOT_*`` variable valid; unknown names warned);
2. the local store: its folder is writable (no file is created where none exists), and,
   when it exists, its dead letters, the age of its oldest queued message and the Chatwoot
   health the mirror last saw;
3. Chatwoot answers at ``CHATWOOT_URL`` and the inbox identifier exists;
4. the Agent Bot token and account, with a request the token may make;
5. with ``CHATWOOT_API_TOKEN``: the API inbox's settings, read through the Application
   API: a webhook URL is set, points where Chatwoot may call (Chatwoot >= 4.14 refuses
   private and loopback targets unless ``SAFE_FETCH_ALLOW_PRIVATE_NETWORK=true``), its
   webhooks can be verified (secret or URL token), and ``lock_to_single_conversation`` is on.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from .client import ChatwootClient
from .config import PREFIX, VARIABLES, Config, likely_variable, read_environment
from .errors import AuthError, ChatwootError, ConfigError, NotFound, StoreError
from .store import REDIS_SCHEMES, Store, open_store, parse_store_url

#: A queued message older than this means nothing is delivering.
STUCK_AFTER_SECONDS = 300.0
#: Where the mirror writes the Chatwoot health it last saw (the store's key-value scope).
HEALTH_SCOPE, HEALTH_KEY = "mirror", "chatwoot_health"


@dataclass(frozen=True)
class Check:
    """One outcome: a problem (``ok=False``, with its ``fix``), a warning (``ok=True``,
    ``warning=True``: it works, but something is lost) or fine."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False


def run(
    environ: Mapping[str, str] | None = None,
    *,
    dotenv: bool = True,
    session: requests.Session | None = None,
) -> list[Check]:
    """Every check's outcome; the configuration is read like ``Config.from_env``."""
    checks: list[Check] = _unknown_variables(environ, dotenv)
    try:
        config = Config.from_env(environ, dotenv=dotenv)
    except ConfigError as exc:
        return checks + [Check("configuration", False, str(exc), exc.fix)]
    if not config.enabled:
        return checks + [Check("configuration", True, "CHATWOOT_ENABLED=false: mirroring is off")]
    checks.append(Check("configuration", True, f"Chatwoot at {config.url}"))
    checks.extend(_store(config))
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
        inbox = None
    except ChatwootError as exc:
        checks.append(Check(
            "chatwoot", False, f"Chatwoot is not reachable: {exc}",
            "check CHATWOOT_URL (the address you open Chatwoot at, without /app) and that "
            "this machine can reach it"))
        return checks  # everything below asks Chatwoot
    if inbox is not None:
        checks.append(Check("inbox", True, f"inbox {inbox.get('name')!r} found"))
    checks.append(_bot_token(client, config))
    if not config.api_token:
        # Agent Bot tokens may not PATCH a message's status (Chatwoot's
        # MessagesController#update): what the receipts can still say is a note
        checks.append(Check(
            "delivery status", True, "without CHATWOOT_API_TOKEN delivery ticks (delivered, "
            "read) are skipped, and a message the provider could not deliver is shown as a "
            "private note instead of a failed status", warning=True))
        checks.append(Check(
            "inbox settings", True, "not checked: set CHATWOOT_API_TOKEN (a user's access "
            "token, Profile settings) to check the webhook URL, secret and conversation lock",
            warning=True))
        return checks
    if inbox is not None:
        checks.extend(_inbox_settings(client, config))
    checks.append(_bot_error_setting(client, config))
    return checks


def _bot_error_setting(client: ChatwootClient, config: Config) -> Check:
    """Whether Chatwoot opens pending conversations when its webhook to the bot fails
    (account setting keep_pending_on_bot_failure, Chatwoot >= 4.11), and what we do then."""
    ours = ("the mirror puts them back to pending and the bot keeps answering"
            if config.bot_error_policy == "pending" else
            "the mirror leaves them to agents (CHATWOOT_BOT_ERROR_POLICY=humans)")
    try:
        settings = client.get_account().get("settings")
    except ChatwootError as exc:
        return Check("bot errors", True, f"account settings could not be read ({exc}); "
                     f"when Chatwoot opens a conversation on a bot error, {ours}",
                     warning=True)
    if not isinstance(settings, dict) or "keep_pending_on_bot_failure" not in settings:
        return Check("bot errors", True, "this Chatwoot does not show "
                     "keep_pending_on_bot_failure (older than 4.11): a webhook to the bot that "
                     f"fails or takes over 5 s opens pending conversations; {ours}")
    if settings.get("keep_pending_on_bot_failure"):
        return Check("bot errors", True, "the account keeps conversations pending when "
                     "Chatwoot's webhook to the bot fails (keep_pending_on_bot_failure)")
    return Check("bot errors", True, "the account does not keep conversations pending on bot "
                 "failure: a webhook to the bot that fails or takes over 5 s opens them; "
                 f"{ours}")


def _unknown_variables(environ: Mapping[str, str] | None, dotenv: bool) -> list[Check]:
    checks = []
    for name in sorted(read_environment(environ, dotenv=dotenv)):
        if name.startswith(PREFIX) and name not in VARIABLES:
            guess = likely_variable(name)
            checks.append(Check(name, True, "is not a chatwoot-mirror setting and is ignored",
                                f"rename it to {guess}" if guess else "remove it or fix its name",
                                warning=True))
    return checks


def _store(config: Config) -> list[Check]:
    scheme, path = parse_store_url(config.store)
    variable = "CHATWOOT_MIRROR_STORE" if config.store_url else "CHATWOOT_MIRROR_DB"
    if scheme == "memory":
        return [Check("store", True, "memory:// keeps nothing outside the process that "
                      "opened it: nothing here to inspect", warning=True)]
    if scheme == "sqlite" and not os.path.exists(path):
        folder = os.path.dirname(os.path.abspath(path))
        parent = folder
        while not os.path.exists(parent):  # the store creates missing folders
            parent = os.path.dirname(parent)
        if os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK):
            return [Check("store", True, f"no file yet at {path}: it is created with the "
                          "first message")]
        return [Check("store", False, f"cannot create {path}: {parent} is not a writable "
                      "folder", f"point {variable} at a file in a writable folder")]
    fix = (f"point {variable} at a writable file" if scheme == "sqlite" else
           f"start Redis, or point {variable} at one that answers")
    shown = path if scheme == "sqlite" else _without_password(path)
    try:
        store = open_store(config.store, spill=config.spill)
    except (StoreError, ConfigError) as exc:
        return [Check("store", False, str(exc), fix)]
    try:
        spill = _spill(config, store) if scheme in REDIS_SCHEMES else []
        now = time.time()
        counts = store.outbox_counts(now)
        dead = store.dead_letters(limit=1)
        health = store.get_value(HEALTH_SCOPE, HEALTH_KEY, now)
        durability = store.durability_warning()
        eviction, lost, replicas = (store.eviction_warning(), store.data_loss(),
                                    store.replication())
    except StoreError as exc:
        return [Check("store", False, f"{shown}: {exc}", fix), *spill]
    finally:
        store.close()
    checks = [Check("store", True, shown), *spill]
    if durability:
        checks.append(Check("durability", True, durability, warning=True))
    if eviction:
        checks.append(Check("eviction", False, eviction,
                            "redis-cli CONFIG SET maxmemory-policy noeviction (and in "
                            "redis.conf, or your provider's parameter group)"))
    if lost:
        checks.append(Check("data loss", False, lost, "turn on appendonly (see "
                            "'durability'); compare Chatwoot with your bot's own records "
                            "for that time"))
    if replicas:
        checks.append(Check("replicas", True, replicas, warning="0 connected" in replicas))
    if counts.dead:
        checks.append(Check(
            "dead letters", False, f"{counts.dead} message(s) Chatwoot refused for good; "
            f"the oldest: {dead[0].last_error if dead else '?'}",
            "read them with 'chatwoot-mirror status', fix the cause, then run "
            "'chatwoot-mirror retry-dead'"))
    age = now - counts.oldest_queued_at if counts.oldest_queued_at else 0.0
    if counts.queued and age > STUCK_AFTER_SECONDS:
        checks.append(Check(
            "outbox", False, f"{counts.queued} message(s) queued, the oldest for "
            f"{age / 60:.0f} min", "is a bot running with this store and Chatwoot up? "
            "'chatwoot-mirror flush' delivers them now"))
    else:
        checks.append(Check("outbox", True, f"{counts.queued} queued"
                            + (f", the oldest for {age:.0f} s" if counts.queued else "")))
    if health:
        seen = json.loads(health)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(seen.get("at", 0))))
        if seen.get("ok"):
            checks.append(Check("last seen", True, f"Chatwoot accepted a message at {when}"))
        else:
            checks.append(Check("last seen", True, f"Chatwoot failed at {when}: "
                                f"{seen.get('error') or '?'}", warning=True))
    return checks


def _spill(config: Config, store: Store) -> list[Check]:
    """Where writes go while Redis is away: writable, and (after an outage) moved."""
    path = config.spill
    if path is None:
        return [Check("spill", True, "off (CHATWOOT_MIRROR_SPILL=off): while Redis is away, "
                      "exchanges are lost", "set CHATWOOT_MIRROR_SPILL to a local file",
                      warning=True)]
    folder = os.path.dirname(os.path.abspath(path))
    if not (os.path.isdir(folder) and os.access(folder, os.W_OK | os.X_OK)) or (
            os.path.exists(path) and not os.access(path, os.W_OK)):
        return [Check("spill", False, f"cannot write {path}: while Redis is away, "
                      "exchanges would be lost", "point CHATWOOT_MIRROR_SPILL at a file in a "
                      "writable local folder")]
    count, oldest = store.spilled()
    if count:
        age = time.time() - (oldest or time.time())
        return [Check("spill", True, f"{path}: {count} write(s) kept while Redis was away, "
                      f"the oldest for {age:.0f} s; a running mirror moves them into Redis",
                      warning=True)]
    return [Check("spill", True, f"{path}: empty")]


def _without_password(url: str) -> str:
    """A store URL fit for a report: the password never leaves the configuration."""
    parts = urlsplit(url)
    # by text, not .port: a Sentinel URL lists several host:port pairs; the Sentinels' own
    # password travels in the query
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "sentinel_password"])
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query=query))


def _bot_token(client: ChatwootClient, config: Config) -> Check:
    if not config.has_bot_token:
        return Check(
            "bot token", True, "not set: bot replies are posted as customer messages "
            f"prefixed {config.bot_prefix!r}, and a handoff cannot open, label or annotate "
            "the conversation", "create an Agent Bot (Settings > Bots), connect it to the "
            "API inbox, and set CHATWOOT_BOT_TOKEN and CHATWOOT_ACCOUNT_ID", warning=True)
    try:
        # A conversation that cannot exist: Chatwoot checks the token, then the bot's
        # right to the account (401), then looks the conversation up (404). An account
        # that does not exist is a 404 as well (Account.find), told apart below.
        client.get_conversation(0)
    except NotFound:
        return _account_exists(client, config)
    except AuthError as exc:
        if "invalid access token" in exc.detail.lower():
            return Check("bot token", False, f"Chatwoot refused CHATWOOT_BOT_TOKEN: {exc}",
                         "copy the Agent Bot's access token (Settings > Bots > your bot) "
                         "into CHATWOOT_BOT_TOKEN")
        return Check("bot token", False, f"the bot may not use account {config.account_id}: "
                     f"{exc}", "set CHATWOOT_ACCOUNT_ID to the number after /accounts/ in "
                     "Chatwoot's address bar, and connect the Agent Bot to the API inbox "
                     "(inbox settings > Bot configuration)")
    except ChatwootError as exc:
        return Check("bot token", False, f"could not be checked: {exc}",
                     "run doctor again when Chatwoot answers")
    return Check("bot token", True, f"accepted for account {config.account_id}")


def _account_exists(client: ChatwootClient, config: Config) -> Check:
    fix = "set CHATWOOT_ACCOUNT_ID to the number after /accounts/ in Chatwoot's address bar"
    if not config.api_token:
        return Check("bot token", True, f"accepted for account {config.account_id} (without "
                     "CHATWOOT_API_TOKEN a missing account cannot be told from a missing "
                     "conversation: check the number if the first message fails)",
                     warning=True)
    try:
        client.get_account()
    except NotFound:
        return Check("bot token", False, f"account {config.account_id} does not exist in "
                     "this Chatwoot", fix)
    except ChatwootError as exc:
        return Check("bot token", True, f"accepted; account {config.account_id} could not "
                     f"be read with CHATWOOT_API_TOKEN: {exc}", warning=True)
    return Check("bot token", True, f"accepted for account {config.account_id}")


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
