"""The monitor's HTTP surface, and the inference server's payload log flowing into it for real."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from _graphs import NUM_FEATURES, make_graph
from _loopback import metric, running
from fedloop.api.auth import Access
from fedloop.api.monitor import create_monitor_app
from fedloop.core import ApiConfig, MonitoringConfig, ServingConfig, resolve
from fedloop.monitoring import Monitor, attach_reference
from fedloop.registry import ModelRegistry
from fedloop.serving import create_app
from fedloop.store import StoreAuthenticator, Workspace, open_workspace

MODEL = "fraud"


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """Return a workspace with ``fraud`` v1 as champion and a reference profile."""
    config = resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as ws:
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        w = OrderedDict([("w", np.zeros((NUM_FEATURES, 1), dtype=np.float32))])
        mv = registry.register(MODEL, weights=w, onnx_model=make_graph(1))
        registry.promote(MODEL, 1, alias="champion")
        attach_reference(registry, mv, np.random.default_rng(0).normal(size=(5_000, NUM_FEATURES)))
        yield ws


@pytest.fixture
def monitor_url(workspace: Workspace) -> Iterator[str]:
    """Run the monitor app (windows of 200 rows) on loopback; yield its base URL."""
    monitor = Monitor(workspace, MonitoringConfig(window_rows=200))
    with running(create_monitor_app(monitor, max_body_bytes=64_000)) as url:
        yield url


def test_served_traffic_reaches_the_monitor_and_is_checked(
    workspace: Workspace, monitor_url: str
) -> None:
    """Fedloop serve's payload log POSTs to the ingest; the monitor closes and checks windows."""
    # Arrange
    registry = ModelRegistry(workspace.metadata, workspace.artifacts, workspace.project)
    serving = ServingConfig(
        models=(f"{MODEL}@champion",),
        access_log=False,
        payload_log={"url": f"{monitor_url}/v1/monitor/ingest", "flush_interval_s": 0.05},
    )
    rows = np.random.default_rng(1).normal(size=(400, NUM_FEATURES)).astype(np.float32)

    # Act
    with running(create_app(serving, registry)) as server, httpx.Client(timeout=10) as http:
        for i in range(0, 400, 4):
            answer = http.post(
                f"{server}/v1/models/{MODEL}:predict", json={"instances": rows[i : i + 4].tolist()}
            )
            assert answer.status_code == 200
    with httpx.Client(timeout=10) as http:
        for _ in range(100):
            windows = http.get(f"{monitor_url}/v1/monitor/models/{MODEL}/windows").json()["windows"]
            if len(windows) >= 2:
                break
            time.sleep(0.05)
        text = http.get(f"{monitor_url}/metrics").text

    # Assert
    assert [(w["kind"], w["rows"], w["verdict"]) for w in windows] == [
        ("drift", 200, "no_drift"),
        ("drift", 200, "no_drift"),
    ]
    assert metric(text, "fedloop_monitor_rows_total", model=MODEL, role="primary") == 400


def test_bad_ingest_bodies_get_typed_errors(monitor_url: str) -> None:
    """Malformed JSON is a 400 naming the field; an oversized body a 413; a bad query a 422."""
    # Act
    with httpx.Client(timeout=10) as http:
        bad = http.post(f"{monitor_url}/v1/monitor/ingest", content=b"{nope")
        big = http.post(f"{monitor_url}/v1/monitor/ingest", content=b"x" * 70_000)
        query = http.get(f"{monitor_url}/v1/monitor/models/{MODEL}/windows?kind=vibes")
        live = http.get(f"{monitor_url}/health/live")

    # Assert
    assert (bad.status_code, bad.json()["error"]["field"]) == (400, "body")
    assert (big.status_code, big.json()["error"]["code"]) == (413, "body_too_large")
    assert (query.status_code, query.json()["error"]["field"]) == (422, "kind")
    assert live.json() == {"live": True}


def test_the_payload_log_sends_its_api_key_when_the_monitor_requires_one(
    workspace: Workspace,
) -> None:
    """serving.payload_log.api_key (role client) gets the payload log into a keyed monitor."""
    # Arrange
    registry = ModelRegistry(workspace.metadata, workspace.artifacts, workspace.project)
    _, client_key = workspace.metadata.create_credential("api", "serving", role="client")
    _, viewer_key = workspace.metadata.create_credential("api", "grafana", role="viewer")
    access = Access(
        StoreAuthenticator(workspace.metadata, "api"), ApiConfig(auth="required"), host="::1"
    )
    monitor = Monitor(workspace, MonitoringConfig(window_rows=200))
    rows = np.random.default_rng(2).normal(size=(200, NUM_FEATURES)).astype(np.float32)

    # Act
    with running(create_monitor_app(monitor, access=access)) as monitor_url:
        serving = ServingConfig(
            models=(f"{MODEL}@champion",),
            access_log=False,
            payload_log={
                "url": f"{monitor_url}/v1/monitor/ingest",
                "flush_interval_s": 0.05,
                "api_key": client_key,
            },
        )
        with running(create_app(serving, registry)) as server, httpx.Client(timeout=10) as http:
            for i in range(0, 200, 4):
                http.post(
                    f"{server}/v1/models/{MODEL}:predict",
                    json={"instances": rows[i : i + 4].tolist()},
                )
        with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {viewer_key}"}) as http:
            for _ in range(100):
                answer = http.get(f"{monitor_url}/v1/monitor/models/{MODEL}/windows")
                if answer.json()["windows"]:
                    break
                time.sleep(0.05)

    # Assert
    assert [w["rows"] for w in answer.json()["windows"]] == [200]
