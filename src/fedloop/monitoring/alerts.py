"""Alert sinks: where findings go besides the store (webhooks; Prometheus gauges are in metrics.py)."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import httpx

__all__ = ["AlertSink", "WebhookSink"]

_log = logging.getLogger("fedloop.monitoring.alerts")


@runtime_checkable
class AlertSink(Protocol):
    """Receives alerts; must not block (the monitor calls it while ingesting traffic)."""

    def send(self, alert: Mapping[str, Any]) -> None:
        """Deliver (or queue) one JSON-ready alert."""
        ...

    def close(self) -> None:
        """Deliver what is queued, within a short timeout, and release resources."""
        ...


class WebhookSink:
    """POSTs each alert as JSON to a URL from a background thread, retrying with backoff.

    ``send`` only appends to a bounded queue; a full queue drops the oldest alert. Each alert
    is tried ``attempts`` times (waits of 0.5 s, 1 s, 2 s, ...); what still fails is dropped,
    logged and counted in ``dropped``. A 4xx other than 408/429 is not retried.

    Parameters
    ----------
    url : str
        The receiver (Slack-compatible incoming webhooks, PagerDuty Events, any JSON endpoint).
    timeout_s : float, default 5.0
        Timeout of one POST.
    attempts : int, default 3
        Tries per alert.
    queue_size : int, default 1000
        Most alerts waiting.
    headers : Mapping[str, str] or None
        Extra headers (an authorization token).
    transport : httpx.BaseTransport or None
        For tests; the default is a real connection pool.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        attempts: int = 3,
        queue_size: int = 1000,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self.attempts = max(1, attempts)
        self.sent = 0
        self.dropped = 0
        self._queue: deque[Mapping[str, Any]] = deque(maxlen=queue_size)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._client = httpx.Client(
            timeout=timeout_s, transport=transport, headers=dict(headers or {})
        )
        self._thread = threading.Thread(target=self._run, name="fedloop-webhook", daemon=True)
        self._thread.start()

    def send(self, alert: Mapping[str, Any]) -> None:
        """Queue one alert (the oldest is dropped when the queue is full)."""
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(alert)
        self._wake.set()

    def close(self, *, timeout_s: float = 5.0) -> None:
        """Deliver what is queued within ``timeout_s`` and stop."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout_s)
        self._client.close()

    def _run(self) -> None:
        while True:
            self._wake.wait(1.0)
            self._wake.clear()
            while self._queue:
                self._deliver(self._queue.popleft())
            if self._stop.is_set():
                return

    def _deliver(self, alert: Mapping[str, Any]) -> None:
        delay_s = 0.5
        for attempt in range(1, self.attempts + 1):
            try:
                response = self._client.post(self.url, json=dict(alert))
            except httpx.HTTPError as err:
                problem = str(err) or type(err).__name__
            else:
                if response.status_code < 300:
                    self.sent += 1
                    return
                problem = f"HTTP {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                    break
            if attempt < self.attempts:
                self._stop.wait(delay_s)  # returns at once when closing
                delay_s *= 2
        self.dropped += 1
        _log.warning("webhook %s: alert dropped (%s)", self.url, problem)
