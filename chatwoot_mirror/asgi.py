"""ASGI door beside the Flask blueprint: the same framework-neutral handlers, translated.

    from chatwoot_mirror.asgi import create_app
    app.mount("/chatwoot", create_app(mirror))          # FastAPI or Starlette
    # Chatwoot's API inbox webhook URL: https://your-bot.example.com/chatwoot/webhook

It needs no web framework: a plain ASGI 3 application, which any ASGI server (uvicorn,
hypercorn, granian) runs and FastAPI/Starlette mount. The handlers touch the store and
are blocking, so each runs in a worker thread, never on the event loop. Bodies are read
to at most the limit plus one byte, whatever the client declares.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from .mirror import Mirror
from .routes import Route, chatwoot_routes
from .webhooks import WebhookRequest

Scope = Mapping[str, Any]
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]


class App:
    """An ASGI application serving a route table (:mod:`chatwoot_mirror.routes`)."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = {(route.method.upper(), route.path): route for route in routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # run bare under a server: nothing to start
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = _route_path(scope)
        method = str(scope.get("method", "GET")).upper()
        route = self.routes.get((method, path))
        if route is None:
            known = any(p == path for _, p in self.routes)
            status = 405 if known else 404
            await _json(send, status, {"result": "method_not_allowed" if known else
                                       "not_found"})
            return
        if route.render is not None:
            body, content_type = await asyncio.to_thread(route.render)
            await _answer(send, 200, body, content_type)
            return
        assert route.handle is not None
        try:
            received = await _read_body(receive, route.max_bytes)
        except _Disconnected:
            return  # the client left mid-body: a truncated webhook is not handled
        if received is None:
            await _json(send, 413, {"result": "too_large"})
            return
        request = WebhookRequest(headers=_headers(scope), body=received,
                                 query=dict(parse_qsl(scope.get("query_string", b"")
                                                      .decode("latin-1"))))
        result = await asyncio.to_thread(route.handle, request)  # blocking store work
        await _json(send, result.status, result.body)


def create_app(mirror: Mirror) -> App:
    """The routes of :func:`~chatwoot_mirror.routes.chatwoot_routes` (``POST /webhook``,
    ``GET /metrics`` with ``CHATWOOT_METRICS``); fails at creation without webhook
    verification, like the Flask blueprint. Provider routes:
    :func:`chatwoot_mirror.integrations.asgi.create_provider_app`."""
    return App(chatwoot_routes(mirror))


# -- ASGI plumbing -----------------------------------------------------------------------------

def _route_path(scope: Scope) -> str:
    """The path below the mount point: Starlette keeps the whole path and sets root_path."""
    path = str(scope.get("path", "/"))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root):] or "/"
    return path


def _headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    return headers


class _Disconnected(Exception):
    """The client went away before its body ended."""


async def _read_body(receive: Receive, max_bytes: int) -> bytes | None:
    """The body, or ``None`` once it exceeds ``max_bytes`` (nothing more is read); raises
    :class:`_Disconnected` when the client leaves before the body ended."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            return None
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


async def _answer(send: Send, status: int, body: bytes, content_type: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type.encode("latin-1")),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, body: Mapping[str, Any]) -> None:
    await _answer(send, status, json.dumps(body).encode(), "application/json")


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
