"""`fedloop serve` and `fedloop monitor serve` as real processes: traffic flows, drift is found."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from fedloop.core import resolve
from fedloop.monitoring import attach_reference
from fedloop.registry import ModelRegistry
from fedloop.store import open_workspace

NUM_FEATURES = 30
FEDLOOP = Path(sys.executable).with_name("fedloop")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Return a project with fraud-fl v1 (champion) and its reference profile."""
    from fedloop.learn import TorchAdapter, mlp

    adapter = TorchAdapter(lambda: mlp(NUM_FEATURES, hidden=(8,)), num_features=NUM_FEATURES)
    config = resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as ws:
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        mv = registry.register(
            "fraud-fl",
            weights=adapter.get_parameters(),
            onnx_model=adapter.to_onnx(),
            signature=adapter.signature(),
        )
        registry.promote("fraud-fl", mv.version, alias="champion")
        rows = np.random.default_rng(0).normal(size=(20_000, NUM_FEATURES))
        attach_reference(registry, mv, rows)
    return tmp_path


@contextlib.contextmanager
def _process(
    project: Path, args: list[str], env_extra: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``fedloop ARGS``; yield the process and the first URL it prints on stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLOOP_")}
    env["FEDLOOP_PROJECT__DIR"] = str(project / ".fedloop")
    env.update(env_extra)
    proc = subprocess.Popen(
        [str(FEDLOOP), *args], cwd=project, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"http://[0-9.]+:[0-9]+", line)
        assert match, line
        yield proc, match.group(0)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise AssertionError(f"{url} never answered")


def test_served_traffic_is_monitored_and_ctrl_c_flushes_the_open_window(project: Path) -> None:
    """Real processes: predictions reach the monitor, a shifted feature drifts, SIGINT flushes."""
    # Arrange
    monitor_args = ["monitor", "serve", "--port", "0"]
    rng = np.random.default_rng(1)
    calm = rng.normal(size=(400, NUM_FEATURES)).astype(np.float32)
    shifted = rng.normal(size=(450, NUM_FEATURES)).astype(np.float32)
    shifted[:, 5] += 2.0

    with _process(project, monitor_args, {"FEDLOOP_MONITORING__WINDOW_ROWS": "400"}) as (
        monitor,
        monitor_url,
    ):
        _wait_ready(f"{monitor_url}/health/live")
        serve_args = [
            "serve",
            "--port",
            "0",
            "--no-access-log",
            "--model",
            "fraud-fl@champion",
            "--payload-log-url",
            f"{monitor_url}/v1/monitor/ingest",
        ]
        with _process(project, serve_args, {}) as (_, serve_url):
            _wait_ready(f"{serve_url}/v2/health/ready")

            # Act
            with httpx.Client(timeout=10) as http:
                for rows in (calm, shifted):
                    for i in range(0, len(rows), 10):
                        answer = http.post(
                            f"{serve_url}/v1/models/fraud-fl:predict",
                            json={"instances": rows[i : i + 10].tolist()},
                        )
                        assert answer.status_code == 200
                deadline = time.monotonic() + 30
                windows: list[dict[str, object]] = []
                while len(windows) < 2 and time.monotonic() < deadline:
                    time.sleep(0.1)
                    windows = http.get(f"{monitor_url}/v1/monitor/models/fraud-fl/windows").json()[
                        "windows"
                    ]
        monitor.send_signal(signal.SIGINT)
        code = monitor.wait(30)

    # Assert
    assert [(w["rows"], w["verdict"]) for w in windows] == [(400, "no_drift"), (400, "drift")]
    assert "features[5]" in windows[1]["summary"]["drifted_columns"]  # type: ignore[index]
    assert code == 130  # the shell convention for SIGINT, after a graceful shutdown
    config = resolve({"project": {"dir": str(project / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as ws:
        stored = ws.metadata.list_monitor_windows("fraud-fl", kind="drift")
        events = ws.metadata.list_events(kind="monitor.drift_detected")
    assert [w.rows for w in stored] == [400, 400, 50]  # Ctrl-C checked the open window
    assert len(events) == 2
