"""The HTTP client adapters share, and its errors, whose types say whether a retry is safe
(as :mod:`chatwoot_mirror.errors` does for Chatwoot): :class:`ProviderUnavailable` may
succeed later, :class:`ProviderRejected` never will."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import requests

from chatwoot_mirror.errors import MirrorError
from chatwoot_mirror.outbound import OutboundPolicy
from chatwoot_mirror.relay import RelayRejected
from chatwoot_mirror.scoped import ScopedValues

from .base import ChannelAdapter


class ProviderError(MirrorError):
    """A provider call failed; ``status`` is the HTTP status when there was one. Its
    subclasses say whether trying again can help (:attr:`retryable`)."""

    retryable = False

    def __init__(self, message: str, *, operation: str, status: int | None = None) -> None:
        super().__init__(f"{operation}: {message}")
        self.operation = operation
        self.status = status


class ProviderUnavailable(ProviderError):
    """5xx, 429, a timeout or no connection: a later attempt may succeed."""

    retryable = True


class ProviderRejected(ProviderError, RelayRejected):
    """The provider refused the request (4xx): sending it again will not help."""


class HttpClient:
    """One :class:`requests.Session` per client, explicit timeouts, errors mapped to
    :class:`ProviderError`; error texts carry the provider's message, never a secret."""

    #: where files may be fetched from; a mirror's own policy once connected to it
    outbound: OutboundPolicy = OutboundPolicy()

    def __init__(self, *, session: requests.Session | None = None,
                 timeout: tuple[float, float] = (3.05, 15.0)) -> None:
        self.session = session or requests.Session()
        self.timeout = timeout

    def _call(self, operation: str, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise ProviderUnavailable(type(exc).__name__, operation=operation) from None
        if response.status_code >= 400:
            problem = _problem(response)
            cls = ProviderUnavailable if self._retryable(response) else ProviderRejected
            raise cls(f"HTTP {response.status_code} {problem}".strip(), operation=operation,
                      status=response.status_code)
        return response

    def _retryable(self, response: requests.Response) -> bool:
        """Whether a failed answer may succeed later: a 5xx or a 429. A provider whose
        refusals say more (an error code in a 400) decides in its own module."""
        return response.status_code >= 500 or response.status_code == 429

    def _json(self, operation: str, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        response = self._call(operation, method, url, **kwargs)
        try:
            data = response.json()
        except ValueError:
            raise ProviderError("answer is not JSON", operation=operation,
                                status=response.status_code) from None
        return data if isinstance(data, dict) else {"data": data}

    def _fetch(self, operation: str, url: str, max_bytes: int, size: int | None, *,
               trusted: tuple[str, ...] = (), headers: Mapping[str, str] | None = None,
               ) -> tuple[bytes, str | None]:
        """GET a file within :attr:`outbound` (http(s) only, no private target but the
        ``trusted`` hosts the operator configured, each redirect checked, one time
        budget), streaming, stopping past ``max_bytes``; (bytes, content type)."""
        return self.outbound.fetch(self.session, url, max_bytes=max_bytes, size=size,
                                   headers=headers, trusted=trusted, timeout=self.timeout,
                                   operation=operation)

    def close(self) -> None:
        self.session.close()


class HttpAdapter(HttpClient, ChannelAdapter):
    """A channel adapter that talks HTTP (all of ours)."""

    def attach(self, values: Callable[[str], ScopedValues] | None,
               outbound: OutboundPolicy) -> None:
        self.outbound = outbound  # downloads follow the mirror's policy
        super().attach(values, outbound)


def _problem(response: requests.Response) -> str:
    """The provider's own short error text (Graph ``error.message``, uazapi ``error``)."""
    try:
        data = response.json()
    except ValueError:
        return ""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict):
            data_ = error.get("error_data")
            details = data_.get("details") if isinstance(data_, dict) else None
            text = str(details or error.get("message") or "")[:200]
            # Graph's code first, as receipts carry it: the mirror explains known codes
            code = error.get("code")
            return f"{code} {text}" if isinstance(code, (int, str)) and code != "" else text
        if error:
            return str(error)[:200]
        return str(data.get("message") or "")[:200]
    return ""
