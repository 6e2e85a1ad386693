"""The payload log: a bounded, sampled, non-blocking stream of predictions and labels to the monitor."""

from __future__ import annotations

import base64
import logging
import random
import threading
import time
from collections import deque
from typing import Any

import httpx
import numpy as np

from fedloop.serving.metrics import ServingMetrics
from fedloop.serving.runtime import Array
from fedloop.serving.schema import dumps

__all__ = ["PayloadLog", "encode_records"]

_log = logging.getLogger("fedloop.serving.payload_log")


def _tensor(arr: Array) -> dict[str, Any]:
    # Tensors travel as raw little-endian bytes in base64: encoding thousands of floats as JSON
    # numbers would cost the server more CPU than answering the requests did.
    arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    return {
        "dtype": arr.dtype.name,
        "shape": list(arr.shape),
        "b64": base64.b64encode(arr.tobytes()).decode(),
    }


def _join(parts: list[Array]) -> Array:
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts[0].ndim else np.stack(parts)


def _signature(tensors: dict[str, Array]) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    return tuple((name, a.dtype.str, a.shape[1:]) for name, a in tensors.items())


#: Records grouped between two GIL hand-backs in the shipper thread (bounds its latency cost).
_YIELD_EVERY = 32


def encode_records(records: list[dict[str, Any]]) -> bytes:
    """Encode queued records as one POST body: predictions grouped per version, then labels.

    Predictions of the same model, version, role and tensor layout become one batch whose
    tensors are the requests' rows stacked in order (``rows`` says how many each request had),
    so the cost is a few numpy calls per POST rather than per request.

    Parameters
    ----------
    records : list of dict
        As queued by :meth:`PayloadLog.offer`.

    Returns
    -------
    bytes
        ``{"predictions": [batch, ...], "feedback": [label, ...]}`` as JSON.
    """
    feedback: list[dict[str, Any]] = []
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for count, record in enumerate(records, 1):
        if count % _YIELD_EVERY == 0:
            time.sleep(0)  # hand the GIL back to the event loop: requests wait less behind us
        if record.get("kind") != "prediction":
            feedback.append(record)
            continue
        feats, preds = record["features"], record["prediction"]
        key = (
            record["model"],
            record["version"],
            record["role"],
            _signature(feats),
            _signature(preds),
        )
        group = groups.get(key)
        if group is None:
            group = groups[key] = {
                "model": record["model"],
                "version": record["version"],
                "role": record["role"],
                "request_ids": [],
                "times": [],
                "rows": [],
                "features": {name: [] for name in feats},
                "prediction": {name: [] for name in preds},
            }
        group["request_ids"].append(record["request_id"])
        group["times"].append(record["time"])
        first = next(iter(feats.values()))
        group["rows"].append(int(first.shape[0]) if first.ndim else 1)
        for name, arr in feats.items():
            group["features"][name].append(arr)
        for name, arr in preds.items():
            group["prediction"][name].append(arr)
    batches = []
    for group in groups.values():
        for part in ("features", "prediction"):
            group[part] = {name: _tensor(_join(v)) for name, v in group[part].items()}
        batches.append(group)
    return dumps({"predictions": batches, "feedback": feedback})


class PayloadLog:
    """Ships records to the monitor's ingest URL from a background thread.

    The request path only appends to a bounded deque (no I/O, no serialization: arrays are
    turned into lists in the shipper thread). When the deque is full, or a POST fails (the
    monitor is down or slow), records are dropped and counted in
    ``fedloop_serving_payload_log_records_total{outcome="dropped"}``; serving never waits.

    Each POST carries ``{"predictions": [...], "feedback": [...]}`` (see
    :func:`encode_records`). A prediction batch has model, version, role (primary, canary,
    shadow), request_ids, times (epoch seconds), rows (per request) and ``features`` /
    ``prediction`` mapping tensor names to ``{"dtype", "shape", "b64"}``: the requests' rows
    stacked, as raw little-endian bytes in base64
    (``np.frombuffer(base64.b64decode(b64), dtype).reshape(shape)``). A feedback item is
    ``{"kind": "feedback", "request_id", "time", "label", "model"}``.

    Parameters
    ----------
    url : str or None
        The monitor's ingest URL; None keeps nothing (every offer is a no-op).
    metrics : ServingMetrics
        Where the queued, sent and dropped counts go.
    fraction_sampled : float, default 1.0
        Fraction of predictions kept (feedback is always kept).
    queue_size : int, default 10000
        Most records held.
    max_records_per_post : int, default 500
        Records per POST.
    timeout_s : float, default 2.0
        Timeout of one POST.
    flush_interval_s : float, default 0.2
        Longest a record waits before it is sent.
    transport : httpx.BaseTransport or None
        For tests; the default is a real HTTP connection pool.
    """

    def __init__(
        self,
        url: str | None,
        *,
        metrics: ServingMetrics,
        fraction_sampled: float = 1.0,
        queue_size: int = 10_000,
        max_records_per_post: int = 500,
        timeout_s: float = 2.0,
        flush_interval_s: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self.fraction_sampled = fraction_sampled if url else 0.0
        self.queue_size = queue_size
        self.max_records_per_post = max_records_per_post
        self._timeout_s = timeout_s
        self._flush_interval_s = flush_interval_s
        self._transport = transport
        self._queue: deque[dict[str, Any]] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dropped = metrics.payload_records.labels("dropped")
        self._sent = metrics.payload_records.labels("sent")
        self._queued = metrics.payload_records.labels("queued")
        self._depth = metrics.payload_queue

    @property
    def enabled(self) -> bool:
        """True when a monitor URL is configured."""
        return self.url is not None

    def sample(self) -> bool:
        """Return True when the current prediction should be logged (a sampling draw)."""
        fraction = self.fraction_sampled
        return fraction >= 1.0 or (fraction > 0.0 and random.random() < fraction)

    def offer(self, record: dict[str, Any]) -> bool:
        """Queue a record without blocking; drop (and count) it when the queue is full.

        Parameters
        ----------
        record : dict
            JSON-ready except for numpy arrays, which are converted in the shipper thread.

        Returns
        -------
        bool
            True when queued.
        """
        if self.url is None:
            return False
        if len(self._queue) >= self.queue_size:
            self._dropped.inc()
            return False
        self._queue.append(record)
        self._queued.inc()
        if len(self._queue) >= self.max_records_per_post:
            self._wake.set()
        return True

    def start(self) -> None:
        """Start the shipper thread (once; a no-op without a URL)."""
        if self.url is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._ship, name="fedloop-payload-log", daemon=True)
        self._thread.start()

    def close(self, *, timeout_s: float = 5.0) -> None:
        """Send what is queued (within ``timeout_s``) and stop the thread."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
        self._thread = None

    def _take(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        while self._queue and len(batch) < self.max_records_per_post:
            batch.append(self._queue.popleft())
        return batch

    def _ship(self) -> None:
        assert self.url is not None  # start() checked it
        with httpx.Client(timeout=self._timeout_s, transport=self._transport) as client:
            while True:
                stopping = self._stop.is_set()
                if not stopping:
                    self._wake.wait(self._flush_interval_s)
                    self._wake.clear()
                while batch := self._take():
                    self._post(client, batch)
                self._depth.set(len(self._queue))
                if stopping:
                    return

    def _post(self, client: httpx.Client, batch: list[dict[str, Any]]) -> None:
        try:
            body = encode_records(batch)
            response = client.post(
                self.url or "", content=body, headers={"content-type": "application/json"}
            )
            response.raise_for_status()
        except (httpx.HTTPError, ValueError, TypeError) as err:
            self._dropped.inc(len(batch))
            _log.warning("payload log: %d records dropped (%s)", len(batch), err)
            return
        self._sent.inc(len(batch))
