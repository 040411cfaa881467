"""Files customers send, from the provider to Chatwoot.

A provider's webhook carries a reference to a file (a media id, a message id), not the
file. Downloading it in the webhook request would hold up the provider's acknowledgement
(360dialog expects a median under 250 ms), so the message is queued with a
:class:`MediaRef` and the delivery worker downloads the file just before posting it,
through the fetcher the channel adapter registered with ``mirror.on_media_download``.
A file over ``CHATWOOT_MEDIA_MAX_MB``, or one the provider will not give, is mirrored as a
short text note instead, so the agent still sees that the customer sent something.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from .client import Attachment
from .errors import MirrorError


@dataclass(frozen=True)
class MediaRef:
    """A customer's file still at the provider.

    ``source`` names the adapter that can fetch it; ``ref`` is what that adapter needs
    (a 360dialog media id, a uazapi message id); ``kind`` is image, audio, video,
    document or sticker; ``size`` is in bytes when the webhook says.
    """

    source: str
    ref: str
    kind: str
    mime_type: str | None = None
    filename: str | None = None
    size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MediaRef:
        return cls(**data)


#: :attr:`MediaRef.source` of a file the bot sent by URL (``ref`` is the URL)
URL_FILE = "url"
#: :attr:`MediaRef.source` of a small file made from the message itself (a vCard):
#: ``ref`` is its text
INLINE_FILE = "inline"
INLINE_MAX = 64 * 1024


class MediaError(MirrorError):
    """A file could not be fetched. ``retryable`` is False when asking again cannot help
    (the provider answered 4xx; 360dialog also blocks callers after 20 such errors)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class MediaNotReady(MediaError):
    """The file is not there yet (HTTP 404 or 410): an upload still under way (Chatwoot's
    S3 direct upload, a provider's CDN). Asked for again for
    ``CHATWOOT_MEDIA_WAIT_SECONDS`` before a note stands in for it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class MediaTooLarge(MediaError):
    """The file is larger than the limit; raised before it is read to the end."""

    def __init__(self, size: int | None) -> None:
        super().__init__(f"file larger than the limit ({size or '?'} bytes)")
        self.size = size


#: ``fetch(ref, max_bytes) -> Attachment``; raises :class:`MediaError`.
Fetcher = Callable[[MediaRef, int], Attachment]


def read_limited(chunks: Any, max_bytes: int, size: int | None = None) -> bytes:
    """Join an iterator of byte chunks, stopping with :class:`MediaTooLarge` as soon as
    more than ``max_bytes`` arrived: a huge file never sits whole in memory."""
    if size is not None and size > max_bytes:
        raise MediaTooLarge(size)
    parts: list[bytes] = []
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise MediaTooLarge(size or total)
        parts.append(chunk)
    return b"".join(parts)


#: leading bytes of the file types WhatsApp carries, checked in order
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"%PDF-", "application/pdf"),
    (0, b"OggS", "audio/ogg"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"#!AMR", "audio/amr"),
    (0, b"BEGIN:VCARD", "text/vcard"),
    (0, b"PK\x03\x04", "application/zip"),
)
#: containers whose label says more than their first bytes (an .xlsx is a zip, an .m4a
#: and an .mp4 share ``ftyp``): a label of the same container is kept
_CONTAINERS = {"application/zip": ("application/vnd.openxmlformats", "application/vnd.oasis",
                                   "application/epub", "application/java-archive"),
               "video/mp4": ("audio/mp4", "audio/m4a", "audio/x-m4a", "audio/aac",
                             "video/quicktime", "video/3gpp", "image/heic", "image/avif")}


def sniff(data: bytes) -> str | None:
    """The file's type from its first bytes, or ``None`` when they say nothing we know."""
    head = data[:16]
    for offset, magic, mime in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return mime
    if head[:4] == b"RIFF" and head[8:12] in (b"WEBP", b"WAVE"):
        return "image/webp" if head[8:12] == b"WEBP" else "audio/wav"
    if head[4:8] == b"ftyp":
        return "audio/mp4" if head[8:12] in (b"M4A ", b"M4B ") else "video/mp4"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return "audio/aac"  # ADTS
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "audio/mpeg"  # an MP3 frame without an ID3 tag
    return None


def true_type(data: bytes, labelled: str | None) -> str:
    """The file's MIME type: the label, unless the bytes say otherwise (a voice note
    labelled ``audio/ogg`` whose bytes are MP3 is ``audio/mpeg``, and plays as such)."""
    label = (labelled or "").split(";", 1)[0].strip().lower()
    found = sniff(data)
    if found is None or found == label:
        return label or found or "application/octet-stream"
    if label.startswith(_CONTAINERS.get(found, ("\0",))):
        return label
    return found


def file_from(data: bytes, ref: MediaRef, content_type: str | None = None) -> Attachment:
    """``data`` as a file for Chatwoot: its type from the bytes when the label is wrong,
    its name from the reference (or made up), with the extension of its true type."""
    mime = true_type(data, ref.mime_type or content_type)
    extension = _EXTENSIONS.get(mime) or mimetypes.guess_extension(mime) or ""
    name = ref.filename or _name_of(ref) or f"{ref.kind}"
    stem, dot, old = name.rpartition(".")
    if not dot:
        name = name + extension
    elif extension and mimetypes.guess_type(name)[0] != mime and f".{old.lower()}" not in (
            _ALIASES.get(mime, ())):
        name = stem + extension
    return Attachment(data, name, mime)


_EXTENSIONS = {"audio/mpeg": ".mp3", "audio/ogg": ".ogg", "image/jpeg": ".jpg",
               "audio/mp4": ".m4a", "video/mp4": ".mp4", "text/vcard": ".vcf",
               "image/webp": ".webp", "audio/aac": ".aac", "audio/amr": ".amr",
               "application/octet-stream": ""}
_ALIASES = {"audio/ogg": (".ogg", ".oga", ".opus"), "image/jpeg": (".jpg", ".jpeg"),
            "audio/mp4": (".m4a", ".mp4"), "text/vcard": (".vcf", ".vcard")}


def url_name(url: str) -> str:
    """The last part of a URL's path, unquoted (``""`` when none): the file's name in
    most file URLs, ActiveStorage's included."""
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


def _name_of(ref: MediaRef) -> str:
    """A name for a file that came without one: the last part of its URL path, else its
    kind and the end of its reference."""
    if ref.ref.startswith(("http://", "https://")):
        last = url_name(ref.ref)
        if last and len(last) <= 120:
            return last
    safe = "".join(ch for ch in ref.ref[-12:] if ch.isalnum())
    return f"{ref.kind}-{safe}" if safe else ref.kind
