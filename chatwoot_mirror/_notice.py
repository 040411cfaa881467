"""Problems the operator must see, even in a host that never set up logging.

The library adds a ``NullHandler`` to its logger (the standard advice for libraries), so
in a host without logging configuration Python's last-resort handler stays silent, and a
mirror that switched itself off would go unnoticed. :func:`tell_operator` logs the record
as usual and, only when no handler would show it, writes the same single line to stderr.
"""

from __future__ import annotations

import logging
import sys

_PREFIX = "chatwoot-mirror: "


def tell_operator(logger: logging.Logger, level: int, message: str, *args: object) -> None:
    """Log ``message % args`` at ``level``; also one stderr line if no handler shows it."""
    logger.log(level, message, *args, stacklevel=2)
    if not _shown(logger, level):
        try:
            text = message % args if args else message
            sys.stderr.write(f"{_PREFIX}{logging.getLevelName(level)} {text}\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - a closed stderr must not hurt the host
            pass


def _shown(logger: logging.Logger, level: int) -> bool:
    """Whether a real (not Null) handler on the logger's propagation path takes ``level``
    (or the host silenced the logger on purpose: then its choice stands)."""
    if not logger.isEnabledFor(level):
        return True
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if not isinstance(handler, logging.NullHandler) and level >= handler.level:
                return True
        if not current.propagate:
            return False
        current = current.parent
    return False
