"""chatwoot-mirror: mirror a chatbot's conversations into Chatwoot.

Public API::

    from chatwoot_mirror import Mirror, Config, log_to_chatwoot
"""

from __future__ import annotations

import atexit
import logging
import threading

from ._notice import tell_operator
from ._version import __version__
from .client import Attachment, ChatwootClient
from .config import Config
from .errors import (
    AmbiguousDelivery,
    AuthError,
    ChatwootError,
    ConfigError,
    MirrorError,
    NotFound,
    RateLimited,
    Rejected,
    StoreError,
    Unavailable,
)
from .identity import ContactIdentity, identify
from .mirror import Mirror

__all__ = [
    "AmbiguousDelivery",
    "Attachment",
    "AuthError",
    "ChatwootClient",
    "ChatwootError",
    "Config",
    "ConfigError",
    "ContactIdentity",
    "Mirror",
    "MirrorError",
    "NotFound",
    "RateLimited",
    "Rejected",
    "StoreError",
    "Unavailable",
    "__version__",
    "get_default_mirror",
    "identify",
    "log_to_chatwoot",
    "set_default_mirror",
]

log = logging.getLogger("chatwoot_mirror")
logging.getLogger("chatwoot_mirror").addHandler(logging.NullHandler())

_default: Mirror | None = None
_default_error: Exception | None = None
_default_lock = threading.Lock()


def get_default_mirror() -> Mirror:
    """The process-wide Mirror used by :func:`log_to_chatwoot`, built from the environment
    on first use. Call it at start-up to fail fast: it raises what went wrong
    (:class:`ConfigError` for a wrong setting, :class:`StoreError` for an unusable store).

    A failure is kept: later calls raise the same error without building again, until
    :func:`set_default_mirror` resets it (or the process restarts)."""
    global _default, _default_error
    with _default_lock:
        if _default is None:
            if _default_error is not None:
                raise _default_error
            try:
                _default = Mirror.from_env()
            except Exception as exc:  # whatever it is, the host must not pay for it twice
                _default_error = exc
                tell_operator(
                    log, logging.ERROR,
                    "mirroring is off until the problem is fixed and the process restarted: "
                    "%s: %s", type(exc).__name__, exc,
                )
                raise
            atexit.register(_default.close)
        return _default


def set_default_mirror(mirror: Mirror | None) -> None:
    """Use ``mirror`` for :func:`log_to_chatwoot` (``None``: build from the environment again)."""
    global _default, _default_error
    with _default_lock:
        _default = mirror
        _default_error = None


def log_to_chatwoot(
    phone: str, user_message: str, bot_response: str, sender_name: str = "Usuario"
) -> bool:
    """Mirror one exchange: the drop-in replacement of the script's function of the same name.

    Returns True once both messages are accepted. It never raises and never blocks on
    Chatwoot: a mirror that cannot be built (a wrong setting, an unusable store) is
    reported once, at ERROR and on stderr when the host has no logging set up, and every
    call then returns False at once. Call :func:`get_default_mirror` at start-up to fail
    fast instead.
    """
    if _default_error is not None and _default is None:
        return False
    try:
        mirror = get_default_mirror()
        return mirror.log_exchange(phone, user_message, bot_response, sender_name=sender_name)
    except Exception:  # reported once by get_default_mirror; the host's reply goes on
        return False
