"""Keep secrets out of logs, ours and our dependencies'.

Some secrets have to travel in URLs: ``CHATWOOT_WEBHOOK_TOKEN`` (Chatwoot < 4.13 can set
no header), a provider webhook's ``?token=``, and the inbox identifier, which is part of
every public-API path. Web servers log request lines (werkzeug's access log, gunicorn's,
uvicorn's) and urllib3 logs each request path at DEBUG. :class:`RedactSecrets` replaces
every known secret in a record with ``***`` before any handler writes it.

A :class:`~chatwoot_mirror.Mirror` installs one on the loggers that are known to print
URLs (:data:`URL_LOGGERS`) with its own secrets; :func:`install` does the same for other
loggers or handlers, e.g. the host's own::

    from chatwoot_mirror.redaction import install
    install([os.environ["UAZAPI_WEBHOOK_SECRET"]], handlers=logging.getLogger().handlers)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

#: Loggers of our dependencies that print request lines or URLs.
URL_LOGGERS = ("werkzeug", "urllib3.connectionpool", "gunicorn.access", "uvicorn.access",
               "gunicorn.error", "uvicorn.error", "requests.packages.urllib3.connectionpool")

MASK = "***"
_SHORTEST = 6  # a shorter "secret" would mask ordinary words


class RedactSecrets(logging.Filter):
    """A filter that masks the given secrets in a record's message and arguments. It never
    drops a record. Secrets can be added later (:meth:`add`); one filter serves many."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            known = set(self._secrets)
            known.update(s for s in secrets if s and len(s) >= _SHORTEST)
            # longest first, so that a secret containing another is masked whole
            self._secrets = tuple(sorted(known, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the handler's to report
            return True
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


_shared = RedactSecrets()


def install(
    secrets: Iterable[str],
    *,
    loggers: Iterable[str] = URL_LOGGERS,
    handlers: Iterable[logging.Handler] = (),
) -> RedactSecrets:
    """Mask ``secrets`` in the records of ``loggers`` (by name) and of ``handlers``.

    One process-wide filter is used, so calling this again adds secrets rather than
    stacking filters. A logger filter sees only records logged on that very logger (not
    its children'), hence the explicit names; a handler filter sees everything the handler
    writes."""
    _shared.add(secrets)
    for name in loggers:
        logger = logging.getLogger(name)
        if _shared not in logger.filters:
            logger.addFilter(_shared)
    for handler in handlers:
        if _shared not in handler.filters:
            handler.addFilter(_shared)
    return _shared
