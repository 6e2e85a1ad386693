"""The fraud scenario trained data-parallel: `fedloop train`'s flow and the loop's retrain action."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _ddp import InProcessLauncher

import fedloop.distributed.training as training
from fedloop.automation import Controller
from fedloop.core import AutomationConfig, DistributedConfig, FedloopConfig, resolve
from fedloop.learn import mlp_adapter
from fedloop.registry import CHAMPION, ModelRegistry, lineage
from fedloop.scenarios.fraud.distributed import MODEL_NAME, train
from fedloop.store import Workspace, open_workspace

LOOP_MODEL = "fraud-loop"


def _config(root: Path, automation: dict[str, Any] | None = None) -> FedloopConfig:
    values: dict[str, Any] = {
        "project": {"dir": str(root / ".fedloop")},
        "distributed": {"workers": 1, "checkpoint_every_steps": 20},
    }
    if automation is not None:
        values["automation"] = automation
    return resolve(values, {}, {}).config


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> list[InProcessLauncher]:
    """Make the driver run its one worker in this process; return the launchers it made."""
    made: list[InProcessLauncher] = []

    def make(config: DistributedConfig, *, work_dir: Path) -> InProcessLauncher:
        made.append(InProcessLauncher())
        return made[-1]

    monkeypatch.setattr(training, "make_launcher", make)
    return made


@pytest.mark.usefixtures("in_process")
def test_train_flow_registers_the_model_with_workers_and_data_sets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`fedloop train`'s flow: a finished run, a champion with rank contributors, train + eval data."""
    # Arrange
    config = _config(tmp_path)

    # Act
    with open_workspace(config) as ws:
        out = train(ws, config, rows=3_000, epochs=1, hidden=(16,))

        # Assert
        assert out["version"] == 1
        assert (out["workers"], out["restarts"], out["steps"]) == (1, 0, 38)
        assert 0.5 < out["auc"] <= 1.0
        mv = ws.metadata.get_model_version(MODEL_NAME, 1)
        assert CHAMPION in mv.aliases
        assert [(c.contributor, c.kind) for c in mv.contributors] == [("rank-0", "worker")]
        found = lineage(ws.metadata, MODEL_NAME, 1)
        assert sorted(role for _, role in found.datasets) == ["eval", "train"]
    assert "Data-parallel run" in capsys.readouterr().err


def _loop(root: Path) -> FedloopConfig:
    policy = {
        "name": "retrain-ddp",
        "model": LOOP_MODEL,
        "trigger": {"manual_only": True},
        "action": {
            "kind": "data_parallel",
            "trainer": "fedloop.scenarios.fraud.distributed:retrain",
            "rounds": 3,
            "params": {"rows": 20_000, "test_rows": 4_000, "checkpoint_every_steps": 200},
        },
        "gate": {"holdout": True, "metric": "auc", "min_improvement": 0.0},
        "rollout": {"steps": [1.0], "step_min_requests": 0, "step_min_s": 0.0},
    }
    return _config(root, {"tick_s": 0.05, "policies": [policy]})


@pytest.fixture
def loop_workspace(tmp_path: Path) -> Iterator[Workspace]:
    """Return a project whose champion is an untrained MLP 30-32-16-1 (the demo's shape)."""
    with open_workspace(_loop(tmp_path)) as ws:
        model = mlp_adapter(30, (32, 16), seed=3)
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        registry.register(
            LOOP_MODEL, weights=model.get_parameters(), onnx_model=model.to_onnx(), metrics={}
        )
        registry.promote(LOOP_MODEL, 1, alias=CHAMPION)
        yield ws


def _until(controller: Controller, state: str, *, timeout_s: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        seen += [d.state for d in controller.tick()]
        if {state, "failed", "rejected", "rolled_back"} & set(seen):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"never reached {state}; saw {seen}")


@pytest.mark.parametrize(
    "launch",
    [
        pytest.param("inprocess", id="worker-in-process"),
        pytest.param("elastic", id="elastic-worker-process", marks=pytest.mark.slow),
    ],
)
def test_the_loop_retrains_data_parallel_and_promotes(
    loop_workspace: Workspace, launch: str, request: pytest.FixtureRequest
) -> None:
    """A manual trigger trains data-parallel through the controller; the challenger is promoted."""
    # Arrange
    if launch == "inprocess":
        request.getfixturevalue("in_process")
    ws = loop_workspace
    assert isinstance(ws.config.automation, AutomationConfig)
    controller = Controller(ws, ws.config.automation)
    action = controller.trigger_manually("retrain-ddp", reason="test", actor="pytest")

    # Act
    states = _until(controller, "promoted", timeout_s=240)

    # Assert
    stored = ws.metadata.list_loop_actions(policy="retrain-ddp")[0]
    assert states[-1] == "promoted", (states, stored.detail)
    champion = ws.metadata.find_alias(LOOP_MODEL, CHAMPION)
    assert champion is not None
    assert champion.version == 2
    assert champion.tags["loop_action"] == action.id
    assert champion.tags["training"] == "data-parallel"
    assert [c.kind for c in champion.contributors] == ["worker"]
    run = ws.metadata.get_run(champion.run_id)  # type: ignore[arg-type]
    assert (run.kind, run.status, run.params["workers"]) == ("data-parallel", "finished", "1")
    assert stored.run_id == run.id
    parent = ws.metadata.get_model_version_by_id(champion.parent_version_id)  # type: ignore[arg-type]
    assert parent.version == 1
