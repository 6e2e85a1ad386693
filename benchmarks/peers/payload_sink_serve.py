"""W-SERVE's payload-log sink: a stand-in monitor ingest endpoint (standard library only).

``fedloop serve --payload-log-url http://127.0.0.1:PORT/ingest`` ships batches of
``{"predictions": [...], "feedback": [...]}`` here, so W-SERVE measures fedloop with its
payload log on. The records of every POST are counted (so the count proves the log ran) by
the ids in each prediction group's ``"request_ids"`` list and by feedback's ``"kind"`` keys,
without a JSON parse, to keep this stand-in's CPU off the shared cores; ``GET /count`` answers
``{"posts": n, "records": n, "bytes": n}``; ``GET /health`` answers 200.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_LOCK = threading.Lock()
_COUNTS = {"posts": 0, "records": 0, "bytes": 0, "bad": 0}


def _count_request_ids(body: bytes) -> int:
    count, at = 0, 0
    while (start := body.find(b'"request_ids":', at)) >= 0:
        end = body.find(b"]", start)
        if end < 0:
            break
        count += (body.count(b'"', start, end) - 2) // 2
        at = end
    return count


class Handler(BaseHTTPRequestHandler):
    """Count records on POST; report counts on GET."""

    protocol_version = "HTTP/1.1"

    def _answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        """Count the records of one batch."""
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        # Count, do not parse: a JSON parse of 256-row records costs a whole core here, on the
        # two cores the server and the load generator share. Predictions come grouped, one
        # quoted id per request in each group's "request_ids" list; feedback records carry
        # one "kind" key each.
        records = body.count(b'"kind"') + _count_request_ids(body)
        bad = 0 if body.lstrip().startswith(b"{") else 1
        with _LOCK:
            _COUNTS["posts"] += 1
            _COUNTS["records"] += records
            _COUNTS["bytes"] += len(body)
            _COUNTS["bad"] += bad
        self._answer(200, b'{"ok":true}')

    def do_GET(self) -> None:
        """Answer the counts (``/count``) or a health check."""
        with _LOCK:
            body = json.dumps(_COUNTS).encode()
        self._answer(200, body if self.path.startswith("/count") else b'{"status":"ok"}')

    def log_message(self, format: str, *args: object) -> None:
        """Log nothing per request."""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    ThreadingHTTPServer(("127.0.0.1", args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
