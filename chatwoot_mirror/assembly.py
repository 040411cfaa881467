"""The composition root: a mirror's parts, built from its configuration in one place.

The :class:`~chatwoot_mirror.mirror.Mirror` facade only wires its own callbacks into
what this returns; a test or an advanced host can build the parts to inspect them.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from . import redaction
from .channels import CHANNEL_SCOPE, ChannelRouter
from .client import ChatwootClient
from .config import Config
from .conversations import ConversationResolver
from .delivery import Deliverer
from .handoff import Handoff
from .identity import identify, legacy_key
from .outbox import Backoff
from .pacing import Pacer
from .people import People
from .scoped import ScopedValues
from .store import Store, open_store
from .texts import all_default_keywords
from .triggers import BusinessHours, Keywords
from .workers import DeliveryWorkers

log = logging.getLogger("chatwoot_mirror")


@dataclass
class Parts:
    """Everything an enabled mirror runs on. ``owns_*``: built here, so closed here."""

    client: ChatwootClient
    store: Store
    channels: ChannelRouter
    resolver: ConversationResolver
    deliverer: Deliverer
    handoff: Handoff
    workers: DeliveryWorkers
    keywords: Keywords
    business_hours: BusinessHours | None
    people: People
    owns_client: bool
    owns_store: bool

    def close(self) -> None:
        """Close what was built here (a caller's own store or client stays open)."""
        if self.owns_client:
            self.client.close()
        if self.owns_store:
            self.store.close()


def naming(config: Config) -> dict[str, Any]:
    """How this mirror reads numbers (``CHATWOOT_BR_NINTH_DIGIT``,
    ``CHATWOOT_DEFAULT_COUNTRY_CODE``), for :func:`identity.identify`."""
    return {"br_ninth_digit": config.br_ninth_digit,
            "default_country_code": config.default_country_code}


def pace_bucket(config: Config) -> str:
    """The shared pace's bucket: one per Chatwoot (its address, never a token), whatever
    inbox or bot uses it."""
    return hashlib.sha256(config.url.rstrip("/").lower().encode()).hexdigest()[:16]


def assemble(
    config: Config,
    *,
    store: Store | None = None,
    client: ChatwootClient | None = None,
    session: requests.Session | None = None,
) -> Parts:
    """Build the parts of an enabled mirror. On failure nothing built stays open."""
    # Tokens and the inbox identifier travel in URLs that web servers and urllib3 log.
    redaction.install([config.bot_token or "", config.api_token or "",
                       config.webhook_secret or "", config.webhook_token or "",
                       config.hmac_token or "", config.inbox_identifier,
                       urlsplit(config.store).password or "",  # a redis:// password
                       *parse_qs(urlsplit(config.store).query).get("sentinel_password", [])])
    chatwoot = client or ChatwootClient(
        config.url,
        config.inbox_identifier,
        account_id=config.account_id,
        bot_token=config.bot_token,
        api_token=config.api_token,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        session=session,
    )
    try:
        local = store or open_store(config.store, spill=config.spill)
    except BaseException:
        if client is None:
            chatwoot.close()  # ours: nothing else will close its session
        raise
    resolver = ConversationResolver(
        chatwoot,
        local,
        resolved_policy=config.resolved_policy,
        hmac_token=config.hmac_token,
        check_ownership=config.has_bot_token,
    )
    deliverer = Deliverer(
        chatwoot,
        resolver,
        use_bot_token=config.has_bot_token,
        bot_prefix=config.bot_prefix,
        report_status=bool(config.api_token and config.account_id),
        relay_max_attempts=config.relay_max_attempts,
        media_max_bytes=int(config.media_max_mb * 1024 * 1024),
        texts=config.texts,
        media_slots=max(1, config.workers - 1),
        can_merge=bool(config.api_token and config.account_id),
    )
    # one pacer sees every request: the pace, and Chatwoot's health for retries
    pacer = Pacer(config.max_requests_per_minute, outage_pause=config.retry_base_seconds,
                  max_outage_pause=min(30.0, config.retry_max_seconds),
                  shared=partial(local.take_tokens, pace_bucket(config)))
    if chatwoot.health is None:
        chatwoot.health = pacer
        # tries within one attempt pause a fraction of the first retry's delay
        scale = min(1.0, config.retry_base_seconds)
        chatwoot.short_retries = tuple(pause * scale for pause in chatwoot.short_retries)
    handoff = Handoff(local, resume_after_minutes=config.resume_after_minutes,
                      max_bot_turns=config.max_bot_turns)
    workers = DeliveryWorkers(
        local,
        deliverer,
        workers=config.workers,
        claim_ttl=config.claim_ttl_seconds,
        backoff=Backoff(config.retry_base_seconds, config.retry_max_seconds),
        pacer=pacer,
        periodic=[(60.0, handoff.resume_idle)],
    )
    if not config.has_bot_token:
        log.warning(
            "CHATWOOT_BOT_TOKEN is not set: bot replies will be posted as customer "
            "(incoming) messages prefixed with %r; create an Agent Bot in Chatwoot "
            "(Settings > Bots), connect it to the inbox and set CHATWOOT_ACCOUNT_ID and "
            "CHATWOOT_BOT_TOKEN to post them as bot replies",
            config.bot_prefix,
        )
    return Parts(
        client=chatwoot,
        store=local,
        channels=ChannelRouter(ScopedValues(local, CHANNEL_SCOPE)),
        resolver=resolver,
        deliverer=deliverer,
        handoff=handoff,
        workers=workers,
        keywords=Keywords(all_default_keywords() if config.handoff_keywords is None
                          else config.handoff_keywords),
        business_hours=(BusinessHours.parse(config.business_hours, config.timezone)
                        if config.business_hours else None),
        people=People(local, partial(identify, **naming(config)),
                      partial(legacy_key, **naming(config))),
        owns_client=client is None,
        owns_store=store is None,
    )
