"""Configuration from the environment and ``.env``.

Every variable is declared once in :data:`VARIABLES`; ``.env.example`` documents
the same list (a test keeps the two in step). Wrong values fail at start-up with
a :class:`~chatwoot_mirror.errors.ConfigError` naming the variable and the fix.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from urllib.parse import urlsplit

from ._notice import tell_operator
from .errors import ConfigError
from .texts import DEFAULTS, LANGUAGES
from .triggers import BusinessHours

PREFIX = "CHATWOOT_"
log = logging.getLogger("chatwoot_mirror.config")

#: Variables this library reads, with a one-line meaning (used for "did you mean").
VARIABLES: dict[str, str] = {
    "CHATWOOT_ENABLED": "false turns every call into a cheap no-op returning False",
    "CHATWOOT_URL": "Chatwoot base URL, e.g. https://chat.example.com",
    "CHATWOOT_INBOX_ID": "the API inbox's Inbox Identifier (a token, not the number)",
    "CHATWOOT_INBOX_IDENTIFIER": "alias of CHATWOOT_INBOX_ID",
    "CHATWOOT_ACCOUNT_ID": "account number, needed with CHATWOOT_BOT_TOKEN or CHATWOOT_API_TOKEN",
    "CHATWOOT_BOT_TOKEN": "AgentBot access token: bot replies become real outgoing bot messages",
    "CHATWOOT_API_TOKEN": "user access token: delivery receipts and doctor checks",
    "CHATWOOT_WEBHOOK_SECRET": "API inbox / agent bot webhook secret (X-Chatwoot-Signature)",
    "CHATWOOT_WEBHOOK_TOKEN": "for Chatwoot < 4.13: a secret the webhook URL must carry",
    "CHATWOOT_HMAC_TOKEN": "the inbox hmac_token, when identity validation is enforced",
    "CHATWOOT_MIRROR_DB": "SQLite file of the local store",
    "CHATWOOT_RESOLVED_POLICY": "reopen (continue the last conversation) or new",
    "CHATWOOT_BOT_PREFIX": "prefix of bot replies when no bot token is set",
    "CHATWOOT_BR_NINTH_DIGIT": "treat Brazilian mobiles with and without the 9th digit as one",
    "CHATWOOT_DEFAULT_COUNTRY_CODE": "country code for bare national numbers, e.g. 55",
    "CHATWOOT_CONNECT_TIMEOUT": "seconds to open a connection to Chatwoot",
    "CHATWOOT_READ_TIMEOUT": "seconds to wait for Chatwoot's answer",
    "CHATWOOT_WORKERS": "delivery threads per process",
    "CHATWOOT_MAX_REQUESTS_PER_MINUTE": "shared pace of requests to Chatwoot; 0 = no limit",
    "CHATWOOT_RETRY_BASE_SECONDS": "first retry delay; doubles per failed attempt",
    "CHATWOOT_RETRY_MAX_SECONDS": "longest delay between two attempts",
    "CHATWOOT_CLAIM_TTL_SECONDS": "how long a crashed process's claims block other workers",
    "CHATWOOT_DRAIN_SECONDS": "how long close() waits for queued messages",
    "CHATWOOT_WEBHOOK_INSECURE": "true accepts unverified webhooks (neither secret nor token)",
    "CHATWOOT_WEBHOOK_MAX_AGE_SECONDS": "signed webhooks older than this are rejected",
    "CHATWOOT_RESUME_AFTER_MINUTES": "resume the bot this long after the last human message",
    "CHATWOOT_RESUME_ON_UNASSIGN": "resume the bot when the human assignee is removed",
    "CHATWOOT_RELAY_TEMPLATES": "also send Chatwoot's own template messages to the customer",
    "CHATWOOT_RELAY_MAX_ATTEMPTS": "tries to send an agent's reply before reporting it failed",
    "CHATWOOT_LANGUAGE": "language of the default customer texts: pt-BR, es or en",
    "CHATWOOT_TEXT_HANDOFF": "text sent to the customer on a handoff ('' = none)",
    "CHATWOOT_TEXT_AFTER_HOURS": "text sent to the customer outside business hours ('' = none)",
    "CHATWOOT_TEXT_RESUME": "text sent to the customer when the bot resumes",
    "CHATWOOT_RESUME_NOTICE": "true sends the resume text when the bot takes over again",
    "CHATWOOT_HANDOFF_KEYWORDS": "comma-separated words that hand the customer to humans",
    "CHATWOOT_MAX_BOT_TURNS": "hand over after this many bot replies in a row (0 = never)",
    "CHATWOOT_BUSINESS_HOURS": "e.g. mon-fri 08:00-18:00;sat 09:00-12:00",
    "CHATWOOT_TIMEZONE": "timezone of the business hours, e.g. America/Sao_Paulo",
    "CHATWOOT_TEXT_NO_AGENT": "text when no agent is online; {protocol} = conversation number",
    "CHATWOOT_HANDOFF_LABEL": "label put on conversations the bot hands over",
    "CHATWOOT_TRANSCRIPT_MESSAGES": "messages quoted in the handoff's private note",
    "CHATWOOT_MEDIA_MAX_MB": "customer files larger than this are mirrored as a text note",
    "CHATWOOT_MEDIA_DOWNLOAD_SECONDS": "total time budget of one file download",
    "CHATWOOT_MEDIA_ALLOWED_HOSTS": "comma-separated private hosts files may be fetched from",
    "CHATWOOT_METRICS": "true serves Prometheus metrics at the blueprint's /metrics",
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_API_SUFFIXES = ("/public/api/v1", "/api/v1", "/app")


@dataclass(frozen=True)
class Config:
    """Validated settings. Build it with :meth:`from_env` or directly (then call nothing else:
    ``__post_init__`` validates)."""

    url: str = ""
    inbox_identifier: str = ""
    enabled: bool = True
    account_id: int | None = None
    bot_token: str | None = None
    api_token: str | None = None
    webhook_secret: str | None = None
    webhook_token: str | None = None
    hmac_token: str | None = None
    db_path: str = "./chatwoot_mirror.db"
    resolved_policy: str = "reopen"
    bot_prefix: str = "🤖 "
    br_ninth_digit: bool = True
    default_country_code: str | None = None
    connect_timeout: float = 3.05
    read_timeout: float = 10.0
    workers: int = 4
    max_requests_per_minute: int = 2400
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    claim_ttl_seconds: float = 30.0
    drain_seconds: float = 5.0
    webhook_insecure: bool = False
    webhook_max_age_seconds: float = 300.0
    resume_after_minutes: float = 0.0
    resume_on_unassign: bool = False
    relay_templates: bool = False
    relay_max_attempts: int = 5
    language: str = "pt-BR"
    text_handoff: str | None = None  # None: the language's default; "": send nothing
    text_after_hours: str | None = None
    text_resume: str | None = None
    resume_notice: bool = False
    handoff_keywords: tuple[str, ...] | None = None  # None: every language's defaults
    max_bot_turns: int = 0
    business_hours: str | None = None
    timezone: str | None = None
    text_no_agent: str | None = None
    handoff_label: str = "bot-handoff"
    transcript_messages: int = 10
    media_max_mb: float = 40.0  # Chatwoot's own default upload limit
    media_download_seconds: float = 120.0
    media_allowed_hosts: tuple[str, ...] = ()
    metrics: bool = False

    def __post_init__(self) -> None:
        if not self.enabled:
            return
        object.__setattr__(self, "url", _check_url(self.url))
        if not self.inbox_identifier:
            raise ConfigError(
                "CHATWOOT_INBOX_ID",
                "is not set; in Chatwoot open Settings > Inboxes > your API inbox > "
                "Configuration and copy the 'Inbox Identifier'",
            )
        if self.inbox_identifier.isdigit():
            raise ConfigError(
                "CHATWOOT_INBOX_ID",
                f"looks like the inbox number ({self.inbox_identifier}); the public API needs "
                "the 'Inbox Identifier' token shown in the API inbox's Configuration tab",
            )
        tokens = self.bot_token or self.api_token
        if self.account_id is None and tokens:
            which = "CHATWOOT_BOT_TOKEN" if self.bot_token else "CHATWOOT_API_TOKEN"
            raise ConfigError(
                "CHATWOOT_ACCOUNT_ID",
                f"is required with {which}; it is the number after /accounts/ in the "
                "Chatwoot URL",
                fix="set CHATWOOT_ACCOUNT_ID to the number after /accounts/ in Chatwoot's "
                "address bar",
            )
        if self.account_id is not None and not tokens:
            raise ConfigError(
                "CHATWOOT_ACCOUNT_ID",
                "is set without a token; set CHATWOOT_BOT_TOKEN (AgentBot access token) "
                "or remove CHATWOOT_ACCOUNT_ID",
                fix="remove CHATWOOT_ACCOUNT_ID, or set CHATWOOT_BOT_TOKEN (an Agent Bot's "
                "access token) beside it",
            )
        if self.account_id is not None and self.account_id <= 0:
            raise ConfigError("CHATWOOT_ACCOUNT_ID", "must be a positive integer")
        if self.resolved_policy not in ("reopen", "new"):
            raise ConfigError(
                "CHATWOOT_RESOLVED_POLICY",
                f"must be 'reopen' or 'new', not {self.resolved_policy!r}",
            )
        if self.default_country_code is not None and not (
            self.default_country_code.isdigit() and 1 <= len(self.default_country_code) <= 3
        ):
            raise ConfigError(
                "CHATWOOT_DEFAULT_COUNTRY_CODE", "must be 1 to 3 digits without '+', e.g. 55"
            )
        for f in fields(self):  # NaN slips past every comparison; inf overflows later
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(_variable(f.name), f"must be a finite number, not {value}")
        _check_range("CHATWOOT_CONNECT_TIMEOUT", self.connect_timeout, 0, 300, low_open=True)
        _check_range("CHATWOOT_READ_TIMEOUT", self.read_timeout, 0, 300, low_open=True)
        _check_range("CHATWOOT_WORKERS", self.workers, 1, 64)
        _check_range("CHATWOOT_MAX_REQUESTS_PER_MINUTE", self.max_requests_per_minute, 0,
                     100_000, hint="0 means no limit")
        _check_range("CHATWOOT_RETRY_MAX_SECONDS", self.retry_max_seconds, 0, 86_400,
                     low_open=True)
        if not 0 < self.retry_base_seconds <= self.retry_max_seconds:
            raise ConfigError(
                "CHATWOOT_RETRY_BASE_SECONDS",
                "must be positive and not above CHATWOOT_RETRY_MAX_SECONDS",
            )
        _check_range("CHATWOOT_CLAIM_TTL_SECONDS", self.claim_ttl_seconds, 1, 3600)
        _check_range("CHATWOOT_DRAIN_SECONDS", self.drain_seconds, 0, 3600)
        _check_range("CHATWOOT_WEBHOOK_MAX_AGE_SECONDS", self.webhook_max_age_seconds, 0,
                     86_400, low_open=True)
        if self.language not in LANGUAGES:
            raise ConfigError("CHATWOOT_LANGUAGE", f"must be one of {', '.join(LANGUAGES)}")
        _check_range("CHATWOOT_TRANSCRIPT_MESSAGES", self.transcript_messages, 0, 20)
        _check_range("CHATWOOT_MAX_BOT_TURNS", self.max_bot_turns, 0, 10_000,
                     hint="0 means never")
        if self.business_hours:
            BusinessHours.parse(self.business_hours, self.timezone)  # fail at start-up
        _check_range("CHATWOOT_RELAY_MAX_ATTEMPTS", self.relay_max_attempts, 1, 100)
        _check_range("CHATWOOT_RESUME_AFTER_MINUTES", self.resume_after_minutes, 0, 525_600,
                     hint="0 means never")
        _check_range("CHATWOOT_MEDIA_MAX_MB", self.media_max_mb, 0, 2048,
                     hint="0 means never upload files")
        _check_range("CHATWOOT_MEDIA_DOWNLOAD_SECONDS", self.media_download_seconds, 1, 3600)

    @property
    def has_bot_token(self) -> bool:
        return bool(self.bot_token and self.account_id)

    def __repr__(self) -> str:
        # Secrets stay out of reprs, which end up in logs and tracebacks.
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS and value:
                value = "***"
            shown.append(f"{f.name}={value!r}")
        return f"Config({', '.join(shown)})"

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        dotenv: bool | str = True,
    ) -> Config:
        """Read the settings from ``environ`` (default ``os.environ``) over a ``.env`` file.

        ``dotenv=True`` looks for ``.env`` from the working directory upwards; a string is a
        path; ``False`` reads no file. Values in the environment win over the file.
        """
        values: dict[str, str] = {}
        if dotenv:
            from dotenv import dotenv_values, find_dotenv

            path = dotenv if isinstance(dotenv, str) else find_dotenv(usecwd=True)
            if path:
                values.update({k: v for k, v in dotenv_values(path).items() if v is not None})
        values.update(os.environ if environ is None else environ)
        return cls._from_mapping(values)

    @classmethod
    def _from_mapping(cls, env: Mapping[str, str]) -> Config:
        ours = {k: v for k, v in env.items() if k.startswith(PREFIX)}
        for name in sorted(ours):
            if name not in VARIABLES:
                # A typo must not switch mirroring off; it must be seen, though.
                tell_operator(log, logging.WARNING, "%s is not a chatwoot-mirror setting "
                              "and is ignored; %s", name, unknown_variable_hint(name))

        def text(name: str) -> str | None:
            value = ours.get(name)
            if value is None:
                return None
            value = value.strip()
            return value or None

        enabled = _parse_bool("CHATWOOT_ENABLED", text("CHATWOOT_ENABLED"), True)
        if not enabled:
            return cls(enabled=False)

        inbox = text("CHATWOOT_INBOX_ID")
        alias = text("CHATWOOT_INBOX_IDENTIFIER")
        if inbox and alias and inbox != alias:
            raise ConfigError(
                "CHATWOOT_INBOX_IDENTIFIER",
                "differs from CHATWOOT_INBOX_ID; set only one of them",
            )
        url = text("CHATWOOT_URL")
        if not url:
            raise ConfigError(
                "CHATWOOT_URL", "is not set; use your Chatwoot address, e.g. https://chat.example.com"
            )
        return cls(
            url=url,
            inbox_identifier=inbox or alias or "",
            enabled=True,
            account_id=_parse_int("CHATWOOT_ACCOUNT_ID", text("CHATWOOT_ACCOUNT_ID")),
            bot_token=text("CHATWOOT_BOT_TOKEN"),
            api_token=text("CHATWOOT_API_TOKEN"),
            webhook_secret=text("CHATWOOT_WEBHOOK_SECRET"),
            webhook_token=text("CHATWOOT_WEBHOOK_TOKEN"),
            hmac_token=text("CHATWOOT_HMAC_TOKEN"),
            db_path=text("CHATWOOT_MIRROR_DB") or "./chatwoot_mirror.db",
            resolved_policy=(text("CHATWOOT_RESOLVED_POLICY") or "reopen").lower(),
            # The prefix keeps its trailing space, so it is read unstripped.
            bot_prefix=ours.get("CHATWOOT_BOT_PREFIX", "🤖 "),
            br_ninth_digit=_parse_bool(
                "CHATWOOT_BR_NINTH_DIGIT", text("CHATWOOT_BR_NINTH_DIGIT"), True
            ),
            default_country_code=(text("CHATWOOT_DEFAULT_COUNTRY_CODE") or "").lstrip("+")
            or None,
            connect_timeout=_parse_float(
                "CHATWOOT_CONNECT_TIMEOUT", text("CHATWOOT_CONNECT_TIMEOUT"), 3.05
            ),
            read_timeout=_parse_float("CHATWOOT_READ_TIMEOUT", text("CHATWOOT_READ_TIMEOUT"), 10.0),
            workers=_default(_parse_int("CHATWOOT_WORKERS", text("CHATWOOT_WORKERS")), 4),
            max_requests_per_minute=_default(
                _parse_int(
                    "CHATWOOT_MAX_REQUESTS_PER_MINUTE", text("CHATWOOT_MAX_REQUESTS_PER_MINUTE")
                ),
                2400,
            ),
            retry_base_seconds=_parse_float(
                "CHATWOOT_RETRY_BASE_SECONDS", text("CHATWOOT_RETRY_BASE_SECONDS"), 1.0
            ),
            retry_max_seconds=_parse_float(
                "CHATWOOT_RETRY_MAX_SECONDS", text("CHATWOOT_RETRY_MAX_SECONDS"), 300.0
            ),
            claim_ttl_seconds=_parse_float(
                "CHATWOOT_CLAIM_TTL_SECONDS", text("CHATWOOT_CLAIM_TTL_SECONDS"), 30.0
            ),
            drain_seconds=_parse_float("CHATWOOT_DRAIN_SECONDS", text("CHATWOOT_DRAIN_SECONDS"),
                                       5.0),
            webhook_insecure=_parse_bool(
                "CHATWOOT_WEBHOOK_INSECURE", text("CHATWOOT_WEBHOOK_INSECURE"), False
            ),
            webhook_max_age_seconds=_parse_float(
                "CHATWOOT_WEBHOOK_MAX_AGE_SECONDS", text("CHATWOOT_WEBHOOK_MAX_AGE_SECONDS"), 300.0
            ),
            resume_after_minutes=_parse_float(
                "CHATWOOT_RESUME_AFTER_MINUTES", text("CHATWOOT_RESUME_AFTER_MINUTES"), 0.0
            ),
            resume_on_unassign=_parse_bool(
                "CHATWOOT_RESUME_ON_UNASSIGN", text("CHATWOOT_RESUME_ON_UNASSIGN"), False
            ),
            relay_templates=_parse_bool(
                "CHATWOOT_RELAY_TEMPLATES", text("CHATWOOT_RELAY_TEMPLATES"), False
            ),
            metrics=_parse_bool("CHATWOOT_METRICS", text("CHATWOOT_METRICS"), False),
            media_max_mb=_parse_float("CHATWOOT_MEDIA_MAX_MB", text("CHATWOOT_MEDIA_MAX_MB"),
                                      40.0),
            media_download_seconds=_parse_float(
                "CHATWOOT_MEDIA_DOWNLOAD_SECONDS", text("CHATWOOT_MEDIA_DOWNLOAD_SECONDS"), 120.0),
            media_allowed_hosts=tuple(
                h.strip() for h in (text("CHATWOOT_MEDIA_ALLOWED_HOSTS") or "").split(",")
                if h.strip()),
            relay_max_attempts=_default(
                _parse_int("CHATWOOT_RELAY_MAX_ATTEMPTS", text("CHATWOOT_RELAY_MAX_ATTEMPTS")), 5
            ),
            language=text("CHATWOOT_LANGUAGE") or "pt-BR",
            # texts are read unstripped: "" (set but empty) turns a message off
            text_handoff=ours.get("CHATWOOT_TEXT_HANDOFF"),
            text_after_hours=ours.get("CHATWOOT_TEXT_AFTER_HOURS"),
            text_resume=ours.get("CHATWOOT_TEXT_RESUME"),
            resume_notice=_parse_bool("CHATWOOT_RESUME_NOTICE", text("CHATWOOT_RESUME_NOTICE"),
                                      False),
            handoff_keywords=(
                None if "CHATWOOT_HANDOFF_KEYWORDS" not in ours else tuple(
                    w.strip() for w in ours["CHATWOOT_HANDOFF_KEYWORDS"].split(",") if w.strip()
                )
            ),
            max_bot_turns=_default(
                _parse_int("CHATWOOT_MAX_BOT_TURNS", text("CHATWOOT_MAX_BOT_TURNS")), 0
            ),
            business_hours=text("CHATWOOT_BUSINESS_HOURS"),
            timezone=text("CHATWOOT_TIMEZONE"),
            text_no_agent=ours.get("CHATWOOT_TEXT_NO_AGENT"),
            handoff_label=text("CHATWOOT_HANDOFF_LABEL") or "bot-handoff",
            transcript_messages=_default(
                _parse_int("CHATWOOT_TRANSCRIPT_MESSAGES", text("CHATWOOT_TRANSCRIPT_MESSAGES")),
                10,
            ),
        )

    def text(self, name: str) -> str:
        """The customer text ``name`` (handoff, after_hours, resume, no_agent): override or
        default."""
        override = getattr(self, f"text_{name}")
        return getattr(DEFAULTS[self.language], name) if override is None else override


_SECRET_FIELDS = {"bot_token", "api_token", "webhook_secret", "webhook_token", "hmac_token",
                  "inbox_identifier"}


def unknown_variable_hint(name: str) -> str:
    """What to do about an unknown ``CHATWOOT_*`` variable: the likely intended one."""
    # compared without the shared prefix, which would make every name look close
    suffixes = {v[len(PREFIX):]: v for v in VARIABLES}
    guess = difflib.get_close_matches(name[len(PREFIX):], suffixes, n=1, cutoff=0.75)
    return f"did you mean {suffixes[guess[0]]}?" if guess else "remove it or fix its name"


def _variable(field_name: str) -> str:
    """The environment variable of a Config field."""
    return {"inbox_identifier": "CHATWOOT_INBOX_ID", "db_path": "CHATWOOT_MIRROR_DB"}.get(
        field_name, PREFIX + field_name.upper())


def _check_range(name: str, value: float, low: float, high: float, *,
                 low_open: bool = False, hint: str = "") -> None:
    if (value > low if low_open else value >= low) and value <= high:
        return
    bound = f"above {low:g}" if low_open else f"at least {low:g}"
    extra = f" ({hint})" if hint else ""
    raise ConfigError(name, f"must be {bound} and at most {high:g}{extra}, not {value:g}")


def _check_url(url: str) -> str:
    if not url:
        raise ConfigError(
            "CHATWOOT_URL", "is not set; use your Chatwoot address, e.g. https://chat.example.com"
        )
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise ConfigError("CHATWOOT_URL", f"is not a valid URL ({exc}): {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            "CHATWOOT_URL", f"must start with http:// or https://, e.g. https://chat.example.com"
            f" (got {url!r})"
        )
    path = parts.path.rstrip("/")
    for suffix in _API_SUFFIXES:
        if path.endswith(suffix):
            base = f"{parts.scheme}://{parts.netloc}{path[: -len(suffix)]}"
            raise ConfigError(
                "CHATWOOT_URL",
                f"must be the base address without {suffix!r}; use {base!r}",
            )
    if parts.query or parts.fragment:
        raise ConfigError("CHATWOOT_URL", "must not carry a query string or fragment")
    return f"{parts.scheme}://{parts.netloc}{path}"


def _default(value: int | None, default: int) -> int:
    return default if value is None else value


def _parse_bool(name: str, value: str | None, default: bool) -> bool:
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(name, f"must be true or false, not {value!r}")


def _parse_int(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(name, f"must be a whole number, not {value!r}") from None


def _parse_float(name: str, value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(name, f"must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(name, f"must be a finite number, not {value!r}")
    return number
