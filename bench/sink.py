"""A fast local HTTP sink that answers the Chatwoot calls the mirror makes with minimal JSON.

Run by bench/outbox.py in its own process, so that its CPU does not compete with the
mirror under measurement. usage: python bench/sink.py PORT_FILE
"""

from __future__ import annotations

import itertools
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ids = itertools.count(1)


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?")[0]
        if self.command == "GET" and path.endswith("/conversations"):
            data: object = []
        elif path.endswith("/contacts"):
            source_id = json.loads(body or b"{}").get("source_id")
            data = {"source_id": source_id, "id": next(ids), "pubsub_token": "x"}
        else:
            data = {"id": next(ids), "status": "open", "content_attributes": {}}
        out = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        return


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    server.daemon_threads = True
    with open(sys.argv[1], "w") as f:
        f.write(str(server.server_address[1]))
    server.serve_forever()
