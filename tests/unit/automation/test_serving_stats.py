"""Reading a real inference server's /metrics into per-version traffic for the controller."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from _graphs import NUM_FEATURES, make_graph
from _loopback import running
from fedloop.automation.traffic import VersionTraffic, read_serving_stats
from fedloop.core import ServingConfig, StoreUnavailable, resolve
from fedloop.registry import ModelRegistry
from fedloop.serving import create_app
from fedloop.store import open_workspace


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """Serve ``fraud`` v1 (champion); yield the base URL."""
    config = resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as ws:
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        w = OrderedDict([("w", np.zeros((NUM_FEATURES, 1), dtype=np.float32))])
        registry.register("fraud", weights=w, onnx_model=make_graph(1))
        registry.promote("fraud", 1, alias="champion")
        app = create_app(ServingConfig(models=("fraud@champion",), access_log=False), registry)
        with running(app) as url:
            yield url


def test_requests_and_latency_per_version_come_from_metrics(server: str) -> None:
    """Answered requests are counted under their version, with a latency histogram."""
    # Arrange
    before = read_serving_stats(server).find("fraud", 1)
    with httpx.Client(timeout=10) as http:
        for _ in range(12):
            answer = http.post(
                f"{server}/v1/models/fraud:predict", json={"instances": [[0.1] * NUM_FEATURES]}
            )
            assert answer.status_code == 200

    # Act
    after = read_serving_stats(server).find("fraud", 1)

    # Assert
    assert after is not None
    window = after.since(before)
    assert (window.requests, window.errors, window.error_rate) == (12.0, 0.0, 0.0)
    p99 = window.quantile_ms(0.99)
    assert p99 is not None
    assert 0 < p99 < 1_000


def test_quantiles_interpolate_within_a_bucket() -> None:
    """Half of 10 observations under 1 ms and half under 2 ms: the median is 1 ms."""
    # Arrange
    traffic = VersionTraffic(
        requests=10, buckets=((0.001, 5.0), (0.002, 10.0), (float("inf"), 10.0))
    )

    # Act / Assert
    assert traffic.quantile_ms(0.5) == pytest.approx(1.0)
    assert traffic.quantile_ms(0.75) == pytest.approx(1.5)
    assert VersionTraffic().quantile_ms(0.99) is None


def test_an_unreachable_server_is_a_retryable_error() -> None:
    """A server that is down raises StoreUnavailable naming the URL."""
    # Arrange
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    # Act / Assert
    with pytest.raises(StoreUnavailable) as info:
        read_serving_stats(f"http://127.0.0.1:{port}", timeout_s=1)
    assert info.value.field == "serving_url"
