"""The controller: trigger -> training -> gate -> canary steps -> promotion, from the store alone."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _graphs import NUM_FEATURES, make_graph
from _payloads import MODEL, ingest_rows
from fedloop.automation import Controller, TrainingRequest, TrainingResult
from fedloop.automation.traffic import ServingStats, VersionTraffic
from fedloop.core import AutomationConfig, MonitoringConfig, resolve
from fedloop.monitoring import Monitor, attach_reference
from fedloop.registry import CHAMPION, ModelRegistry, find_traffic
from fedloop.store import Workspace, open_workspace

TRAIN = np.random.default_rng(0).normal(size=(5_000, NUM_FEATURES))


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """Return a workspace with ``fraud`` v1 as champion and its reference profile."""
    config = resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as ws:
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        w = OrderedDict([("w", np.zeros((NUM_FEATURES, 1), dtype=np.float32))])
        mv = registry.register(MODEL, weights=w, onnx_model=make_graph(1), metrics={"auc": 0.9})
        registry.promote(MODEL, 1, alias=CHAMPION)
        attach_reference(registry, mv, TRAIN)
        yield ws


class RecordingTrainer:
    """Registers ``fraud`` v(n+1) from a fixed graph, as a real trainer would; counts calls."""

    def __init__(self, *, challenger: float = 0.95, champion: float = 0.9) -> None:
        self.calls: list[TrainingRequest] = []
        self.holdout = {"challenger": challenger, "champion": champion}

    def __call__(self, request: TrainingRequest) -> TrainingResult:
        self.calls.append(request)
        request.record_run("r" * 32)
        ws = request.ws
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        w = OrderedDict([("w", np.ones((NUM_FEATURES, 1), dtype=np.float32))])
        mv = registry.register(
            MODEL,
            weights=w,
            onnx_model=make_graph(2),
            parent_version=request.champion.version if request.champion else None,
            tags={"loop_action": request.action.id, "trigger": request.action.trigger_ref},
        )
        return TrainingResult(version=mv, holdout=self.holdout)


def _automation(**rollout: Any) -> AutomationConfig:
    policy = {
        "name": "retrain-on-drift",
        "model": MODEL,
        "trigger": {"on_drift": True, "min_windows": 1, "cooldown_s": 0},
        "action": {"kind": "federated", "trainer": "json:dumps", "rounds": 2},
        "gate": {"holdout": True, "metric": "auc", "min_improvement": 0.0},
        "rollout": {"steps": [0.25, 1.0], "step_min_requests": 0, "step_min_s": 0.0, **rollout},
    }
    return AutomationConfig.model_validate({"tick_s": 0.05, "policies": [policy]})


def _drift(ws: Workspace) -> None:
    """Send the champion one window of traffic with feature 0 shifted (a drift window)."""
    monitor = Monitor(ws, MonitoringConfig(window_rows=1_000))
    x = np.random.default_rng(5).normal(size=(1_000, NUM_FEATURES))
    x[:, 0] += 1.5
    ingest_rows(monitor, x, start_id=0)


def _run_until(controller: Controller, state: str, *, ticks: int = 200) -> list[str]:
    seen: list[str] = []
    for _ in range(ticks):
        seen += [d.state for d in controller.tick()]
        if seen and seen[-1] == state:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"never reached {state}; saw {seen}")


def test_drift_leads_to_a_promoted_challenger_with_lineage(workspace: Workspace) -> None:
    """Drift triggers training; the challenger passes the gate, goes 25% -> 100%, is promoted."""
    # Arrange
    trainer = RecordingTrainer()
    controller = Controller(workspace, _automation(), trainers={"retrain-on-drift": trainer})
    _drift(workspace)

    # Act
    states = _run_until(controller, "promoted")

    # Assert
    assert states == ["triggered", "training", "gating", "rolling_out", "rolling_out", "promoted"]
    champion = workspace.metadata.find_alias(MODEL, CHAMPION)
    assert champion is not None
    assert champion.version == 2
    window = workspace.metadata.list_monitor_windows(MODEL, kind="drift")[-1]
    assert champion.tags["trigger"] == f"window:{window.id}"
    assert workspace.metadata.get_model_version_by_id(champion.parent_version_id).version == 1  # type: ignore[arg-type]
    spec = find_traffic(workspace.metadata, MODEL)
    assert spec is not None
    assert spec.cleared
    kinds = [e.kind for e in workspace.metadata.list_events(limit=1000)]
    for kind in ("automation.triggered", "automation.training", "automation.gating",
                 "automation.rolling_out", "automation.promoted", "model.alias_moved"):  # fmt: skip
        assert kind in kinds
    assert len(trainer.calls) == 1


def test_one_trigger_never_trains_twice(workspace: Workspace) -> None:
    """After a rejection, the same drift window does not start another training."""
    # Arrange
    trainer = RecordingTrainer(challenger=0.80)  # worse than the champion: rejected
    controller = Controller(workspace, _automation(), trainers={"retrain-on-drift": trainer})
    _drift(workspace)

    # Act
    states = _run_until(controller, "rejected")
    for _ in range(5):
        controller.tick()

    # Assert
    assert states[-1] == "rejected"
    assert len(trainer.calls) == 1
    assert len(workspace.metadata.list_loop_actions()) == 1
    reason = workspace.metadata.list_events(kind="automation.rejected")[-1].payload["reason"]
    assert "challenger 0.8000 vs champion 0.9000" in reason


def test_a_restarted_controller_continues_mid_rollout(workspace: Workspace) -> None:
    """Killed at the 25% step, a new controller keeps the canary and promotes without retraining."""
    # Arrange
    trainer = RecordingTrainer()
    first = Controller(
        workspace, _automation(step_min_s=3600.0), trainers={"retrain-on-drift": trainer}
    )
    _drift(workspace)
    _run_until(first, "rolling_out")
    spec = find_traffic(workspace.metadata, MODEL)
    assert spec is not None
    assert spec.canary is not None
    assert (spec.canary.ref, spec.canary.fraction) == (f"{MODEL}:2", 0.25)

    # Act: "restart" with a config whose steps may now advance
    second = Controller(workspace, _automation(), trainers={"retrain-on-drift": trainer})
    states = _run_until(second, "promoted")

    # Assert
    assert states == ["rolling_out", "promoted"]
    assert len(trainer.calls) == 1


def test_killed_mid_training_adopts_the_registered_version(workspace: Workspace) -> None:
    """A version registered for the action before a crash is adopted, not trained again."""
    # Arrange: the first controller trains, then "dies" before noticing the result
    trainer = RecordingTrainer()
    first = Controller(workspace, _automation(), trainers={"retrain-on-drift": trainer})
    _drift(workspace)
    _run_until(first, "training")
    deadline = time.monotonic() + 10
    while not trainer.calls and time.monotonic() < deadline:
        time.sleep(0.02)
    first.close()
    time.sleep(0.2)

    # Act
    second = Controller(workspace, _automation(), trainers={"retrain-on-drift": trainer})
    states = _run_until(second, "promoted")

    # Assert
    assert states[0] == "gating"
    assert len(trainer.calls) == 1
    assert (
        "adopted v2"
        in workspace.metadata.list_events(kind="automation.gating")[-1].payload["reason"]
    )


def test_a_failing_canary_is_rolled_back(workspace: Workspace) -> None:
    """A canary with 10% server errors is rolled back and its traffic cleared."""
    # Arrange
    trainer = RecordingTrainer()
    counter = {"n": 0.0}

    def stats(url: str) -> ServingStats:
        counter["n"] += 100.0
        failing = VersionTraffic(requests=counter["n"], errors=counter["n"] * 0.1)
        return ServingStats({(MODEL, "2"): failing, (MODEL, "1"): VersionTraffic(counter["n"])})

    controller = Controller(
        workspace,
        _automation(max_error_rate=0.02),
        serving_url="http://127.0.0.1:9",
        stats_reader=stats,
        trainers={"retrain-on-drift": trainer},
    )
    _drift(workspace)

    # Act
    _run_until(controller, "rolled_back")

    # Assert
    champion = workspace.metadata.find_alias(MODEL, CHAMPION)
    assert champion is not None
    assert champion.version == 1
    spec = find_traffic(workspace.metadata, MODEL)
    assert spec is not None
    assert spec.cleared
    reason = workspace.metadata.list_events(kind="automation.rolled_back")[-1].payload["reason"]
    assert "error rate 10.00% > 2.00%" in reason


def test_manual_trigger_starts_an_action_once(workspace: Workspace) -> None:
    """A manual trigger creates an action; a second one while it runs is a Conflict."""
    # Arrange
    from fedloop.core import Conflict, NotFound

    controller = Controller(
        workspace, _automation(), trainers={"retrain-on-drift": RecordingTrainer()}
    )

    # Act
    action = controller.trigger_manually("retrain-on-drift", reason="new data", actor="test")

    # Assert
    assert (action.trigger_kind, action.state, action.champion_version) == (
        "manual",
        "triggered",
        1,
    )
    with pytest.raises(Conflict):
        controller.trigger_manually("retrain-on-drift", reason="again", actor="test")
    with pytest.raises(NotFound):
        controller.trigger_manually("nope", reason="", actor="test")


def test_a_slow_canary_is_rolled_back(workspace: Workspace) -> None:
    """A canary whose p99 exceeds max_p99_ms is rolled back, naming the latency."""
    # Arrange
    counter = {"n": 0.0}

    def stats(url: str) -> ServingStats:
        counter["n"] += 100.0
        n = counter["n"]
        slow = VersionTraffic(requests=n, buckets=((0.1, 0.0), (2.0, n), (float("inf"), n)))
        return ServingStats({(MODEL, "2"): slow})

    controller = Controller(
        workspace,
        _automation(max_p99_ms=500.0, step_min_requests=50),
        serving_url="http://127.0.0.1:9",
        stats_reader=stats,
        trainers={"retrain-on-drift": RecordingTrainer()},
    )
    _drift(workspace)

    # Act
    _run_until(controller, "rolled_back")

    # Assert
    reason = workspace.metadata.list_events(kind="automation.rolled_back")[-1].payload["reason"]
    assert "p99" in reason
    assert "> 500 ms" in reason


def test_the_shadow_gate_compares_both_versions_on_labelled_traffic(workspace: Workspace) -> None:
    """With shadow_labels, traffic is mirrored to the challenger; better live AUC passes the gate."""
    # Arrange
    from _payloads import body

    policy = _automation().policies[0]
    gate = policy.gate.model_copy(update={"holdout": False, "shadow_labels": 200})
    automation = AutomationConfig(tick_s=0.05, policies=(policy.model_copy(update={"gate": gate}),))
    controller = Controller(
        workspace, automation, trainers={"retrain-on-drift": RecordingTrainer()}
    )
    _drift(workspace)
    _run_until(controller, "gating")
    controller.tick()  # starts mirroring
    spec = find_traffic(workspace.metadata, MODEL)
    assert spec is not None
    assert spec.shadow == f"{MODEL}:2"
    monitor = Monitor(
        workspace, MonitoringConfig(window_rows=100_000, performance_window_labels=200)
    )
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=200)
    x = rng.normal(size=(200, NUM_FEATURES))
    good = np.clip(y * 0.7 + rng.uniform(0, 0.3, 200), 0, 1)  # the challenger ranks well
    poor = rng.uniform(size=200)  # the champion at random

    # Act
    now = time.time()
    monitor.ingest(body(x, poor, version=1, start_id=10_000, time_s=now))
    monitor.ingest(body(x, good, version=2, role="shadow", start_id=10_000, time_s=now))
    monitor.ingest(
        body(
            np.empty((0, NUM_FEATURES)),
            np.empty(0),
            time_s=now,
            labels=[(f"r{10_000 + i}", int(v)) for i, v in enumerate(y)],
        )
    )
    states = _run_until(controller, "rolling_out")

    # Assert
    assert states[-1] == "rolling_out"
    reason = workspace.metadata.list_events(kind="automation.rolling_out")[-1].payload["reason"]
    assert "shadow auc on 200 labelled requests" in reason


def test_a_canary_with_a_worse_live_metric_is_rolled_back(workspace: Workspace) -> None:
    """Labelled canary traffic scoring well below the champion rolls the canary back."""
    # Arrange
    from _payloads import body

    controller = Controller(
        workspace,
        _automation(step_min_s=3600.0, max_metric_drop=0.05),
        trainers={"retrain-on-drift": RecordingTrainer()},
    )
    _drift(workspace)
    _run_until(controller, "rolling_out")
    monitor = Monitor(
        workspace, MonitoringConfig(window_rows=100_000, performance_window_labels=200)
    )
    rng = np.random.default_rng(4)
    now = time.time()
    for version, role, start in ((1, "primary", 20_000), (2, "canary", 30_000)):
        y = rng.integers(0, 2, size=200)
        x = rng.normal(size=(200, NUM_FEATURES))
        scores = (
            np.clip(y * 0.7 + rng.uniform(0, 0.3, 200), 0, 1)
            if version == 1
            else rng.uniform(size=200)
        )
        labels = [(f"r{start + i}", int(v)) for i, v in enumerate(y)]
        monitor.ingest(body(x, scores, version=version, role=role, start_id=start, time_s=now))
        monitor.ingest(body(np.empty((0, NUM_FEATURES)), np.empty(0), time_s=now, labels=labels))

    # Act
    _run_until(controller, "rolled_back")

    # Assert
    reason = workspace.metadata.list_events(kind="automation.rolled_back")[-1].payload["reason"]
    assert "live auc" in reason
    champion = workspace.metadata.find_alias(MODEL, CHAMPION)
    assert champion is not None
    assert champion.version == 1
