"""File types: what WhatsApp calls a MIME type, and names for files that came without one."""

from __future__ import annotations

import mimetypes

from chatwoot_mirror.client import Attachment
from chatwoot_mirror.media import MediaRef, file_from
from chatwoot_mirror.relay import AgentAttachment

CAPTIONED = {"image", "video", "document"}


def kind_of(mime_type: str | None) -> str:
    """WhatsApp's media type for a MIME type: image, video, audio or document."""
    major = (mime_type or "").split("/", 1)[0]
    return major if major in ("image", "video", "audio") else "document"


def mime_for(item: AgentAttachment) -> str:
    """MIME type of a file Chatwoot sends: from its name, else from Chatwoot's file type."""
    guessed = mimetypes.guess_type(item.filename or item.url.split("?", 1)[0])[0]
    if guessed:
        return guessed
    return {"image": "image/jpeg", "audio": "audio/mpeg", "video": "video/mp4"}.get(
        item.file_type, "application/octet-stream")


def guess_filename(kind: str, mime_type: str | None, ref: str) -> str:
    extension = mimetypes.guess_extension((mime_type or "").split(";")[0].strip()) or ""
    return f"{kind}-{ref[-12:]}{extension}"


def as_attachment(media: MediaRef, data: bytes, content_type: str | None) -> Attachment:
    """A downloaded file for Chatwoot: typed by its bytes when the provider's label is
    wrong (see :func:`chatwoot_mirror.media.file_from`)."""
    return file_from(data, media, content_type)
