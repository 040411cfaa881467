"""The files the bot sends: fetched by URL for Chatwoot (which takes files only as
uploads), probed before a provider fetches them, and made from the message itself."""

from __future__ import annotations

import requests

from .client import Attachment
from .media import INLINE_MAX, MediaError, MediaNotReady, MediaRef, MediaTooLarge, file_from
from .outbound import OutboundPolicy, host_of


class BotFiles:
    """Fetches within the media rules (``outbound``), on a session of its own."""

    def __init__(self, outbound: OutboundPolicy, chatwoot_url: str | None) -> None:
        self.outbound = outbound
        self.chatwoot_url = chatwoot_url
        self.session = requests.Session()

    def fetch(self, ref: MediaRef, max_bytes: int) -> Attachment:
        """A file the bot sent by URL, for Chatwoot: fetched like customers' files (no
        private target unless ``CHATWOOT_MEDIA_ALLOWED_HOSTS``, each redirect checked,
        within the size and time limits)."""
        data, content_type = self.outbound.fetch(
            self.session, ref.ref, max_bytes=max_bytes, size=ref.size, operation="fetch_file")
        return file_from(data, ref, content_type)

    def ready(self, url: str) -> bool | None:
        """Whether a file the provider is about to fetch by ``url`` is there: ``False``
        while it answers 404 or 410 (Chatwoot's S3 direct upload still under way),
        ``None`` when we cannot tell (a target the policy refuses, no answer), when the
        provider is left to try. Reads one chunk at most; Chatwoot's own host is trusted,
        as it is for the relay itself."""
        trusted = (host_of(self.chatwoot_url),) if self.chatwoot_url else ()
        try:
            self.outbound.fetch(self.session, url, max_bytes=1, trusted=trusted,
                                operation="probe_file")
        except MediaTooLarge:
            return True  # it has bytes
        except MediaNotReady:
            return False
        except MediaError:
            return None
        return True

    def close(self) -> None:
        self.session.close()


def inline_file(ref: MediaRef, max_bytes: int) -> Attachment:
    """A file made from the message itself (a contact card): its text is the file."""
    data = ref.ref.encode("utf-8")[:INLINE_MAX]
    if len(data) > max_bytes:
        raise MediaError("inline file over the limit")
    return Attachment(data, ref.filename or "file.txt", ref.mime_type or "text/plain")
