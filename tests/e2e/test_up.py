"""`fedloop up` as a real process: control plane + inference server, a manual loop, Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path

import httpx
import numpy as np

from _graphs import NUM_FEATURES, make_graph
from fedloop.core import resolve
from fedloop.registry import CHAMPION, ModelRegistry
from fedloop.store import open_workspace

FEDLOOP = Path(sys.executable).with_name("fedloop")

TRAINER = """
from collections import OrderedDict

import numpy as np

from fedloop.automation import TrainingResult
from fedloop.registry import ModelRegistry


def retrain(request):
    ws = request.ws
    registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
    champion = request.champion
    weights = registry.load_weights(champion)
    mv = registry.register(
        champion.model_name,
        weights=OrderedDict((k, v + 1) for k, v in weights.items()),
        onnx_model=registry.load_onnx(champion),
        parent_version=champion.version,
        tags={"loop_action": request.action.id, "trigger": request.action.trigger_ref},
    )
    return TrainingResult(version=mv, holdout={"champion": 0.9, "challenger": 0.91})
"""

TOML = """
[project]
dir = ".fedloop"

[serving]
models = ["fraud@champion"]
alias_poll_s = 0.2

[serving.payload_log]
flush_interval_s = 0.05

[monitoring]
window_rows = 50

[automation]
tick_s = 0.2

[[automation.policies]]
name = "nightly"
model = "fraud"
[automation.policies.trigger]
manual_only = true
[automation.policies.action]
kind = "federated"
trainer = "loop_trainer:retrain"
[automation.policies.rollout]
steps = [0.5, 1.0]
step_min_requests = 5
step_min_s = 0.5
"""


def _line(proc: subprocess.Popen[str], pattern: str, timeout_s: float = 60) -> str:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if re.search(pattern, line):
            return line
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"no line matching {pattern!r}")


def test_up_serves_monitors_and_closes_the_loop(tmp_path: Path) -> None:
    """Control plane + server start; traffic is monitored; a manual trigger ends promoted; SIGINT stops all."""
    # Arrange
    (tmp_path / "fedloop.toml").write_text(TOML)
    (tmp_path / "loop_trainer.py").write_text(TRAINER)
    config = resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as ws:
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        w = OrderedDict([("w", np.zeros((NUM_FEATURES, 1), dtype=np.float32))])
        registry.register("fraud", weights=w, onnx_model=make_graph(1))
        registry.promote("fraud", 1, alias=CHAMPION)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLOOP_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [str(FEDLOOP), "up", "--port", "0", "--serve-port", "0"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        control = re.search(r"http://[0-9.]+:[0-9]+", _line(proc, "control plane at")).group(0)  # type: ignore[union-attr]
        serving = re.search(r"http://[0-9.]+:[0-9]+", _line(proc, "inference server at")).group(0)  # type: ignore[union-attr]

        # Act
        with httpx.Client(timeout=10) as http:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if http.get(f"{serving}/v2/health/ready").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            answer = http.post(
                f"{control}/v1/loop/policies/nightly/trigger", json={"reason": "test"}
            )
            assert answer.status_code == 201, answer.text
            state = ""
            while state not in ("promoted", "rolled_back", "failed", "rejected"):
                assert time.monotonic() < deadline, state
                http.post(
                    f"{serving}/v1/models/fraud:predict",
                    json={
                        "instances": np.random.default_rng(1)
                        .normal(size=(5, NUM_FEATURES))
                        .tolist()
                    },
                )
                state = http.get(f"{control}/v1/loop/actions").json()["actions"][-1]["state"]
            windows = http.get(f"{control}/v1/monitor/models/fraud/windows").json()["windows"]
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    # Assert
    assert state == "promoted"
    assert windows  # the server's payload log reached the control plane's monitor
    assert code == 130
    with open_workspace(config) as ws:
        champion = ws.metadata.find_alias("fraud", CHAMPION)
        assert champion is not None
        assert champion.version == 2
        reasons = [
            e.payload.get("reason", "")
            for e in ws.metadata.list_events(kind="automation.rolling_out")
        ]
    assert any("50% of traffic" in r for r in reasons)
