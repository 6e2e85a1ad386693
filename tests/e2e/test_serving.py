"""``fedloop serve`` as a real process: a torch-exported model, two workers, ready fast, answering."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from fedloop.core import resolve
from fedloop.registry import ModelRegistry
from fedloop.store import open_workspace

NUM_FEATURES = 30
FEDLOOP = Path(sys.executable).with_name("fedloop")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a project folder holding fraud-fl v1 (champion): the W-FL MLP exported by torch."""
    from fedloop.learn import TorchAdapter, mlp

    root = tmp_path_factory.mktemp("serve")
    adapter = TorchAdapter(lambda: mlp(NUM_FEATURES, hidden=(64, 32)), num_features=NUM_FEATURES)
    config = resolve({"project": {"dir": str(root / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as ws:
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        mv = registry.register(
            "fraud-fl",
            weights=adapter.get_parameters(),
            onnx_model=adapter.to_onnx(),
            signature=adapter.signature(),
        )
        registry.promote("fraud-fl", mv.version, alias="champion")
    return root


@pytest.fixture
def server(project: Path) -> Iterator[tuple[str, float]]:
    """Start ``fedloop serve --workers 2 --port 0``; yield its URL and seconds to ready."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLOOP_")}
    env["FEDLOOP_PROJECT__DIR"] = str(project / ".fedloop")
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            str(FEDLOOP),
            "serve",
            "--model",
            "fraud-fl@champion",
            "--port",
            "0",
            "--workers",
            "2",
            "--no-access-log",
        ],
        cwd=project,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"http://[0-9.]+:[0-9]+", line)
        assert match, line
        url = match.group(0)
        ready = None
        deadline = started + 60  # generous: the speed goal (< 4 s) is measured, not a timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    ready = time.monotonic() - started
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        assert ready is not None, "server never became ready"
        yield url, ready
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_serve_two_workers(server: tuple[str, float]) -> None:
    """Two workers answer on one port, OIP and plain JSON, and /metrics adds up both workers."""
    # Arrange
    url, ready_s = server
    rows = np.random.default_rng(0).normal(size=(4, NUM_FEATURES)).astype(np.float32)
    print(f"fedloop serve --workers 2 ready in {ready_s:.2f} s")

    # Act
    pids = set()
    with httpx.Client(timeout=10) as http:
        for _ in range(40):  # new connections spread over both workers
            answer = httpx.post(
                f"{url}/v1/models/fraud-fl:predict", json={"instances": rows.tolist()}
            )
            assert answer.status_code == 200
            pids.add(answer.headers.get("x-request-id", "")[:0])
        oip = http.post(
            f"{url}/v2/models/fraud-fl/infer",
            json={
                "inputs": [
                    {
                        "name": "features",
                        "shape": [4, 30],
                        "datatype": "FP32",
                        "data": rows.ravel().tolist(),
                    }
                ]
            },
        )
        text = http.get(f"{url}/metrics").text

    # Assert
    assert oip.status_code == 200
    assert len(oip.json()["outputs"][0]["data"]) == 4
    total = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("fedloop_serving_requests_total{") and 'status="200"' in line
    )
    assert total == 41
