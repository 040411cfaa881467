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
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ._notice import tell_operator
from .errors import ConfigError
from .store import parse_store_url, sqlite_url
from .texts import (
    DEFAULTS,
    LANGUAGES,
    Texts,
    check_placeholders,
    load_overrides,
    with_overrides,
)
from .triggers import BusinessHours

PREFIX = "CHATWOOT_"
T = TypeVar("T")
log = logging.getLogger("chatwoot_mirror.config")

_SPEC = "chatwoot_mirror"
_ABSENT: Any = object()
READERS = ("str", "raw", "lower", "bool", "int", "float", "words")


@dataclass(frozen=True)
class Setting:
    """How one ``Config`` field is read from the environment: the variable, how its text
    is read (``str`` stripped, ``raw`` as written, ``lower``, ``bool``, ``int``,
    ``float``, ``words`` comma-separated), and its one-line meaning."""

    variable: str
    read: str
    doc: str


def setting(default: T, variable: str, read: str, doc: str) -> T:
    """A ``Config`` field with everything about it in one place: its default here, its
    variable, parsing and meaning in the metadata (read by ``from_env``, ``VARIABLES``
    and the README's table test)."""
    if read not in READERS:
        raise ValueError(f"unknown reader {read!r}")
    return field(default=default, metadata={_SPEC: Setting(variable, read, doc)})


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_API_SUFFIXES = ("/public/api/v1", "/api/v1", "/app")


@dataclass(frozen=True)
class Config:
    """Validated settings. Build it with :meth:`from_env` or directly (then call nothing else:
    ``__post_init__`` validates)."""

    url: str = setting(
        "", "CHATWOOT_URL", "str",
        "Chatwoot base URL, e.g. https://chat.example.com")
    inbox_identifier: str = setting(
        "", "CHATWOOT_INBOX_ID", "str",
        "the API inbox's Inbox Identifier (a token, not the number)")
    enabled: bool = setting(
        True, "CHATWOOT_ENABLED", "bool",
        "false turns every call into a cheap no-op returning False")
    account_id: int | None = setting(
        None, "CHATWOOT_ACCOUNT_ID", "int",
        "account number, needed with CHATWOOT_BOT_TOKEN or CHATWOOT_API_TOKEN")
    bot_token: str | None = setting(
        None, "CHATWOOT_BOT_TOKEN", "str",
        "AgentBot access token: bot replies become real outgoing bot messages")
    api_token: str | None = setting(
        None, "CHATWOOT_API_TOKEN", "str",
        "user access token: delivery receipts and doctor checks")
    webhook_secret: str | None = setting(
        None, "CHATWOOT_WEBHOOK_SECRET", "str",
        "API inbox / agent bot webhook secret (X-Chatwoot-Signature)")
    webhook_token: str | None = setting(
        None, "CHATWOOT_WEBHOOK_TOKEN", "str",
        "for Chatwoot < 4.13: a secret the webhook URL must carry")
    hmac_token: str | None = setting(
        None, "CHATWOOT_HMAC_TOKEN", "str",
        "the inbox hmac_token, when identity validation is enforced")
    db_path: str = setting(
        "./chatwoot_mirror.db", "CHATWOOT_MIRROR_DB", "str",
        "SQLite file of the local store (short for CHATWOOT_MIRROR_STORE=sqlite:///path)")
    store_url: str | None = setting(
        None, "CHATWOOT_MIRROR_STORE", "str",
        "the local store as a URL: sqlite:///path.db, redis://host:6379/0 (several hosts) "
        "or memory:// (tests); wins over "
        "CHATWOOT_MIRROR_DB")
    spill_path: str = setting(
        "./chatwoot-mirror-spill.db", "CHATWOOT_MIRROR_SPILL", "str",
        "with a Redis store: the local SQLite file that keeps writes while Redis is away "
        "(moved into Redis when it answers again); off: none, such writes fail")
    resolved_policy: str = setting(
        "reopen", "CHATWOOT_RESOLVED_POLICY", "lower",
        "reopen (continue the last conversation) or new")
    bot_prefix: str = setting(
        "🤖 ", "CHATWOOT_BOT_PREFIX", "raw",
        "prefix of bot replies when no bot token is set")
    br_ninth_digit: bool = setting(
        True, "CHATWOOT_BR_NINTH_DIGIT", "bool",
        "treat Brazilian mobiles with and without the 9th digit as one")
    default_country_code: str | None = setting(
        None, "CHATWOOT_DEFAULT_COUNTRY_CODE", "str",
        "country code for bare national numbers, e.g. 55")
    connect_timeout: float = setting(
        3.05, "CHATWOOT_CONNECT_TIMEOUT", "float",
        "seconds to open a connection to Chatwoot")
    read_timeout: float = setting(
        10.0, "CHATWOOT_READ_TIMEOUT", "float",
        "seconds to wait for Chatwoot's answer")
    workers: int = setting(4, "CHATWOOT_WORKERS", "int", "delivery threads per process")
    max_requests_per_minute: int = setting(
        2400, "CHATWOOT_MAX_REQUESTS_PER_MINUTE", "int",
        "shared pace of requests to Chatwoot; 0 = no limit")
    retry_base_seconds: float = setting(
        1.0, "CHATWOOT_RETRY_BASE_SECONDS", "float",
        "first retry delay; doubles per failed attempt of a contact while Chatwoot is "
        "otherwise ok")
    retry_max_seconds: float = setting(
        300.0, "CHATWOOT_RETRY_MAX_SECONDS", "float",
        "longest delay between two attempts")
    claim_ttl_seconds: float = setting(
        30.0, "CHATWOOT_CLAIM_TTL_SECONDS", "float",
        "how long a crashed process's claims block other workers")
    drain_seconds: float = setting(
        5.0, "CHATWOOT_DRAIN_SECONDS", "float",
        "how long close() waits for queued messages")
    webhook_insecure: bool = setting(
        False, "CHATWOOT_WEBHOOK_INSECURE", "bool",
        "true accepts unverified webhooks (neither secret nor token)")
    webhook_max_age_seconds: float = setting(
        300.0, "CHATWOOT_WEBHOOK_MAX_AGE_SECONDS", "float",
        "signed webhooks older than this are rejected")
    event_clock_skew_seconds: float = setting(
        5.0, "CHATWOOT_EVENT_CLOCK_SKEW_SECONDS", "float",
        "how far ahead of this host's clock a Chatwoot event time is believed; a later "
        "one counts as the time it arrived")
    resume_after_minutes: float = setting(
        0.0, "CHATWOOT_RESUME_AFTER_MINUTES", "float",
        "resume the bot this long after the last human message")
    resume_on_unassign: bool = setting(
        False, "CHATWOOT_RESUME_ON_UNASSIGN", "bool",
        "resume the bot when the human assignee is removed")
    bot_error_policy: str = setting(
        "pending", "CHATWOOT_BOT_ERROR_POLICY", "lower",
        "when Chatwoot opens a pending conversation because its call to the bot failed: "
        "pending (put it back, the bot keeps answering) or humans (leave it to agents)")
    bot_error_texts: tuple[str, ...] = setting(
        (), "CHATWOOT_BOT_ERROR_TEXTS", "words",
        "more activity texts meaning that (Chatwoot's locale); its English text is always known")
    relay_templates: bool = setting(
        False, "CHATWOOT_RELAY_TEMPLATES", "bool",
        "also send Chatwoot's own template messages to the customer")
    relay_max_attempts: int = setting(
        5, "CHATWOOT_RELAY_MAX_ATTEMPTS", "int",
        "tries to send an agent's reply before reporting it failed")
    language: str = setting(
        "pt-BR", "CHATWOOT_LANGUAGE", "str",
        "language of the default customer texts: pt-BR, es or en")
    # None: the language's default; "": send nothing
    text_handoff: str | None = setting(
        None, "CHATWOOT_TEXT_HANDOFF", "raw",
        "text sent to the customer on a handoff ('' = none)")
    text_after_hours: str | None = setting(
        None, "CHATWOOT_TEXT_AFTER_HOURS", "raw",
        "text sent to the customer outside business hours ('' = none)")
    text_resume: str | None = setting(
        None, "CHATWOOT_TEXT_RESUME", "raw",
        "text sent to the customer when the bot resumes")
    resume_notice: bool = setting(
        False, "CHATWOOT_RESUME_NOTICE", "bool",
        "true sends the resume text when the bot takes over again")
    # None: every language's defaults
    handoff_keywords: tuple[str, ...] | None = setting(
        None, "CHATWOOT_HANDOFF_KEYWORDS", "words",
        "comma-separated words that hand the customer to humans")
    max_bot_turns: int = setting(
        0, "CHATWOOT_MAX_BOT_TURNS", "int",
        "hand over after this many bot replies in a row (0 = never)")
    business_hours: str | None = setting(
        None, "CHATWOOT_BUSINESS_HOURS", "str",
        "e.g. mon-fri 08:00-18:00;sat 09:00-12:00")
    timezone: str | None = setting(
        None, "CHATWOOT_TIMEZONE", "str",
        "timezone of the business hours, e.g. America/Sao_Paulo")
    text_no_agent: str | None = setting(
        None, "CHATWOOT_TEXT_NO_AGENT", "raw",
        "text when no agent is online; {protocol} = conversation number")
    texts_file: str | None = setting(
        None, "CHATWOOT_TEXTS_FILE", "str",
        "JSON file replacing any default text: agents' notes, message kinds, failure reasons")
    handoff_label: str = setting(
        "bot-handoff", "CHATWOOT_HANDOFF_LABEL", "str",
        "label put on conversations the bot hands over")
    transcript_messages: int = setting(
        10, "CHATWOOT_TRANSCRIPT_MESSAGES", "int",
        "messages quoted in the handoff's private note")
    # Chatwoot's own default upload limit
    media_max_mb: float = setting(
        40.0, "CHATWOOT_MEDIA_MAX_MB", "float",
        "customer files larger than this are mirrored as a text note")
    media_download_seconds: float = setting(
        120.0, "CHATWOOT_MEDIA_DOWNLOAD_SECONDS", "float",
        "total time budget of one file download")
    media_wait_seconds: float = setting(
        600.0, "CHATWOOT_MEDIA_WAIT_SECONDS", "float",
        "how long a file that is not there yet (HTTP 404) is asked for again before a note "
        "stands in for it")
    message_ids_days: float = setting(
        30.0, "CHATWOOT_MESSAGE_IDS_DAYS", "float",
        "how long provider message ids are linked to Chatwoot's, for replies and receipts")
    media_allowed_hosts: tuple[str, ...] = setting(
        (), "CHATWOOT_MEDIA_ALLOWED_HOSTS", "words",
        "comma-separated private hosts files may be fetched from")
    metrics: bool = setting(
        False, "CHATWOOT_METRICS", "bool",
        "true serves Prometheus metrics at the blueprint's /metrics")

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
        if self.bot_error_policy not in ("pending", "humans"):
            raise ConfigError(
                "CHATWOOT_BOT_ERROR_POLICY",
                f"must be 'pending' or 'humans', not {self.bot_error_policy!r}",
            )
        if self.resolved_policy not in ("reopen", "new"):
            raise ConfigError(
                "CHATWOOT_RESOLVED_POLICY",
                f"must be 'reopen' or 'new', not {self.resolved_policy!r}",
            )
        if self.default_country_code is not None:
            object.__setattr__(self, "default_country_code",
                               self.default_country_code.lstrip("+") or None)
        if self.default_country_code is not None and not (
            self.default_country_code.isdigit() and 1 <= len(self.default_country_code) <= 3
        ):
            raise ConfigError(
                "CHATWOOT_DEFAULT_COUNTRY_CODE", "must be 1 to 3 digits without '+', e.g. 55"
            )
        for f in fields(self):  # NaN slips past every comparison; inf overflows later
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f.metadata[_SPEC].variable,
                                  f"must be a finite number, not {value}")
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
        _check_range("CHATWOOT_EVENT_CLOCK_SKEW_SECONDS", self.event_clock_skew_seconds, 0,
                     60)
        if self.language not in LANGUAGES:
            raise ConfigError("CHATWOOT_LANGUAGE", f"must be one of {', '.join(LANGUAGES)}")
        texts = DEFAULTS[self.language]
        try:
            if self.texts_file:
                texts = with_overrides(texts, load_overrides(self.texts_file))
        except ValueError as exc:
            raise ConfigError("CHATWOOT_TEXTS_FILE", str(exc)) from None
        if self.text_no_agent:
            try:
                check_placeholders("no_agent", self.text_no_agent)
            except ValueError as exc:
                raise ConfigError("CHATWOOT_TEXT_NO_AGENT", str(exc)) from None
        # not a field: derived from two of them, once, at start-up
        object.__setattr__(self, "_texts", texts)
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
        _check_range("CHATWOOT_MEDIA_WAIT_SECONDS", self.media_wait_seconds, 0, 86_400,
                     hint="0 means never ask again")
        _check_range("CHATWOOT_MESSAGE_IDS_DAYS", self.message_ids_days, 0.01, 3650)
        if self.store_url is not None:
            parse_store_url(self.store_url)  # a typo fails here, not at the first message
        if not self.spill_path.strip() or self.spill_path.endswith(("/", os.sep)):
            raise ConfigError("CHATWOOT_MIRROR_SPILL", "names no file: use a path such as "
                              "./chatwoot-mirror-spill.db, or off")

    @property
    def store(self) -> str:
        """The store's URL: ``CHATWOOT_MIRROR_STORE``, else the SQLite file
        ``CHATWOOT_MIRROR_DB``."""
        return self.store_url or sqlite_url(self.db_path)

    @property
    def spill(self) -> str | None:
        """The spill file's path (``CHATWOOT_MIRROR_SPILL``), or ``None`` when ``off``."""
        return None if self.spill_path.strip().lower() == "off" else self.spill_path

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
        return cls._from_mapping(read_environment(environ, dotenv=dotenv))

    @classmethod
    def _from_mapping(cls, env: Mapping[str, str]) -> Config:
        ours = {k: v for k, v in env.items() if k.startswith(PREFIX)}
        for name in sorted(ours):
            if name not in VARIABLES:
                # A typo must not switch mirroring off; it must be seen, though.
                tell_operator(log, logging.WARNING, "%s is not a chatwoot-mirror setting "
                              "and is ignored; %s", name, unknown_variable_hint(name))
        specs = {f.name: f.metadata[_SPEC] for f in fields(cls) if _SPEC in f.metadata}
        # Disabled means nothing else is read, so nothing else can be wrong.
        if _read(specs["enabled"], ours) is False:
            return cls(enabled=False)
        values = {}
        for name, spec in specs.items():
            value = _read(spec, ours)
            if value is not _ABSENT:
                values[name] = value
        alias = _read(Setting(INBOX_ALIAS, "str", ""), ours)
        if alias is not _ABSENT:
            if values.get("inbox_identifier", alias) != alias:
                raise ConfigError(INBOX_ALIAS, "differs from CHATWOOT_INBOX_ID; set only one of "
                                  "them")
            values["inbox_identifier"] = alias
        if not values.get("url"):
            raise ConfigError(
                "CHATWOOT_URL", "is not set; use your Chatwoot address, e.g. https://chat.example.com"
            )
        return cls(**values)

    @property
    def texts(self) -> Texts:
        """Every default text of ``CHATWOOT_LANGUAGE``, with ``CHATWOOT_TEXTS_FILE``'s laid
        over them (the four ``CHATWOOT_TEXT_*`` customer texts: :meth:`text`)."""
        # set in __post_init__ beside the fields, not one of them (no variable of its own);
        # a disabled mirror's configuration is not checked, and gets the defaults
        texts: Texts | None = getattr(self, "_texts", None)
        return texts or DEFAULTS.get(self.language, DEFAULTS["pt-BR"])

    def text(self, name: str) -> str:
        """The customer text ``name`` (handoff, after_hours, resume, no_agent): override or
        default."""
        override = getattr(self, f"text_{name}")
        return getattr(self.texts, name) if override is None else override


#: The alias some users know from Chatwoot's own wording.
INBOX_ALIAS = "CHATWOOT_INBOX_IDENTIFIER"
#: Every variable this library reads, with its one-line meaning (for "did you mean", doctor,
#: ``.env.example`` and the README, which tests keep in step with it).
VARIABLES: dict[str, str] = {
    **{f.metadata[_SPEC].variable: f.metadata[_SPEC].doc for f in fields(Config)
       if _SPEC in f.metadata},
    INBOX_ALIAS: "alias of CHATWOOT_INBOX_ID",
}


def read_environment(environ: Mapping[str, str] | None = None, *,
                     dotenv: bool | str = True) -> dict[str, str]:
    """What :meth:`Config.from_env` reads: ``environ`` (default ``os.environ``) over the
    ``.env`` file (``True``: found from the working directory upwards; a path; ``False``:
    none)."""
    values: dict[str, str] = {}
    if dotenv:
        from dotenv import dotenv_values, find_dotenv

        path = dotenv if isinstance(dotenv, str) else find_dotenv(usecwd=True)
        if path:
            values.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    return values


def settings_table() -> str:
    """The README's table of every setting (variable, default, meaning), made from the
    same declarations ``from_env`` reads; a test keeps the README's copy identical."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for f in fields(Config):
        spec = f.metadata.get(_SPEC)
        if spec is None:
            continue
        default = "" if f.default in (None, "", ()) else f"`{_as_written(f.default)}`"
        rows.append(f"| `{spec.variable}` | {default} | {spec.doc.replace('|', '/')} |")
    rows.append(f"| `{INBOX_ALIAS}` | | {VARIABLES[INBOX_ALIAS]} |")
    return "\n".join(rows)


def _as_written(value: Any) -> str:
    """A default as one would write it in ``.env``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def _read(spec: Setting, env: Mapping[str, str]) -> Any:
    """The typed value of ``spec`` in ``env``, or ``_ABSENT`` (the field's default)."""
    raw = env.get(spec.variable)
    if raw is None:
        return _ABSENT
    if spec.read == "raw":  # texts and the prefix keep their spaces; "" turns a text off
        return raw
    if spec.read == "words":
        return tuple(word.strip() for word in raw.split(",") if word.strip())
    text = raw.strip()
    if not text:
        return _ABSENT
    if spec.read == "bool":
        return parse_bool(spec.variable, text)
    if spec.read == "int":
        return _parse_int(spec.variable, text)
    if spec.read == "float":
        return _parse_float(spec.variable, text)
    return text.lower() if spec.read == "lower" else text


_SECRET_FIELDS = {"bot_token", "api_token", "webhook_secret", "webhook_token", "hmac_token",
                  "inbox_identifier"}


def likely_variable(name: str) -> str | None:
    """The setting an unknown ``CHATWOOT_*`` name was probably meant to be, if any."""
    # compared without the shared prefix, which would make every name look close
    suffixes = {v[len(PREFIX):]: v for v in VARIABLES}
    guess = difflib.get_close_matches(name[len(PREFIX):], suffixes, n=1, cutoff=0.75)
    return suffixes[guess[0]] if guess else None


def unknown_variable_hint(name: str) -> str:
    """What to do about an unknown ``CHATWOOT_*`` variable: the likely intended one."""
    guess = likely_variable(name)
    return f"did you mean {guess}?" if guess else "remove it or fix its name"


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


def parse_bool(name: str, value: str) -> bool:
    """``value`` of the variable ``name`` as a boolean (true/false, 1/0, yes/no, on/off);
    anything else is a :class:`ConfigError` naming the variable."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(name, f"must be true or false, not {value!r}")


def _parse_int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigError(name, f"must be a whole number, not {value!r}") from None


def _parse_float(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(name, f"must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise ConfigError(name, f"must be a finite number, not {value!r}")
    return number
