"""Loopback helpers shared by the tests of several packages: an ASGI app in a thread, a JSON receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from fedloop.api.background import serve_in_thread


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free loopback port; yield its base URL."""
    with serve_in_thread(app, start_timeout_s=10, stop_timeout_s=10) as url:
        yield url


def metric(text: str, name: str, **labels: str) -> float:
    """Return the sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{", 1)[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


class Receiver:
    """A tiny monitor on loopback that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.bodies: list[Any] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["content-length"])
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Stay quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ingest"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def records(self) -> list[dict[str, Any]]:
        """Return every record received so far, one per request (prediction batches split)."""
        out: list[dict[str, Any]] = []
        for body in list(self.bodies):
            for batch in body["predictions"]:
                feats = {k: tensor(v) for k, v in batch["features"].items()}
                preds = {k: tensor(v) for k, v in batch["prediction"].items()}
                cuts = np.cumsum(batch["rows"])[:-1]
                for i, rid in enumerate(batch["request_ids"]):
                    out.append(
                        {
                            "kind": "prediction",
                            "request_id": rid,
                            "time": batch["times"][i],
                            "model": batch["model"],
                            "version": batch["version"],
                            "role": batch["role"],
                            "features": {k: np.split(v, cuts)[i] for k, v in feats.items()},
                            "prediction": {k: np.split(v, cuts)[i] for k, v in preds.items()},
                        }
                    )
            out.extend(body["feedback"])
        return out

    def wait_for(self, predicate: Any, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """Wait until ``predicate(records)`` holds; return the records."""
        deadline = time.monotonic() + timeout_s
        while not predicate(self.records):
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver got only {len(self.records)} records")
            time.sleep(0.02)
        return self.records

    def close(self) -> None:
        """Stop the receiver."""
        self.server.shutdown()
        self.server.server_close()


def tensor(value: dict[str, Any]) -> np.ndarray:
    """Decode a payload-log tensor ``{"dtype", "shape", "b64"}``."""
    import base64

    raw = base64.b64decode(value["b64"])
    return np.frombuffer(raw, dtype=np.dtype(value["dtype"]).newbyteorder("<")).reshape(
        value["shape"]
    )
