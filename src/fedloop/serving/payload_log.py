"""The payload log: a bounded, sampled, non-blocking stream of predictions and labels to the monitor."""

from __future__ import annotations

import base64
import http.client
import logging
import random
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from fedloop.serving.metrics import ServingMetrics
from fedloop.serving.runtime import Array
from fedloop.serving.schema import dumps

__all__ = ["PayloadLog"]

_log = logging.getLogger("fedloop.serving.payload_log")

_Key = tuple[Any, ...]


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


def _signature(tensors: Mapping[str, Array]) -> tuple[tuple[str, str, tuple[int, ...]], ...]:
    return tuple((name, a.dtype.str, a.shape[1:]) for name, a in tensors.items())


class _Batch:
    """Predictions of one model, version, role and tensor layout, gathered as they are offered.

    Grouping happens on the request path (a dict lookup and a few list appends per request),
    so the shipper thread only concatenates and encodes whole batches: a handful of numpy
    calls per POST, never a Python loop over records that would hold the GIL while requests
    wait.
    """

    __slots__ = (
        "features",
        "model",
        "prediction",
        "request_ids",
        "role",
        "rows",
        "times",
        "version",
    )

    def __init__(
        self,
        model: str,
        version: int,
        role: str,
        feats: Mapping[str, Array],
        preds: Mapping[str, Array],
    ) -> None:
        self.model, self.version, self.role = model, version, role
        self.request_ids: list[str] = []
        self.times: list[float] = []
        self.rows: list[int] = []
        self.features: dict[str, list[Array]] = {name: [] for name in feats}
        self.prediction: dict[str, list[Array]] = {name: [] for name in preds}

    def add(
        self, request_id: str, when: float, feats: Mapping[str, Array], preds: Mapping[str, Array]
    ) -> None:
        self.request_ids.append(request_id)
        self.times.append(when)
        first = next(iter(feats.values()))
        self.rows.append(int(first.shape[0]) if first.ndim else 1)
        for name, arr in feats.items():
            self.features[name].append(arr)
        for name, arr in preds.items():
            self.prediction[name].append(arr)

    def encode(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "role": self.role,
            "request_ids": self.request_ids,
            "times": self.times,
            "rows": self.rows,
            "features": {name: _tensor(_join(v)) for name, v in self.features.items()},
            "prediction": {name: _tensor(_join(v)) for name, v in self.prediction.items()},
        }


def encode_body(batches: list[_Batch], feedback: list[dict[str, Any]]) -> bytes:
    """Return one POST body: ``{"predictions": [batch, ...], "feedback": [label, ...]}``."""
    return dumps({"predictions": [b.encode() for b in batches], "feedback": feedback})


class PayloadLog:
    """Ships predictions and labels to the monitor's ingest URL from a background thread.

    The request path only files a record into its batch under a lock (no I/O, no encoding).
    When ``queue_size`` records are pending, or a POST fails (the monitor is down or slow),
    records are dropped and counted in
    ``fedloop_serving_payload_log_records_total{outcome="dropped"}``; serving never waits.

    Each POST carries ``{"predictions": [...], "feedback": [...]}``. A prediction batch has
    model, version, role (primary, canary, shadow), request_ids, times (epoch seconds), rows
    (per request) and ``features`` / ``prediction`` mapping tensor names to
    ``{"dtype", "shape", "b64"}``: the requests' rows stacked in order, as raw little-endian
    bytes in base64 (``np.frombuffer(base64.b64decode(b64), dtype).reshape(shape)``). A
    feedback item is ``{"kind": "feedback", "request_id", "time", "label", "model"}``.

    Parameters
    ----------
    url : str or None
        The monitor's ingest URL; None keeps nothing (every offer is a no-op).
    metrics : ServingMetrics
        Where the queued, sent and dropped counts go.
    fraction_sampled : float, default 1.0
        Fraction of predictions kept (feedback is always kept).
    queue_size : int, default 10000
        Most records pending.
    max_records_per_post : int, default 500
        Pending records that trigger a POST before ``flush_interval_s`` is up; a POST
        carries what is pending then (more only while the monitor is slow).
    timeout_s : float, default 2.0
        Timeout of one POST.
    flush_interval_s : float, default 0.2
        Longest a record waits before it is sent.
    api_key : str or None, default None
        Sent as ``Authorization: Bearer <api_key>`` (a key of role ``client`` or above) when
        the monitor asks for API keys.

    Notes
    -----
    The shipper speaks HTTP/1.1 over one kept-alive connection with the standard library's
    ``http.client``: it runs in the serving process, where every millisecond a thread holds
    the GIL delays requests, and it costs about half the CPU per POST of a full-featured
    client (measured: 0.6 vs 1.0 ms for 500 records).
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
        api_key: str | None = None,
    ) -> None:
        self.url = url
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self.fraction_sampled = fraction_sampled if url else 0.0
        self.queue_size = queue_size
        self.max_records_per_post = max_records_per_post
        self._timeout_s = timeout_s
        self._flush_interval_s = flush_interval_s
        self._connection: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._batches: dict[_Key, _Batch] = {}
        self._feedback: list[dict[str, Any]] = []
        self._pending = 0
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

    def offer_prediction(
        self,
        *,
        model: str,
        version: int,
        role: str,
        request_id: str,
        features: Mapping[str, Array],
        prediction: Mapping[str, Array],
    ) -> bool:
        """Queue one request's features and prediction without blocking; drop it when full.

        Parameters
        ----------
        model, version, role : str, int, str
            Who answered (role: primary, canary or shadow).
        request_id : str
            The request's id (what feedback refers to).
        features, prediction : Mapping[str, ndarray]
            The request's input tensors and the version's outputs (not copied: the serving
            path never writes to them after answering).

        Returns
        -------
        bool
            True when queued.
        """
        if self.url is None:
            return False
        now = time.time()
        key = (model, version, role, _signature(features), _signature(prediction))
        with self._lock:
            if self._pending >= self.queue_size:
                self._dropped.inc()
                return False
            batch = self._batches.get(key)
            if batch is None:
                batch = self._batches[key] = _Batch(model, version, role, features, prediction)
            batch.add(request_id, now, features, prediction)
            self._pending += 1
            full = self._pending >= self.max_records_per_post
        self._queued.inc()
        if full:
            self._wake.set()
        return True

    def offer_feedback(self, label: Mapping[str, Any]) -> bool:
        """Queue one label (``request_id``, ``label``, optional ``model``); drop it when full.

        Returns
        -------
        bool
            True when queued.
        """
        if self.url is None:
            return False
        record = {"kind": "feedback", "time": time.time(), **label}
        with self._lock:
            if self._pending >= self.queue_size:
                self._dropped.inc()
                return False
            self._feedback.append(record)
            self._pending += 1
            full = self._pending >= self.max_records_per_post
        self._queued.inc()
        if full:
            self._wake.set()
        return True

    def start(self) -> None:
        """Start the shipper thread (once; a no-op without a URL)."""
        if self.url is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._ship, name="fedloop-payload-log", daemon=True)
        self._thread.start()

    def close(self, *, timeout_s: float = 5.0) -> None:
        """Send what is pending (within ``timeout_s``) and stop the thread."""
        if self._thread is None:
            return
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
        self._thread = None

    def _take(self) -> tuple[list[_Batch], list[dict[str, Any]], int]:
        with self._lock:
            batches, feedback, count = list(self._batches.values()), self._feedback, self._pending
            self._batches, self._feedback, self._pending = {}, [], 0
        return batches, feedback, count

    def _ship(self) -> None:
        try:
            while True:
                stopping = self._stop.is_set()
                if not stopping:
                    self._wake.wait(self._flush_interval_s)
                    self._wake.clear()
                batches, feedback, count = self._take()
                if count:
                    self._post(batches, feedback, count)
                self._depth.set(self._pending)
                if stopping:
                    return
        finally:
            if self._connection is not None:
                self._connection.close()

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            parts = urlsplit(self.url or "")
            kind = (
                http.client.HTTPSConnection
                if parts.scheme == "https"
                else http.client.HTTPConnection
            )
            self._connection = kind(parts.hostname or "", parts.port, timeout=self._timeout_s)
        return self._connection

    def _post(self, batches: list[_Batch], feedback: list[dict[str, Any]], count: int) -> None:
        parts = urlsplit(self.url or "")
        target = parts.path or "/"
        if parts.query:
            target += f"?{parts.query}"
        try:
            body = encode_body(batches, feedback)
            connection = self._connect()
            connection.request("POST", target, body=body, headers=self._headers)
            response = connection.getresponse()
            response.read()
            if response.status in (401, 403):
                raise ValueError(
                    f"the monitor refused the payload log's API key (HTTP {response.status}); "
                    "set serving.payload_log.api_key (FEDLOOP_SERVING__PAYLOAD_LOG__API_KEY) "
                    "to a key of role client or above"
                )
            if response.status >= 300:
                raise ValueError(f"the monitor answered HTTP {response.status}")
        except (OSError, http.client.HTTPException, ValueError, TypeError) as err:
            if self._connection is not None:  # start afresh on the next POST
                self._connection.close()
                self._connection = None
            self._dropped.inc(count)
            _log.warning("payload log: %d records dropped (%s)", count, err)
            return
        self._sent.inc(count)
