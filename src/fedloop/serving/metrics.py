"""Prometheus metrics of the inference server: requests, latency, batches, errors, per version.

Each app has its own ``CollectorRegistry``, so several apps (tests) live in one process. With
several worker processes, ``fedloop serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers
start: every worker then writes its values to files there and ``/metrics``, whichever worker
answers, adds up all workers (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

__all__ = ["CONTENT_TYPE", "ServingMetrics", "reap_dead_workers"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
)  # fmt: skip
_COUNT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)


def _multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def reap_dead_workers(path: str) -> list[int]:
    """Drop the live gauges of worker processes that are gone (a crashed, restarted worker).

    Counters and histograms of a dead worker stay (they count what it served); its
    ``live*`` gauges (payload-log queue, loaded versions) would otherwise be reported forever.

    Parameters
    ----------
    path : str
        The ``PROMETHEUS_MULTIPROC_DIR``.

    Returns
    -------
    list of int
        The pids whose files were removed.
    """
    dead: set[int] = set()
    for name in os.listdir(path):
        if name.startswith("gauge_live") and name.endswith(".db"):
            pid_text = name[: -len(".db")].rsplit("_", 1)[-1]
            if pid_text.isdigit() and not _alive(int(pid_text)):
                dead.add(int(pid_text))
    for pid in dead:
        mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
    return sorted(dead)


class ServingMetrics:
    """The server's metrics, with labelled children cached so the hot path does dict lookups only.

    Metric names (all prefixed ``fedloop_serving_``): ``requests_total`` {model, version,
    endpoint, status}, ``request_duration_seconds`` {model, version, endpoint},
    ``batch_requests`` and ``batch_rows`` {model, version} (per onnxruntime call),
    ``errors_total`` {model, code}, ``shadow_total`` {model, version, outcome},
    ``payload_log_records_total`` {outcome: queued, sent, dropped}, ``payload_log_queue``,
    ``model_loaded`` {model, version, role}, ``swaps_total`` {model} and
    ``traffic_changes_total`` {model}.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            "fedloop_serving_requests",
            "Requests answered, by model version, endpoint and HTTP status.",
            ["model", "version", "endpoint", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "fedloop_serving_request_duration_seconds",
            "Time from the request's arrival to its answer.",
            ["model", "version", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=reg,
        )
        self.batch_requests = Histogram(
            "fedloop_serving_batch_requests",
            "Requests coalesced into one onnxruntime call.",
            ["model", "version"],
            buckets=_COUNT_BUCKETS,
            registry=reg,
        )
        self.batch_rows = Histogram(
            "fedloop_serving_batch_rows",
            "Rows in one onnxruntime call.",
            ["model", "version"],
            buckets=_COUNT_BUCKETS,
            registry=reg,
        )
        self.errors = Counter(
            "fedloop_serving_errors",
            "Refused or failed requests, by model and error code.",
            ["model", "code"],
            registry=reg,
        )
        self.shadow = Counter(
            "fedloop_serving_shadow",
            "Mirrored requests to a shadow version, by outcome (ok, failed, skipped).",
            ["model", "version", "outcome"],
            registry=reg,
        )
        self.payload_records = Counter(
            "fedloop_serving_payload_log_records",
            "Payload-log records by outcome: queued, sent, dropped (queue full or monitor down).",
            ["outcome"],
            registry=reg,
        )
        self.payload_queue = Gauge(
            "fedloop_serving_payload_log_queue",
            "Payload-log records waiting to be sent.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.loaded = Gauge(
            "fedloop_serving_model_loaded",
            "1 for each model version serving traffic in a role (primary, canary, shadow).",
            ["model", "version", "role"],
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.swaps = Counter(
            "fedloop_serving_swaps",
            "Times a served alias moved and the new version took over.",
            ["model"],
            registry=reg,
        )
        self.traffic_changes = Counter(
            "fedloop_serving_traffic_changes",
            "Times a served model's desired split (canary, shadow) changed and took effect.",
            ["model"],
            registry=reg,
        )
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_request(
        self, model: str, version: str, endpoint: str, status: int, seconds: float
    ) -> None:
        """Count one answered request and its latency."""
        self._child(self.requests, model, version, endpoint, str(status)).inc()
        self._child(self.latency, model, version, endpoint).observe(seconds)

    def observe_error(self, model: str, code: str) -> None:
        """Count one refused or failed request."""
        self._child(self.errors, model, code).inc()

    def observe_batch(self, model: str, version: str, requests: int, rows: int) -> None:
        """Record one onnxruntime call."""
        self._child(self.batch_requests, model, version).observe(requests)
        self._child(self.batch_rows, model, version).observe(rows)

    def observe_shadow(self, model: str, version: str, outcome: str) -> None:
        """Count one mirrored request."""
        self._child(self.shadow, model, version, outcome).inc()

    def render(self) -> bytes:
        """Return the exposition text (all workers' values in multiprocess mode)."""
        if _multiprocess():
            reap_dead_workers(os.environ["PROMETHEUS_MULTIPROC_DIR"])
            merged = CollectorRegistry()
            MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
            return generate_latest(merged)
        return generate_latest(self.registry)
