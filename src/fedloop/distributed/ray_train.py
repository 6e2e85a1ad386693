"""Launch a job's workers as a Ray Train ``TorchTrainer`` (extra ``ray``): one DDP rank per Ray worker."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fedloop.core import DistributedConfig, InvalidInput, WorkersFailed, require
from fedloop.distributed.job import JobSpec
from fedloop.distributed.worker import run_worker

__all__ = ["RayTrainLauncher"]

_OBJECT_STORE_BYTES = 200 * 1024 * 1024


def train_loop(config: dict[str, Any]) -> None:
    """Ray Train's ``train_loop_per_worker``: run this worker's rank of the job.

    Parameters
    ----------
    config : dict
        ``{"job": <JobSpec as JSON>}``: only a string crosses Ray (no pickled objects of ours).
    """
    import ray.train

    context = ray.train.get_context()
    run_worker(
        JobSpec.model_validate_json(config["job"]),
        rank=context.get_world_rank(),
        world_size=context.get_world_size(),
        local_rank=context.get_local_rank(),
        local_world_size=context.get_local_world_size(),
        attempt=None,  # Ray does not say; counted from the run's recorded attempts
        init_process_group=False,  # TorchConfig already formed the group
    )


class RayTrainLauncher:
    """Run ``workers`` DDP ranks as a Ray Train ``TorchTrainer`` (a cluster, or a local Ray).

    Ray Train forms the process group (``TorchConfig(backend)``) and, with
    ``FailureConfig(max_failures=max_restarts)``, restarts the whole worker group when a worker
    dies; the new group resumes from the run's last checkpoint in fedloop's store, which every
    node must reach (PostgreSQL and object storage on a cluster). fedloop must be installed on
    the cluster's nodes.

    Parameters
    ----------
    config : DistributedConfig
        ``workers``, ``max_restarts``, ``ray_address`` (None starts a small local Ray).
    storage_dir : Path
        Ray Train's own run folder (fedloop keeps its checkpoints in its store).
    num_cpus_per_worker : float, default 1
        CPUs each worker reserves.
    use_gpu : bool, default False
        One GPU per worker (backend nccl).

    Raises
    ------
    MissingExtraError
        Ray is not installed (``pip install "fedloop[ray]"``).
    """

    def __init__(
        self,
        config: DistributedConfig,
        *,
        storage_dir: Path,
        num_cpus_per_worker: float = 1.0,
        use_gpu: bool = False,
    ) -> None:
        self._ray: Any = require("ray", feature="Ray Train data-parallel training")
        self.config = config
        self.storage_dir = storage_dir
        self.num_cpus_per_worker = num_cpus_per_worker
        self.use_gpu = use_gpu

    def launch(self, job: JobSpec, *, job_path: Path) -> None:
        """Run the job's workers on Ray until they finish; see ``Launcher``.

        Raises
        ------
        InvalidInput
            When the cluster has fewer CPUs than the workers reserve.
        WorkersFailed
            When the group failed more often than ``max_restarts``.
        """
        from ray.train import FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        ray, cfg = self._ray, self.config
        owns = not ray.is_initialized()
        if owns:
            options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
            if cfg.ray_address is None:
                options |= {"include_dashboard": False, "object_store_memory": _OBJECT_STORE_BYTES}
            ray.init(address=cfg.ray_address, **options)
        try:
            cpus = float(ray.cluster_resources().get("CPU", 0))
            if cpus < cfg.workers * self.num_cpus_per_worker:
                raise InvalidInput(
                    f"`distributed.workers` = {cfg.workers} workers of "
                    f"{self.num_cpus_per_worker:g} CPU each do not fit the Ray cluster's "
                    f"{cpus:g} CPUs.",
                    field="distributed.workers",
                    value=cfg.workers,
                    hint="Use fewer workers or a bigger cluster.",
                )
            trainer = TorchTrainer(
                train_loop,
                train_loop_config={"job": job.model_dump_json()},
                torch_config=TorchConfig(backend=job.backend),
                scaling_config=ScalingConfig(
                    num_workers=cfg.workers,
                    use_gpu=self.use_gpu,
                    resources_per_worker={"CPU": self.num_cpus_per_worker},
                ),
                run_config=RunConfig(
                    name=f"fedloop-{job.run_id}",
                    storage_path=str(self.storage_dir),
                    failure_config=FailureConfig(max_failures=cfg.max_restarts),
                ),
            )
            try:
                trainer.fit()
            except Exception as err:
                cause = getattr(err, "cause", None) or err
                raise WorkersFailed(
                    f"data-parallel run {job.run_id} failed on Ray after {cfg.max_restarts} "
                    f"restart(s): {type(cause).__name__}: {' '.join(str(cause).split())[:400]}",
                    field="distributed.max_restarts",
                    value=cfg.max_restarts,
                    hint=f"`fedloop train --resume {job.run_id}` continues from the last "
                    "checkpoint.",
                ) from err
        finally:
            if owns:
                ray.shutdown()
