"""Ray Train (extra ``ray``): the same job and worker as a TorchTrainer (slow: starts Ray)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _ddp import ADAPTER, KWARGS, config_for, small_data

from fedloop.distributed import RayTrainLauncher, list_checkpoints, train_data_parallel
from fedloop.store import open_workspace

pytestmark = [
    pytest.mark.ray,
    pytest.mark.slow,
    # Ray Train's own imports (ray.data) warn about Ray's deprecated options.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray"),
]


def test_ray_train_runs_the_job_and_checkpoints_to_the_store(tmp_path: Path) -> None:
    """Two Ray Train workers train the job; checkpoints and metrics land in fedloop's store."""
    # Arrange
    pytest.importorskip(
        "ray.train.torch",
        reason='Ray Train is missing: pip install "fedloop[ray]"',
        exc_type=ImportError,
    )
    config = config_for(tmp_path, workers=2, launcher="ray", checkpoint_every_steps=10)
    x, y = small_data(1_000)

    # Act
    with open_workspace(config) as ws:
        result = train_data_parallel(
            ws, config.distributed, adapter=ADAPTER, adapter_kwargs=KWARGS, x=x, y=y, epochs=2
        )

        # Assert
        assert result.workers == 2
        assert result.steps == 2 * 16  # 500 rows per rank, batch 32
        assert result.restarts == 0
        steps = [s for s, _ in list_checkpoints(ws.metadata, result.run_id)]
        assert steps == [0, 10, 20, 30, 32]
        assert ws.metadata.get_run(result.run_id).params["launcher"] == "ray"


def test_ray_launcher_refuses_more_workers_than_cpus(tmp_path: Path) -> None:
    """Asking Ray for more worker CPUs than the cluster has is a typed error naming workers."""
    # Arrange
    pytest.importorskip(
        "ray.train.torch",
        reason='Ray Train is missing: pip install "fedloop[ray]"',
        exc_type=ImportError,
    )
    from fedloop.core import InvalidInput

    config = config_for(tmp_path, workers=64, launcher="ray")
    x, y = small_data(1_000)

    # Act / Assert
    with open_workspace(config) as ws:
        with pytest.raises(InvalidInput, match=r"do not fit the Ray cluster") as caught:
            train_data_parallel(
                ws,
                config.distributed,
                adapter=ADAPTER,
                adapter_kwargs=KWARGS,
                x=x,
                y=y,
                epochs=1,
                launcher=RayTrainLauncher(config.distributed, storage_dir=tmp_path / "ray"),
            )
        assert caught.value.field == "distributed.workers"
