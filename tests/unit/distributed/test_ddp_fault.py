"""A real two-worker DDP run on 127.0.0.1 survives a SIGKILLed worker (slow: real processes)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from _ddp import ADAPTER, config_for

from fedloop.distributed import (
    DataParallelResult,
    list_checkpoints,
    read_step_file,
    register_data_parallel_model,
    train_data_parallel,
)
from fedloop.learn import mlp_adapter
from fedloop.registry import lineage
from fedloop.store import Workspace, open_workspace

ROWS, EPOCHS, EVERY, KILL_AT = 40_000, 2, 50, 150
KWARGS = {"num_features": 6, "hidden": [16], "seed": 0, "batch_size": 64}


def _data() -> tuple[object, object]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(ROWS, 6)).astype(np.float32)
    y = (x[:, 0] - x[:, 1] + 0.5 * rng.normal(size=ROWS) > 0.8).astype(np.int64)
    return x, y


def _train(ws: Workspace, **options: object) -> DataParallelResult:
    x, y = _data()
    return train_data_parallel(
        ws,
        ws.config.distributed,
        adapter=ADAPTER,
        adapter_kwargs=KWARGS,
        x=x,  # type: ignore[arg-type]
        y=y,  # type: ignore[arg-type]
        epochs=EPOCHS,
        **options,  # type: ignore[arg-type]
    )


def _auc(result: DataParallelResult) -> float:
    model = mlp_adapter(**KWARGS)
    model.set_parameters(result.weights)
    x, y = _data()
    return float(model.evaluate(x, y)["auc"])  # type: ignore[arg-type]


def _kill_rank_1(folder: list[Path], killed: dict[str, float]) -> None:
    """Wait for rank 0 to pass KILL_AT steps, then SIGKILL rank 1 (its pid from its pid file)."""
    deadline = time.monotonic() + 120
    while not folder and time.monotonic() < deadline:
        time.sleep(0.005)
    while time.monotonic() < deadline:
        seen = read_step_file(folder[0] / "progress")
        pid_file = folder[0] / "rank-1.pid"
        if seen is not None and seen[0] >= KILL_AT and pid_file.is_file():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
            killed.update(step=seen[0], at=time.time())
            return
        time.sleep(0.005)


@pytest.mark.slow
def test_a_sigkilled_worker_restarts_the_group_from_the_last_checkpoint(tmp_path: Path) -> None:
    """SIGKILL rank 1 mid-epoch: one restart, at most one interval redone, same AUC as clean."""
    # Arrange: an uninterrupted run of the same work
    config = config_for(tmp_path, workers=2, checkpoint_every_steps=EVERY, max_restarts=2)
    with open_workspace(config) as ws:
        clean = _train(ws)
        folder: list[Path] = []
        killed: dict[str, float] = {}
        killer = threading.Thread(target=_kill_rank_1, args=(folder, killed), daemon=True)
        killer.start()

        # Act
        result = _train(
            ws,
            on_run=lambda run_id: folder.append(tmp_path / ".fedloop" / "distributed" / run_id),
        )
        killer.join(timeout=5)

        # Assert: killed mid-training, restarted once, resumed from the last checkpoint
        assert killed, "rank 1 was never killed"
        assert killed["step"] < result.steps
        assert result.restarts == 1
        assert result.steps == clean.steps
        resumed = ws.metadata.get_metric_history(result.run_id, "resumed_from_step")
        assert [(p.step, p.value) for p in resumed] == [(1, resumed[0].value)]
        # rank 0 may still save the checkpoint of the step it had finished when rank 1 died
        saved = [step for step, _ in list_checkpoints(ws.metadata, result.run_id)]
        assert resumed[0].value == max(step for step in saved if step <= killed["step"])
        assert killed["step"] - resumed[0].value <= EVERY
        assert 0 <= result.steps_lost <= EVERY
        seconds_to_resume = resumed[0].timestamp_ms / 1000 - killed["at"]
        assert seconds_to_resume < 30

        # the model: the uninterrupted run's, bit for bit (same data order, same state)
        assert abs(_auc(result) - _auc(clean)) <= 0.005
        for name, array in clean.weights.items():
            np.testing.assert_array_equal(result.weights[name], array)
        model = mlp_adapter(**KWARGS)
        model.set_parameters(result.weights)
        mv = register_data_parallel_model(
            ws, "ddp-fault", result=result, onnx_model=model.to_onnx(), metrics={"auc": 0.5}
        )
        found = lineage(ws.metadata, "ddp-fault", mv.version)
        assert found.run is not None
        assert (found.run.params["workers"], found.run.params["restarts"]) == ("2", "1")
        assert mv.tags["restarts"] == "1"
        assert [c.contributor for c in mv.contributors] == ["rank-0", "rank-1"]
