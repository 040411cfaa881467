"""Flask adapter: translates requests for :class:`~chatwoot_mirror.webhooks.WebhookHandler`.

    app.register_blueprint(create_blueprint(mirror), url_prefix="/chatwoot")
    # Chatwoot's API inbox webhook URL: https://your-bot.example.com/chatwoot/webhook
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, jsonify, request

from .mirror import Mirror
from .webhooks import WebhookRequest, WebhookResponse


def read_body(max_bytes: int) -> bytes | None:
    """The current request's body, or ``None`` when it is larger than ``max_bytes``.

    Never reads more than ``max_bytes + 1`` bytes: a chunked body has no Content-Length
    to refuse it by, and ``request.get_data()`` would read all of it into memory first
    (300 MB of unauthenticated body took a server from 46 to 651 MB)."""
    if (request.content_length or 0) > max_bytes:
        return None
    stream = request.stream
    parts: list[bytes] = []
    left = max_bytes + 1
    while left > 0:
        chunk = stream.read(min(left, 65536))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    data = b"".join(parts)
    return None if len(data) > max_bytes else data


def translate(handle: Callable[[WebhookRequest], WebhookResponse],
              max_bytes: int) -> tuple[Response, int]:
    """Run a framework-neutral handler on the current Flask request."""
    body = read_body(max_bytes)
    if body is None:
        return jsonify({"result": "too_large"}), 413
    result = handle(WebhookRequest(
        headers=dict(request.headers), body=body, query=request.args.to_dict()))
    return jsonify(result.body), result.status


def create_blueprint(mirror: Mirror, *, name: str = "chatwoot_mirror") -> Blueprint:
    """A blueprint with ``POST /webhook`` (and ``GET /metrics`` with ``CHATWOOT_METRICS``);
    fails at creation without webhook verification."""
    handler = mirror.webhook_handler()
    blueprint = Blueprint(name, __name__)

    @blueprint.post("/webhook")
    def webhook() -> tuple[Response, int]:
        return translate(handler.handle, handler.max_bytes)

    metrics = mirror.metrics
    if metrics is not None:
        from .metrics import CONTENT_TYPE

        blueprint.add_url_rule("/metrics", "metrics",
                               lambda: Response(metrics.render(), content_type=CONTENT_TYPE))

    return blueprint
