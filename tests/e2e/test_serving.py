"""``fedloop serve`` as a real process: a torch-exported model, two workers, ready fast, answering."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
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


@contextlib.contextmanager
def _serve(project: Path, *args: str) -> Iterator[tuple[str, float]]:
    """Run ``fedloop serve --workers 2 --port 0 ARGS``; yield its URL and seconds to ready."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLOOP_")}
    env["FEDLOOP_PROJECT__DIR"] = str(project / ".fedloop")
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(FEDLOOP), "serve", "--port", "0", "--workers", "2", "--no-access-log", *args],
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


@pytest.fixture
def server(project: Path) -> Iterator[tuple[str, float]]:
    """Start ``fedloop serve --workers 2 --port 0``; yield its URL and seconds to ready."""
    with _serve(project, "--model", "fraud-fl@champion") as live:
        yield live


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


def test_alias_swap_across_two_workers_fails_no_request(project: Path) -> None:
    """Promoting v2 while 4 threads hammer 2 workers: every request succeeds, v2 takes over."""
    # Arrange: its own model, so the module's fraud-fl stays at v1
    from fedloop.learn import TorchAdapter, mlp

    config = resolve({"project": {"dir": str(project / ".fedloop")}}, {}, {}).config
    adapters = [
        TorchAdapter(lambda: mlp(NUM_FEATURES, hidden=(8,)), num_features=NUM_FEATURES, seed=s)
        for s in (1, 2)
    ]
    with open_workspace(config) as ws:
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        first = registry.register(
            "swap-fl",
            weights=adapters[0].get_parameters(),
            onnx_model=adapters[0].to_onnx(),
            signature=adapters[0].signature(),
        )
        registry.promote("swap-fl", first.version, alias="champion")
    rows = np.random.default_rng(1).normal(size=(2, NUM_FEATURES)).astype(np.float32)
    body = {
        "inputs": [
            {
                "name": "features",
                "shape": [2, 30],
                "datatype": "FP32",
                "data": rows.ravel().tolist(),
            }
        ]
    }
    results: list[list[tuple[int, str]]] = [[] for _ in range(4)]
    stop = threading.Event()

    with _serve(project, "--model", "swap-fl@champion", "--alias-poll", "0.1") as (url, _):

        def hammer(out: list[tuple[int, str]]) -> None:
            while not stop.is_set():  # a new connection each time: requests reach both workers
                try:
                    answer = httpx.post(f"{url}/v2/models/swap-fl/infer", json=body, timeout=30)
                    out.append((answer.status_code, str(answer.json().get("model_version"))))
                except httpx.HTTPError:
                    out.append((0, ""))

        threads = [threading.Thread(target=hammer, args=(r,)) for r in results]
        for t in threads:
            t.start()
        time.sleep(0.5)

        # Act
        with open_workspace(config) as ws:
            registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
            second = registry.register(
                "swap-fl",
                weights=adapters[1].get_parameters(),
                onnx_model=adapters[1].to_onnx(),
                signature=adapters[1].signature(),
            )
            registry.promote("swap-fl", second.version, alias="champion")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(
            r and all(v == "2" for _, v in r[-8:]) for r in results
        ):
            time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join()

    # Assert
    flat = [x for r in results for x in r]
    assert {status for status, _ in flat} == {200}
    assert {version for _, version in flat} == {"1", "2"}
    assert all(all(v == "2" for _, v in r[-8:]) for r in results)
