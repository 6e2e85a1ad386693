"""What the inference server says about each version: requests, errors and latency, from /metrics."""

from __future__ import annotations

import math
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from fedloop.core import StoreUnavailable

__all__ = ["ServingStats", "VersionTraffic", "parse_serving_stats", "read_serving_stats"]

_REQUESTS = "fedloop_serving_requests"
_LATENCY = "fedloop_serving_request_duration_seconds"


@dataclass(frozen=True)
class VersionTraffic:
    """Cumulative counts of one model version since its server started.

    Attributes
    ----------
    requests : float
        Requests answered.
    errors : float
        Of which failed on the server's side (HTTP 5xx).
    buckets : tuple of (float, float)
        The latency histogram: (upper bound in seconds, cumulative count), ``inf`` last.
    """

    requests: float = 0.0
    errors: float = 0.0
    buckets: tuple[tuple[float, float], ...] = ()

    def since(self, earlier: VersionTraffic | None) -> VersionTraffic:
        """Return the traffic between ``earlier`` and this snapshot (counters subtract)."""
        if earlier is None:
            return self
        before = dict(earlier.buckets)
        return VersionTraffic(
            requests=max(self.requests - earlier.requests, 0.0),
            errors=max(self.errors - earlier.errors, 0.0),
            buckets=tuple((le, max(c - before.get(le, 0.0), 0.0)) for le, c in self.buckets),
        )

    @property
    def error_rate(self) -> float:
        """Errors per request (0 without requests)."""
        return self.errors / self.requests if self.requests else 0.0

    def quantile_ms(self, q: float) -> float | None:
        """Estimate a latency quantile in ms from the histogram (linear within a bucket).

        Returns None without observations; the largest finite bound when the quantile lies in
        the ``+Inf`` bucket.
        """
        if not self.buckets or self.buckets[-1][1] <= 0:
            return None
        total = self.buckets[-1][1]
        rank = q * total
        lower_bound, lower_count = 0.0, 0.0
        for le, count in self.buckets:
            if count >= rank:
                if math.isinf(le):
                    return lower_bound * 1000.0
                width = count - lower_count
                share = (rank - lower_count) / width if width else 1.0
                return (lower_bound + share * (le - lower_bound)) * 1000.0
            lower_bound, lower_count = le, count
        return lower_bound * 1000.0


@dataclass(frozen=True)
class ServingStats:
    """Per (model, version) traffic read from one scrape of a server's ``/metrics``."""

    versions: dict[tuple[str, str], VersionTraffic] = field(default_factory=dict)

    def find(self, model: str, version: int) -> VersionTraffic | None:
        """Return one version's traffic, or None when it served nothing yet."""
        return self.versions.get((model, str(version)))


def parse_serving_stats(text: str) -> ServingStats:
    """Turn the Prometheus exposition text of ``fedloop serve`` into per-version traffic."""
    requests: dict[tuple[str, str], float] = defaultdict(float)
    errors: dict[tuple[str, str], float] = defaultdict(float)
    buckets: dict[tuple[str, str], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(text):
        if family.name == _REQUESTS:
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                key = (sample.labels.get("model", ""), sample.labels.get("version", ""))
                requests[key] += sample.value
                if sample.labels.get("status", "").startswith("5"):
                    errors[key] += sample.value
        elif family.name == _LATENCY:
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    key = (sample.labels.get("model", ""), sample.labels.get("version", ""))
                    buckets[key][float(sample.labels["le"])] += sample.value
    out: dict[tuple[str, str], VersionTraffic] = {}
    for key in set(requests) | set(buckets):
        if not key[1]:
            continue  # refused before a version was chosen
        out[key] = VersionTraffic(
            requests=requests.get(key, 0.0),
            errors=errors.get(key, 0.0),
            buckets=tuple(sorted(buckets.get(key, {}).items())),
        )
    return ServingStats(out)


def read_serving_stats(url: str, *, timeout_s: float = 5.0) -> ServingStats:
    """Scrape ``{url}/metrics`` of an inference server.

    Raises
    ------
    StoreUnavailable
        When the server cannot be reached (retryable: the controller waits).
    """
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/metrics", timeout=timeout_s) as answer:
            text = answer.read().decode()
    except OSError as err:
        raise StoreUnavailable(
            f"cannot read the inference server's metrics at {url}: {err}.",
            field="serving_url",
            value=url,
            hint="Start fedloop serve, or point the controller at the right URL.",
        ) from err
    return parse_serving_stats(text)
