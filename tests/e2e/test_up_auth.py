"""`fedloop up` once API keys exist: callers need keys, its own inference server still logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import httpx
import numpy as np

from _graphs import NUM_FEATURES, make_graph
from _processes import stderr_line, url_in
from fedloop.core import resolve
from fedloop.registry import CHAMPION, ModelRegistry
from fedloop.store import open_workspace

FEDLOOP = Path(sys.executable).with_name("fedloop")

TOML = """
[project]
dir = ".fedloop"

[serving]
models = ["fraud@champion"]

[serving.payload_log]
flush_interval_s = 0.05

[monitoring]
window_rows = 50

[[automation.policies]]
name = "nightly"
model = "fraud"
[automation.policies.trigger]
manual_only = true
[automation.policies.action]
kind = "federated"
trainer = "json:dumps"
"""


def test_up_with_keys_guards_its_routes_and_still_monitors_its_server(tmp_path: Path) -> None:
    """With keys in the store, calls need a key of the right role; the payload log gets in."""
    # Arrange
    (tmp_path / "fedloop.toml").write_text(TOML)
    config = resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as ws:
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        w = OrderedDict([("w", np.zeros((NUM_FEATURES, 1), dtype=np.float32))])
        registry.register("fraud", weights=w, onnx_model=make_graph(1))
        registry.promote("fraud", 1, alias=CHAMPION)
        viewer = {"Authorization": f"Bearer {ws.metadata.create_credential('api', 'v')[1]}"}
        operator_key = ws.metadata.create_credential("api", "ops", role="operator")[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLOOP_")}
    proc = subprocess.Popen(
        [str(FEDLOOP), "up", "--port", "0", "--serve-port", "0"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        control = url_in(stderr_line(proc, "control plane at"))
        stderr_line(proc, "API keys required")
        serving = url_in(stderr_line(proc, "inference server at"))
        rows = np.random.default_rng(1).normal(size=(5, NUM_FEATURES)).tolist()

        # Act
        with httpx.Client(timeout=10) as http:
            deadline = time.monotonic() + 60
            windows: list[object] = []
            while not windows:
                assert time.monotonic() < deadline, "no window reached the monitor"
                try:
                    http.post(f"{serving}/v1/models/fraud:predict", json={"instances": rows})
                except httpx.HTTPError:
                    time.sleep(0.2)  # the server is still loading
                    continue
                answer = http.get(f"{control}/v1/monitor/models/fraud/windows", headers=viewer)
                windows = answer.json()["windows"]
            trigger = f"{control}/v1/loop/policies/nightly/trigger"
            anonymous = http.post(trigger, json={})
            as_viewer = http.post(trigger, json={}, headers=viewer)
            as_operator = http.post(
                trigger, json={}, headers={"Authorization": f"Bearer {operator_key}"}
            )
            ingest = http.post(f"{control}/v1/monitor/ingest", json={}, headers=viewer)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    # Assert
    assert (anonymous.status_code, as_viewer.status_code) == (401, 403)
    assert as_operator.status_code == 201, as_operator.text
    assert ingest.status_code == 403
    assert code == 130
    with open_workspace(config) as ws:
        (action,) = ws.metadata.list_loop_actions()
        triggered = ws.metadata.list_events(kind="automation.triggered")[-1]
    assert triggered.actor == "api:ops"
    assert action.policy == "nightly"
