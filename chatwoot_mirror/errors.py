"""Exceptions raised by chatwoot-mirror.

Callers that want one net catch :class:`MirrorError`. Chatwoot trouble is a
:class:`ChatwootError`; its subclasses say whether retrying can help
(:attr:`ChatwootError.retryable`). No message here ever carries a token, an
inbox identifier, a ``pubsub_token`` or a raw payload.
"""

from __future__ import annotations


class MirrorError(Exception):
    """Base class of every error this library raises."""


class ConfigError(MirrorError, ValueError):
    """The configuration is wrong; the message names the variable and the fix."""

    def __init__(self, variable: str, problem: str, fix: str | None = None) -> None:
        self.variable = variable
        self.problem = problem
        #: what to do, for ``chatwoot-mirror doctor``
        verb = "set" if problem.startswith("is not set") else "correct"
        self.fix = fix or f"{verb} {variable} in the environment or .env (see .env.example)"
        super().__init__(f"{variable}: {problem}")


class StoreError(MirrorError):
    """The local store could not be read or written (disk full, locked too long...)."""


class StoreUnavailable(StoreError):
    """The store did not answer (down, restarting, failing over, out of memory, or slower
    than its timeout): the same call may work in a moment.

    ``maybe_applied``: the command may have reached the store before the answer was lost
    (a read timeout, a connection dropped mid-command); ``False`` when the store surely
    refused it (connection refused, still loading, read-only replica)."""

    def __init__(self, message: str, *, maybe_applied: bool = False) -> None:
        super().__init__(message)
        self.maybe_applied = maybe_applied


def store_log_level(exc: BaseException) -> int:
    """How loud a store failure is where it is caught: an unavailable store is logged once
    by its circuit (``store unavailable``), so each call it fails is only debug."""
    return 10 if isinstance(exc, StoreUnavailable) else 30  # logging.DEBUG, logging.WARNING


class RowKeyTaken(StoreError):
    """:meth:`Store.enqueue` met a row key its contact already has queued or dead."""


class Deferred(MirrorError):
    """Not now, for a local reason (every download slot is busy): try again after
    ``delay`` seconds. Nothing was sent, so it is neither a failed attempt nor ambiguous."""

    def __init__(self, message: str, *, delay: float = 1.0) -> None:
        super().__init__(message)
        self.delay = delay


class ChatwootError(MirrorError):
    """Chatwoot answered with an error, or did not answer at all.

    ``operation`` names the call (``"create_contact"``), never the URL, because
    public-API URLs carry the inbox identifier, which works as a credential.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        operation: str = "",
        status: int | None = None,
    ) -> None:
        self.operation = operation
        self.status = status
        self.detail = message
        prefix = operation or "chatwoot"
        code = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{prefix}{code}: {message}")


class NotFound(ChatwootError):
    """404: the inbox, contact or conversation does not exist (any more)."""


class Rejected(ChatwootError):
    """400/422: Chatwoot refused the content; sending it again will not help."""


class AuthError(ChatwootError):
    """401/403: the token is wrong, or is not allowed to call this endpoint."""


class RateLimited(ChatwootError):
    """429 (``scope="global"``) or the 200 messages/minute flood 422 (``scope="conversation"``)."""

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        operation: str = "",
        status: int | None = None,
        scope: str = "global",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, operation=operation, status=status)
        self.scope = scope
        self.retry_after = retry_after


class Unavailable(ChatwootError):
    """5xx, connection refused or a timeout before the request was sent: safe to retry."""

    retryable = True


class AmbiguousDelivery(ChatwootError):
    """The request was sent but no answer came: Chatwoot may or may not have applied it.

    Retrying blindly can create a duplicate; check Chatwoot first.
    """

    retryable = True
