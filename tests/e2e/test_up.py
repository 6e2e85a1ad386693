"""`fedloop up` as a real process: control plane + inference server, a manual loop, Ctrl-C."""

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
        control = url_in(stderr_line(proc, "control plane at"))
        dashboard_line = stderr_line(proc, "dashboard at")
        serving = url_in(stderr_line(proc, "inference server at"))

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
            # The first window of traffic is the reference; a promotion can finish before a
            # version's second window is checked, so keep the traffic going until one is.
            windows: list[object] = []
            until = time.monotonic() + 30
            while not windows and time.monotonic() < until:
                http.post(
                    f"{serving}/v1/models/fraud:predict",
                    json={
                        "instances": np.random.default_rng(2)
                        .normal(size=(5, NUM_FEATURES))
                        .tolist()
                    },
                )
                windows = http.get(f"{control}/v1/monitor/models/fraud/windows").json()["windows"]
            # The dashboard is served by the control plane and reads the inference server.
            deployments = http.get(f"{control}/ui/deployments")
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
    assert f"{control}/ui/" in dashboard_line
    assert deployments.status_code == 200
    assert 'id="serving-table"' in deployments.text  # latency and errors per served version
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


def _ready(http: httpx.Client, url: str) -> bool:
    try:
        return http.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def _start(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str, str]:
    proc = subprocess.Popen(
        [str(FEDLOOP), "up", "--port", "0", "--serve-port", "0"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    control = url_in(stderr_line(proc, "control plane at"))
    serving = url_in(stderr_line(proc, "inference server at"))
    return proc, control, serving


def test_up_killed_mid_rollout_continues_after_a_restart(tmp_path: Path) -> None:
    """SIGKILL during the 50% step: the server dies with it; a new `fedloop up` promotes, no retraining."""
    # Arrange
    (tmp_path / "fedloop.toml").write_text(TOML.replace("step_min_s = 0.5", "step_min_s = 4.0"))
    (tmp_path / "loop_trainer.py").write_text(TRAINER)
    config = resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as ws:
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        w = OrderedDict([("w", np.zeros((NUM_FEATURES, 1), dtype=np.float32))])
        registry.register("fraud", weights=w, onnx_model=make_graph(1))
        registry.promote("fraud", 1, alias=CHAMPION)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLOOP_")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    rows = np.random.default_rng(1).normal(size=(5, NUM_FEATURES)).tolist()
    procs: list[subprocess.Popen[str]] = []
    try:
        first, control, serving = _start(tmp_path, env)
        procs.append(first)
        with httpx.Client(timeout=10) as http:
            deadline = time.monotonic() + 60
            while not _ready(http, f"{serving}/v2/health/ready"):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            http.post(f"{control}/v1/loop/policies/nightly/trigger")
            state = ""
            while state != "rolling_out":
                assert time.monotonic() < deadline, state
                http.post(f"{serving}/v1/models/fraud:predict", json={"instances": rows})
                state = http.get(f"{control}/v1/loop/actions").json()["actions"][-1]["state"]

        # Act: kill the whole control plane outright, then start it again
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        gone = False
        for _ in range(100):
            try:
                httpx.get(f"{serving}/v2/health/live", timeout=0.5)
            except httpx.HTTPError:
                gone = True
                break
            time.sleep(0.1)
        second, control, serving = _start(tmp_path, env)
        procs.append(second)
        with httpx.Client(timeout=10) as http:
            deadline = time.monotonic() + 60
            while state not in ("promoted", "rolled_back", "failed", "rejected"):
                assert time.monotonic() < deadline, state
                try:
                    http.post(f"{serving}/v1/models/fraud:predict", json={"instances": rows})
                    state = http.get(f"{control}/v1/loop/actions").json()["actions"][-1]["state"]
                except httpx.HTTPError:  # both are still starting
                    time.sleep(0.1)
        second.send_signal(signal.SIGINT)
        second.wait(30)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stderr is not None:
                proc.stderr.close()

    # Assert
    assert gone  # the inference server did not outlive its killed parent
    assert state == "promoted"
    with open_workspace(config) as ws:
        assert [mv.version for mv in ws.metadata.list_model_versions("fraud")] == [2, 1]
        (action,) = ws.metadata.list_loop_actions()
        assert action.challenger_version == 2
