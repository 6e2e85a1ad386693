"""Helpers of the data-parallel tests: a small data set, a workspace and an in-process launcher."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedloop.core import FedloopConfig, resolve
from fedloop.distributed import JobSpec, WorkerReport, run_worker

ADAPTER = "fedloop.learn:mlp_adapter"
FEATURES = 6
KWARGS: dict[str, Any] = {"num_features": FEATURES, "hidden": [8], "seed": 0, "batch_size": 32}


def small_data(rows: int = 1_000, seed: int = 0) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Return a separable-ish binary problem with ``FEATURES`` columns."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES)).astype(np.float32)
    y = (x[:, 0] - x[:, 1] + 0.3 * rng.normal(size=rows) > 0).astype(np.int64)
    return x, y


def config_for(root: Path, **distributed: Any) -> FedloopConfig:
    """Return a config with the project under ``root`` and these ``[distributed]`` values."""
    return resolve(
        {"project": {"dir": str(root / ".fedloop")}, "distributed": distributed}, {}, {}
    ).config


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class InProcessLauncher:
    """Run the job as rank 0 of a group of one in this process (the worker's code, no process)."""

    def __init__(self) -> None:
        self.jobs: list[JobSpec] = []
        self.reports: list[WorkerReport] = []

    def launch(self, job: JobSpec, *, job_path: Path) -> None:
        """Run rank 0 of a group of one, over a fresh loopback store."""
        import os

        self.jobs.append(job)
        assert JobSpec.read(job_path) == job
        os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())})
        try:
            self.reports.append(run_worker(job, rank=0, world_size=1, attempt=len(self.jobs) - 1))
        finally:
            os.environ.pop("MASTER_ADDR", None)
            os.environ.pop("MASTER_PORT", None)


#: ``crashing_adapter`` raises once its adapters have taken this many steps (None: never).
CRASH_AT_STEP: list[int | None] = [None]


def crashing_adapter(**kwargs: Any) -> Any:
    """Return ``mlp_adapter(**kwargs)`` whose training dies after ``CRASH_AT_STEP[0]`` steps."""
    from fedloop.learn import mlp_adapter

    adapter = mlp_adapter(**kwargs)
    real_fit = adapter.fit
    done = [0]

    def fit(x: Any, y: Any, **options: Any) -> dict[str, float]:
        limit = CRASH_AT_STEP[0]
        steps = -(-len(x) // adapter.batch_size)
        if limit is not None and done[0] + steps >= limit:
            rows = (limit - done[0]) * adapter.batch_size
            real_fit(x[:rows], y[:rows], **options)
            raise RuntimeError(f"worker crashed at step {limit}")
        done[0] += steps
        return real_fit(x, y, **options)

    adapter.fit = fit  # type: ignore[method-assign]
    return adapter
