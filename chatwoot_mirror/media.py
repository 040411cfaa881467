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

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

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


class MediaError(MirrorError):
    """A file could not be fetched. ``retryable`` is False when asking again cannot help
    (the provider answered 4xx; 360dialog also blocks callers after 20 such errors)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


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
