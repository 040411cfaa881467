"""The Mirror facade: what a host bot calls."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

import requests

from .client import Attachment, ChatwootClient
from .config import Config
from .conversations import ConversationResolver
from .delivery import INCOMING, OUTGOING, Deliverer, MirroredMessage
from .errors import ChatwootError, MirrorError
from .identity import ContactIdentity, identify
from .store import SQLiteStore, Store

log = logging.getLogger("chatwoot_mirror")


class Mirror:
    """Mirrors a bot's exchanges into one Chatwoot conversation per contact.

    Build it once at start-up (``Mirror.from_env()`` or ``Mirror(Config(...))``); a wrong
    configuration raises :class:`~chatwoot_mirror.errors.ConfigError` there. After that,
    the ``log_*`` methods never raise for Chatwoot trouble: they return ``False`` and the
    failure is logged and counted in :meth:`stats`.
    """

    def __init__(
        self,
        config: Config,
        *,
        store: Store | None = None,
        client: ChatwootClient | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.config = config
        self.enabled = config.enabled
        self._lock = threading.Lock()
        self._stats: dict[str, Any] = {"delivered": 0, "failed": 0, "last_error": None}
        self._closed = False
        if not self.enabled:
            log.info("mirroring disabled (CHATWOOT_ENABLED=false)")
            return
        self.client = client or ChatwootClient(
            config.url,
            config.inbox_identifier,
            account_id=config.account_id,
            bot_token=config.bot_token,
            api_token=config.api_token,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            session=session,
        )
        self.store = store or SQLiteStore(config.db_path)
        self.resolver = ConversationResolver(
            self.client,
            self.store,
            resolved_policy=config.resolved_policy,
            hmac_token=config.hmac_token,
        )
        self.deliverer = Deliverer(
            self.client,
            self.resolver,
            use_bot_token=config.has_bot_token,
            bot_prefix=config.bot_prefix,
        )
        if not config.has_bot_token:
            log.warning(
                "CHATWOOT_BOT_TOKEN is not set: bot replies will be posted as customer "
                "(incoming) messages prefixed with %r; create an Agent Bot in Chatwoot "
                "(Settings > Bots), connect it to the inbox and set CHATWOOT_ACCOUNT_ID and "
                "CHATWOOT_BOT_TOKEN to post them as bot replies",
                config.bot_prefix,
            )

    @classmethod
    def from_env(cls, **kwargs: Any) -> Mirror:
        """Build from the environment and ``.env`` (see :meth:`Config.from_env`)."""
        return cls(Config.from_env(), **kwargs)

    # -- identity ---------------------------------------------------------------------------

    def identify(self, contact: object) -> ContactIdentity:
        """The stable identity this mirror uses for ``contact`` (phone, JID, wa_id, BSUID)."""
        return identify(
            contact,
            br_ninth_digit=self.config.br_ninth_digit,
            default_country_code=self.config.default_country_code,
        )

    # -- mirroring --------------------------------------------------------------------------

    def log_exchange(
        self,
        contact: object,
        user_message: str,
        bot_response: str,
        *,
        sender_name: str | None = None,
        message_id: str | None = None,
    ) -> bool:
        """Mirror one customer message and the bot's reply, in that order."""
        first = self.log_incoming(contact, user_message, sender_name=sender_name,
                                  message_id=message_id)
        second = self.log_outgoing(contact, bot_response)
        return first and second

    def log_incoming(
        self,
        contact: object,
        text: str,
        *,
        sender_name: str | None = None,
        message_id: str | None = None,
        attachments: Iterable[Attachment] = (),
    ) -> bool:
        """Mirror a message the customer sent (shown as theirs in Chatwoot)."""
        return self._log(contact, INCOMING, text, sender_name, message_id, attachments)

    def log_outgoing(
        self,
        contact: object,
        text: str,
        *,
        message_id: str | None = None,
        attachments: Iterable[Attachment] = (),
    ) -> bool:
        """Mirror a message the bot sent to the customer (shown as the bot's reply)."""
        return self._log(contact, OUTGOING, text, None, message_id, attachments)

    def _log(
        self,
        contact: object,
        direction: str,
        text: str,
        sender_name: str | None,
        message_id: str | None,
        attachments: Iterable[Attachment],
    ) -> bool:
        if not self.enabled or self._closed:
            return False
        files = tuple(attachments)
        content = "" if text is None else str(text)
        if not content.strip() and not files:
            return True  # nothing to show; an empty post would be a Chatwoot 422
        try:
            identity = self.identify(contact)
        except ValueError as exc:
            log.warning("message not mirrored: %s", exc)
            self._count_failure(str(exc))
            return False
        message = MirroredMessage(
            identity=identity,
            direction=direction,
            content=content,
            sender_name=sender_name,
            provider_message_id=message_id,
            attachments=files,
        )
        try:
            self.deliverer.deliver(message)
        except (ChatwootError, MirrorError) as exc:
            log.warning(
                "message not mirrored contact=%s direction=%s error=%s",
                identity.key,
                direction,
                exc,
            )
            self._count_failure(str(exc))
            return False
        except Exception as exc:  # the host bot must never crash because of mirroring
            log.exception("unexpected mirroring failure contact=%s", identity.key)
            self._count_failure(type(exc).__name__)
            return False
        with self._lock:
            self._stats["delivered"] += 1
        return True

    def _count_failure(self, error: str) -> None:
        with self._lock:
            self._stats["failed"] += 1
            self._stats["last_error"] = error

    # -- lifecycle --------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """True when everything logged so far has been handled (delivered or given up on).

        Delivery is synchronous in this version, so every ``log_*`` call has already
        finished its work when it returns; ``timeout`` is kept for the queued version."""
        del timeout
        return True

    def stats(self) -> dict[str, Any]:
        """Counters: ``delivered``, ``failed``, ``last_error`` (no secrets)."""
        with self._lock:
            return dict(self._stats)

    def close(self) -> None:
        """Release the HTTP session and the store. Later ``log_*`` calls return False."""
        if self._closed:
            return
        self._closed = True
        if self.enabled:
            self.client.close()
            self.store.close()

    def __enter__(self) -> Mirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
