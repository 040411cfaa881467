"""The web routes, framework-neutral: one table that the Flask blueprint and the ASGI app
both serve (:mod:`.flask`, :mod:`.asgi`); they translate requests, nothing else.

A route either handles a request (JSON in, :class:`~.webhooks.WebhookResponse` out) or,
for ``GET /metrics``, answers bytes of its own content type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .mirror import Mirror
from .webhooks import WebhookRequest, WebhookResponse

Handler = Callable[[WebhookRequest], WebhookResponse]
#: a GET route's answer: ``(body, content type)``
Render = Callable[[], tuple[bytes, str]]


@dataclass(frozen=True)
class Route:
    """``method path`` served by ``handle`` (bodies up to ``max_bytes``) or ``render``."""

    method: str
    path: str
    handle: Handler | None = None
    max_bytes: int = 0
    render: Render | None = None


def chatwoot_routes(mirror: Mirror) -> list[Route]:
    """``POST /webhook`` for Chatwoot's webhooks, and ``GET /metrics`` with
    ``CHATWOOT_METRICS``; fails without webhook verification (see
    :meth:`Mirror.webhook_handler`)."""
    handler = mirror.webhook_handler()
    routes = [Route("POST", "/webhook", handler.handle, handler.max_bytes)]
    metrics = mirror.metrics
    if metrics is not None:
        from .metrics import CONTENT_TYPE

        routes.append(Route("GET", "/metrics",
                            render=lambda: (metrics.render(), CONTENT_TYPE)))
    return routes
