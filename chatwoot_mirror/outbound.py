"""Where this process may fetch from, and where it may send others to fetch from.

A URL that a provider's answer or a Chatwoot webhook hands us (uazapi's ``fileURL``,
Chatwoot's ``data_url``) is somebody else's choice. Followed blindly it reaches this
host's loopback, the private network or a cloud metadata service (``169.254.169.254``),
and the bytes would be uploaded to Chatwoot as the customer's file. So:

* only ``http`` and ``https``;
* no loopback, private, link-local, multicast, reserved or unspecified address, checked
  on the name's resolved addresses and again after every redirect;
* except hosts the operator names in ``CHATWOOT_MEDIA_ALLOWED_HOSTS``, and the host the
  operator configured for that very service (the uazapi server, Chatwoot itself), which
  are trusted as configured;
* every download has one total time budget, whatever the peer's pace: a host that
  drips a byte a second is cut off when the budget runs out.

A name is resolved here, then again by the HTTP client when it connects; a DNS answer
that changes in between (rebinding) is not caught. The redirect and address checks still
close the common paths.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import requests

from .media import MediaError, MediaNotReady, MediaTooLarge, read_limited

#: How many redirects a download may follow.
MAX_REDIRECTS = 5
#: ``resolve(host, port) -> [ip, ...]``; a seam for tests that have no DNS.
Resolver = Callable[[str, int], list[str]]


class RefusedTarget(MediaError):
    """The URL points where we do not fetch from (or send others to): not retryable."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise MediaError(f"cannot resolve the file's host: {exc}", retryable=True) from None
    return [str(info[4][0]) for info in infos]


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True)
class OutboundPolicy:
    """``allowed_hosts``: names (or IP literals) the operator allows even though they are
    private; ``download_seconds``: the total time budget of one download."""

    allowed_hosts: frozenset[str] = frozenset()
    download_seconds: float = 120.0
    resolve: Resolver = field(default=_resolve, compare=False, repr=False)

    @classmethod
    def of(cls, hosts: Iterable[str], download_seconds: float = 120.0) -> OutboundPolicy:
        return cls(frozenset(h.strip().lower().strip("[]") for h in hosts if h.strip()),
                   download_seconds)

    def check(self, url: str, *, trusted: Iterable[str] = (), resolve: bool = True) -> str:
        """``url`` itself when it may be fetched; raises :class:`RefusedTarget` otherwise.

        ``trusted`` are hosts configured by the operator for this service. ``resolve=False``
        checks the URL's text only, for a URL someone else will fetch (a provider fetching
        Chatwoot's ``data_url``): our DNS answers say little about theirs."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise RefusedTarget("the file's URL is not valid") from None
        if parts.scheme not in ("http", "https") or not host:
            raise RefusedTarget(f"only http(s) URLs are fetched, not {parts.scheme or '?'}:")
        if host in self.allowed_hosts or host in {t.lower() for t in trusted}:
            return url
        if host == "localhost" or host.endswith(".localhost"):
            raise RefusedTarget(f"{host} is this machine")
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            if not resolve:
                return url
            addresses = self.resolve(host, port)
        for address in addresses:
            if not _is_public(address):
                raise RefusedTarget(
                    f"{host} resolves to {address}, a private, loopback or link-local "
                    "address; add the host to CHATWOOT_MEDIA_ALLOWED_HOSTS to allow it")
        return url

    def fetch(
        self,
        session: requests.Session,
        url: str,
        *,
        max_bytes: int,
        size: int | None = None,
        headers: Mapping[str, str] | None = None,
        trusted: Iterable[str] = (),
        timeout: tuple[float, float] = (3.05, 15.0),
        operation: str = "download_media",
    ) -> tuple[bytes, str | None]:
        """GET a file within the policy: each hop checked, redirects followed by hand (the
        headers are sent to the first host only), streamed up to ``max_bytes``, within
        ``download_seconds`` overall. Returns (bytes, content type)."""
        deadline = time.monotonic() + self.download_seconds
        trusted = tuple(trusted)
        first_host = host_of(url)
        for _ in range(MAX_REDIRECTS + 1):
            self.check(url, trusted=trusted)
            same_host = host_of(url) == first_host
            left = deadline - time.monotonic()
            if left <= 0:
                raise _too_slow(operation, self.download_seconds)
            try:
                response = session.get(
                    url, headers=dict(headers or {}) if same_host else None, stream=True,
                    allow_redirects=False, timeout=(min(timeout[0], left), min(timeout[1], left)))
            except requests.RequestException as exc:
                raise MediaError(f"{operation}: {type(exc).__name__}", retryable=True) from None
            if response.is_redirect:
                location = response.headers.get("Location") or ""
                response.close()
                url = urljoin(url, location)
                continue
            return self._read(response, max_bytes, size, deadline, operation)
        raise MediaError(f"{operation}: more than {MAX_REDIRECTS} redirects")

    def _read(self, response: requests.Response, max_bytes: int, size: int | None,
              deadline: float, operation: str) -> tuple[bytes, str | None]:
        with response:
            status = response.status_code
            if status in (404, 410):
                raise MediaNotReady(f"{operation}: HTTP {status}")
            if status >= 400:
                raise MediaError(f"{operation}: HTTP {status}",
                                 retryable=status >= 500 or status == 429)
            length = response.headers.get("Content-Length")
            declared = int(length) if length and length.isdigit() else size
            # A blocked read cannot see the clock: a timer shuts the socket down instead
            # (closing the file object would wait for the blocked read's buffer lock).
            expired = threading.Event()

            def cut_off() -> None:
                expired.set()
                _shut_down(response)

            timer = threading.Timer(max(0.0, deadline - time.monotonic()), cut_off)
            timer.daemon = True
            timer.start()
            try:
                data = read_limited(response.iter_content(65536), max_bytes, declared)
            except MediaTooLarge:
                raise
            except Exception as exc:  # noqa: BLE001 - a closed socket fails in many ways
                if expired.is_set():
                    raise _too_slow(operation, self.download_seconds) from None
                raise MediaError(f"{operation}: {type(exc).__name__}", retryable=True) from None
            finally:
                timer.cancel()
            if expired.is_set():
                raise _too_slow(operation, self.download_seconds)
            return data, response.headers.get("Content-Type")


def _shut_down(response: requests.Response) -> None:
    raw = response.raw
    connection = getattr(raw, "connection", None) or getattr(raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    try:
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
        else:
            response.close()
    except OSError:
        pass


def _too_slow(operation: str, seconds: float) -> MediaError:
    return MediaError(f"{operation}: not finished within {seconds:g} s", retryable=True)


def host_of(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


__all__ = ["MAX_REDIRECTS", "OutboundPolicy", "RefusedTarget", "host_of"]
