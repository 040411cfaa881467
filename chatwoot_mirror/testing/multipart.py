"""multipart/form-data parsing for the emulator (the stdlib ``cgi`` module is gone in 3.13)."""

from __future__ import annotations

from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP


@dataclass
class Upload:
    name: str
    filename: str
    content_type: str
    data: bytes


def parse_form(content_type: str, body: bytes) -> tuple[dict[str, str], list[Upload]]:
    """Split a multipart body into plain fields and file uploads."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields: dict[str, str] = {}
    uploads: list[Upload] = []
    if not message.is_multipart():
        return fields, uploads
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        raw = part.get_payload(decode=True)
        payload = raw if isinstance(raw, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            uploads.append(Upload(str(name), filename, part.get_content_type(), payload))
        else:
            fields[str(name)] = payload.decode("utf-8", "replace")
    return fields, uploads
