"""A provider API stand-in mounted on an adapter's own requests.Session (nothing global):
records what the adapter sent and answers with contract payloads."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

Answer = tuple[int, Any, str]  # status, body (dict -> JSON, bytes as is), content type
Route = Callable[[requests.PreparedRequest], Answer]


class FakeProvider(BaseAdapter):
    def __init__(self, routes: dict[tuple[str, str], Route | Answer]) -> None:
        super().__init__()
        self.routes = routes
        self.requests: list[requests.PreparedRequest] = []
        self.lock = threading.Lock()
        self.down = False

    def mount_on(self, session: requests.Session, base_url: str) -> FakeProvider:
        session.mount(base_url, self)
        return self

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        with self.lock:
            self.requests.append(request)
        if self.down:
            raise requests.ConnectionError("provider down")
        path = urlsplit(request.url).path
        route = self.routes.get((request.method or "GET", path))
        status, body, content_type = (404, {"error": "no route"}, "application/json") if (
            route is None) else route(request) if callable(route) else route
        response = requests.Response()
        response.status_code = status
        response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response._content_consumed = True
        response.raw = io.BytesIO(response._content)
        response.headers = CaseInsensitiveDict({"Content-Type": content_type,
                                                "Content-Length": str(len(response._content))})
        response.url = request.url or ""
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass

    def sent(self, method: str, path: str) -> list[dict[str, Any]]:
        """JSON bodies of the requests to ``path``."""
        with self.lock:
            return [json.loads(r.body) for r in self.requests
                    if r.method == method and urlsplit(r.url).path == path and r.body]
