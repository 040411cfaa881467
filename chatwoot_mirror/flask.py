"""Flask adapter: translates requests for :class:`~chatwoot_mirror.webhooks.WebhookHandler`.

    app.register_blueprint(create_blueprint(mirror), url_prefix="/chatwoot")
    # Chatwoot's API inbox webhook URL: https://your-bot.example.com/chatwoot/webhook
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, Response, jsonify, request

from .mirror import Mirror
from .routes import Route, chatwoot_routes
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


def blueprint_for(routes: Iterable[Route], name: str) -> Blueprint:
    """A blueprint serving a route table (:mod:`chatwoot_mirror.routes`)."""
    blueprint = Blueprint(name, __name__)
    for route in routes:
        endpoint = route.path.strip("/").replace("/", "_") or "root"
        blueprint.add_url_rule(route.path, endpoint, _view(route), methods=[route.method])
    return blueprint


def _view(route: Route) -> Callable[[], Any]:
    render, handle = route.render, route.handle
    if render is not None:
        def answer() -> Response:
            body, content_type = render()
            return Response(body, content_type=content_type)
        return answer
    assert handle is not None

    def webhook() -> tuple[Response, int]:
        return translate(handle, route.max_bytes)
    return webhook


def create_blueprint(mirror: Mirror, *, name: str = "chatwoot_mirror") -> Blueprint:
    """The routes of :func:`~chatwoot_mirror.routes.chatwoot_routes` (``POST /webhook``,
    ``GET /metrics`` with ``CHATWOOT_METRICS``); fails at creation without webhook
    verification."""
    return blueprint_for(chatwoot_routes(mirror), name)
