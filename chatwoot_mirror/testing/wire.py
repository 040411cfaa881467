"""What travels over the wire: one request, one reply, Chatwoot's error bodies, and the
faults the emulator can inject between a client and its rules."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from .multipart import parse_form

NOT_FOUND_PUBLIC = {"status": 404, "error": "Not Found"}
NOT_FOUND_APP = {"error": "Resource could not be found"}
BOT_REFUSED = {"error": "Access to this endpoint is not authorized for bots"}
HMAC_FAILED = {"status": 500, "error": "Internal Server Error"}


@dataclass
class Request:
    method: str
    path: str
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers.items():
            if key.lower() == name:
                return value
        return None


@dataclass
class Reply:
    status: int
    body: Any = None
    content_type: str = "application/json"
    drop: bool = False  # commit, then close the connection without answering

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, (bytes, str)):
            return self.body if isinstance(self.body, bytes) else self.body.encode()
        return json.dumps(self.body).encode()


@dataclass
class Faults:
    """Fault injection. Rates are probabilities per request; ``outages`` are
    ``(start, end)`` wall-clock windows during which every request gets ``outage_status``."""

    latency: float = 0.0
    latency_jitter: float = 0.0
    error_rate: float = 0.0
    error_status: int = 500
    drop_after_commit_rate: float = 0.0
    outage: bool = False
    outage_status: int = 503
    outages: list[tuple[float, float]] = field(default_factory=list)
    rate_limit_per_minute: int | None = None
    #: the rate limit's window in seconds (rack-attack's is a minute; shorter for tests)
    rate_limit_window: float = 60.0
    seed: int | None = None


class ApiError(Exception):
    def __init__(self, status: int, body: Any, content_type: str = "application/json"):
        self.reply = Reply(status, body, content_type)


def parse_body(r: Request) -> dict[str, Any]:
    ctype = (r.header("Content-Type") or "").lower()
    if not r.body:
        return {}
    if ctype.startswith("multipart/form-data"):
        fields, _ = parse_form(r.header("Content-Type") or "", r.body)
        return fields
    if ctype.startswith("application/x-www-form-urlencoded"):
        return {k: v[-1] for k, v in parse_qs(r.body.decode("utf-8", "replace")).items()}
    try:
        data = json.loads(r.body)
    except ValueError:
        raise ApiError(400, {"status": 400, "error": "Bad Request"}) from None
    return data if isinstance(data, dict) else {}


def parse_query(r: Request) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(r.query).items()}
