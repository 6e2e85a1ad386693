"""The driver: the run record, staged data, checkpoints, resume, refusals and registration.

The worker runs in this process as rank 0 of a group of one (``InProcessLauncher``): the same
code as a launched worker, without a process start.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _ddp import ADAPTER, CRASH_AT_STEP, KWARGS, InProcessLauncher, config_for, small_data

from fedloop.core import (
    Conflict,
    DistributedConfig,
    FedloopConfig,
    InvalidInput,
    RendezvousError,
    WorkersFailed,
)
from fedloop.distributed import (
    ElasticLauncher,
    JobSpec,
    Progress,
    list_checkpoints,
    make_launcher,
    register_data_parallel_model,
    resolve_backend,
    train_data_parallel,
)
from fedloop.learn import mlp_adapter
from fedloop.registry import CHAMPION, lineage
from fedloop.store import Workspace, open_workspace

ROWS = 1_000
STEPS_PER_EPOCH = 32  # ceil(1000 / 32)


@pytest.fixture
def config(tmp_path: Path) -> FedloopConfig:
    """Return a project under tmp_path checkpointing every 10 steps."""
    return config_for(tmp_path, checkpoint_every_steps=10)


@pytest.fixture
def workspace(config: FedloopConfig) -> Iterator[Workspace]:
    """Return the project's open stores."""
    with open_workspace(config) as ws:
        yield ws


@pytest.fixture
def no_crash() -> Iterator[None]:
    """Reset the crashing adapter after the test."""
    yield
    CRASH_AT_STEP[0] = None


def _train(ws: Workspace, launcher: InProcessLauncher, **options: object) -> object:
    x, y = small_data(ROWS)
    values: dict[str, object] = {
        "adapter": ADAPTER,
        "adapter_kwargs": KWARGS,
        "x": x,
        "y": y,
        "epochs": 2,
        "launcher": launcher,
    } | options
    return train_data_parallel(ws, ws.config.distributed, **values)  # type: ignore[arg-type]


def test_a_run_is_recorded_checkpointed_and_finished(workspace: Workspace) -> None:
    """Run, params, data, step-0 and every-10-steps checkpoints, progress and the final weights."""
    # Arrange
    launcher = InProcessLauncher()
    seen: list[Progress] = []

    # Act
    result = _train(workspace, launcher, on_progress=seen.append)

    # Assert
    assert result.steps == 2 * STEPS_PER_EPOCH  # type: ignore[attr-defined]
    assert (result.restarts, result.steps_lost, result.workers) == (0, 0, 1)  # type: ignore[attr-defined]
    run = workspace.metadata.get_run(result.run_id)  # type: ignore[attr-defined]
    assert (run.kind, run.status) == ("data-parallel", "finished")
    assert run.params["workers"] == "1"
    assert run.params["restarts"] == "0"
    assert run.tags["restarts"] == "0"
    steps = [s for s, _ in list_checkpoints(workspace.metadata, run.id)]
    assert steps == [0, 10, 20, 30, 40, 50, 60, 64]
    names = {a.name for a in workspace.metadata.list_artifacts(run.id)}
    assert "data/train" in names
    [(dataset, role)] = workspace.metadata.list_run_datasets(run.id)
    assert (dataset.num_rows, role) == (ROWS, "train")
    assert seen[-1].step == 64
    assert seen[-1].total_steps == 64
    model = mlp_adapter(**KWARGS)
    model.set_parameters(result.weights)  # type: ignore[attr-defined]
    assert model.evaluate(*small_data(2_000, seed=1))["auc"] > 0.9
    assert launcher.reports[0].rows == ROWS


def test_a_crashed_run_resumes_from_its_last_checkpoint_bit_for_bit(
    workspace: Workspace, no_crash: None
) -> None:
    """A worker dying at step 25 loses 5 steps; the resumed run ends with the clean run's weights."""
    # Arrange: the uninterrupted run, then the same run crashing at step 25
    clean = _train(workspace, InProcessLauncher(), adapter="_ddp:crashing_adapter")
    crashing = InProcessLauncher()
    runs: list[str] = []
    CRASH_AT_STEP[0] = 25
    with pytest.raises(RuntimeError, match=r"crashed at step 25"):
        _train(workspace, crashing, adapter="_ddp:crashing_adapter", on_run=runs.append)
    CRASH_AT_STEP[0] = None
    assert workspace.metadata.get_run(runs[0]).status == "failed"  # type: ignore[arg-type]

    # Act
    resumed = _train(workspace, crashing, adapter="_ddp:crashing_adapter", resume=runs[0])

    # Assert
    assert crashing.reports[-1].resumed_from_step == 20
    assert resumed.steps_lost == 5  # type: ignore[attr-defined]
    assert resumed.restarts == 1  # type: ignore[attr-defined]
    for name, array in clean.weights.items():  # type: ignore[attr-defined]
        np.testing.assert_array_equal(resumed.weights[name], array)  # type: ignore[attr-defined]
    run = workspace.metadata.get_run(runs[0])  # type: ignore[arg-type]
    assert run.status == "finished"
    assert run.params["restarts"] == "1"
    assert run.params["steps_lost"] == "5"


def test_resuming_a_finished_run_collects_it_without_launching(workspace: Workspace) -> None:
    """A finished run resumed (a controller restarted after training) returns the same weights."""
    # Arrange
    launcher = InProcessLauncher()
    first = _train(workspace, launcher)

    # Act
    again = _train(workspace, launcher, resume=first.run_id)  # type: ignore[attr-defined]

    # Assert
    assert len(launcher.jobs) == 1
    assert again.steps == first.steps  # type: ignore[attr-defined]


def test_resuming_with_other_data_is_a_conflict(workspace: Workspace) -> None:
    """A run resumes only on the data it started with."""
    # Arrange
    launcher = InProcessLauncher()
    first = _train(workspace, launcher)
    x, y = small_data(ROWS, seed=7)

    # Act / Assert
    with pytest.raises(Conflict, match=r"trained on other data"):
        _train(workspace, launcher, x=x, y=y, resume=first.run_id)  # type: ignore[attr-defined]


def test_only_data_parallel_runs_resume(workspace: Workspace) -> None:
    """Resuming a federated run here is refused."""
    # Arrange
    other = workspace.metadata.create_run(workspace.project.id, name="fl", kind="federated")

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"is a federated run") as caught:
        _train(workspace, InProcessLauncher(), resume=other.id)
    assert caught.value.field == "resume"


@pytest.mark.parametrize(
    ("change", "field", "match"),
    [
        pytest.param({"columns": 5}, "data.x", r"takes 6 features but the data has 5", id="width"),
        pytest.param({"rows": 0}, "data.x", r"non-empty 2-D", id="empty"),
        pytest.param({"labels": 999}, "data.y", r"999 labels but `x` has 1000", id="labels"),
        pytest.param({"nan": True}, "data.x", r"NaN or infinite", id="nan"),
        pytest.param({"label_value": 3}, "data.y", r"must lie in \[0, 1\]", id="label-range"),
        pytest.param({"epochs": 0}, "epochs", r"`epochs` must be an int >= 1", id="epochs"),
    ],
)
def test_data_that_does_not_fit_the_model_is_refused_before_anything_is_recorded(
    workspace: Workspace, change: dict[str, int], field: str, match: str
) -> None:
    """Wrong width, no rows, label count, NaN, label values or epochs: InvalidInput, no run."""
    # Arrange
    x, y = small_data(ROWS)
    if "columns" in change:
        x = x[:, : change["columns"]]
    if "rows" in change:
        x = x[:0]
    if "labels" in change:
        y = y[: change["labels"]]
    if "nan" in change:
        x = x.copy()
        x[3, 2] = np.nan
    if "label_value" in change:
        y = y.copy()
        y[0] = change["label_value"]
    launcher = InProcessLauncher()

    # Act / Assert
    with pytest.raises(InvalidInput, match=match) as caught:
        _train(workspace, launcher, x=x, y=y, epochs=change.get("epochs", 2))
    assert caught.value.field == field
    assert workspace.metadata.search_runs(workspace.project.id) == []
    assert launcher.jobs == []


def test_more_workers_than_rows_is_refused(tmp_path: Path) -> None:
    """A worker count the data cannot feed raises InvalidInput on distributed.workers, no run."""
    # Arrange
    config = config_for(tmp_path, workers=20)
    x, y = small_data(10)

    # Act / Assert
    with open_workspace(config) as ws:
        with pytest.raises(InvalidInput, match=r"only 10 rows") as caught:
            train_data_parallel(
                ws, config.distributed, adapter=ADAPTER, adapter_kwargs=KWARGS, x=x, y=y, epochs=1
            )
        assert caught.value.field == "distributed.workers"
        assert ws.metadata.search_runs(ws.project.id) == []


def test_unreachable_rendezvous_is_refused_in_bounded_time_before_anything_is_recorded(
    tmp_path: Path,
) -> None:
    """An endpoint nobody serves raises RendezvousError within its timeout; no run is recorded."""
    # Arrange
    config = config_for(tmp_path, rendezvous="192.0.2.1:29400", rendezvous_timeout_s=1.0)
    x, y = small_data(100)
    started = time.monotonic()

    # Act / Assert
    with open_workspace(config) as ws:
        with pytest.raises(RendezvousError) as caught:
            train_data_parallel(
                ws, config.distributed, adapter=ADAPTER, adapter_kwargs=KWARGS, x=x, y=y, epochs=1
            )
        assert caught.value.field == "distributed.rendezvous"
        assert ws.metadata.search_runs(ws.project.id) == []
    assert time.monotonic() - started < 10


class _FailingLauncher:
    def launch(self, job: JobSpec, *, job_path: Path) -> None:
        raise WorkersFailed("rank 1: boom", field="distributed.max_restarts")


def test_a_group_that_keeps_failing_leaves_a_failed_resumable_run(workspace: Workspace) -> None:
    """WorkersFailed reaches the caller and the run is marked failed with the reason."""
    # Arrange
    runs: list[str] = []

    # Act / Assert
    with pytest.raises(WorkersFailed, match=r"boom"):
        _train(workspace, _FailingLauncher(), on_run=runs.append)  # type: ignore[arg-type]
    run = workspace.metadata.get_run(runs[0])  # type: ignore[arg-type]
    assert run.status == "failed"
    assert run.error is not None
    assert "boom" in run.error


def test_registered_model_has_worker_lineage_and_becomes_champion(workspace: Workspace) -> None:
    """Contributors are the ranks (kind worker) with their epochs; tags say workers and restarts."""
    # Arrange
    result = _train(workspace, InProcessLauncher(), initial=mlp_adapter(**KWARGS).get_parameters())
    model = mlp_adapter(**KWARGS)
    model.set_parameters(result.weights)  # type: ignore[attr-defined]

    # Act
    mv = register_data_parallel_model(
        workspace,
        "ddp-model",
        result=result,  # type: ignore[arg-type]
        onnx_model=model.to_onnx(),
        metrics={"auc": 0.9},
    )

    # Assert
    assert [(c.contributor, c.kind, c.rounds, c.num_examples) for c in mv.contributors] == [
        ("rank-0", "worker", (1, 2), ROWS)
    ]
    assert mv.tags["training"] == "data-parallel"
    assert (mv.tags["workers"], mv.tags["restarts"]) == ("1", "0")
    assert CHAMPION in mv.aliases
    found = lineage(workspace.metadata, "ddp-model", mv.version)
    assert found.run is not None
    assert found.run.kind == "data-parallel"
    assert [role for _, role in found.datasets] == ["train"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        pytest.param({}, "gloo", id="auto-on-cpu"),
        pytest.param({"backend": "gloo"}, "gloo", id="gloo"),
        pytest.param({"backend": "nccl"}, "nccl", id="nccl-asked"),
        pytest.param({"launcher": "ray"}, "gloo", id="auto-on-ray"),
    ],
)
def test_backend_auto_is_gloo_without_a_gpu_per_worker(
    values: dict[str, str], expected: str
) -> None:
    """Backend auto picks nccl only when every local worker gets a GPU (never guessed for Ray)."""
    # Arrange
    import torch

    if not values and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")

    # Act / Assert
    assert resolve_backend(DistributedConfig.model_validate(values)) == expected


def test_the_launcher_follows_the_config(tmp_path: Path) -> None:
    """Launcher elastic gives the torch.distributed launcher with its logs under the work folder."""
    # Act
    launcher = make_launcher(DistributedConfig(workers=2), work_dir=tmp_path)

    # Assert
    assert isinstance(launcher, ElasticLauncher)
    assert launcher.log_dir == tmp_path / "logs"
