"""One rank of a data-parallel run: DDP over the adapter's module, resuming from the last checkpoint.

Started as ``python -m fedloop.distributed JOB.json`` by the elastic agent (which sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT`` and
``TORCHELASTIC_RESTART_COUNT``), or called as :func:`run_worker` inside a Ray Train worker.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from fedloop.core import InvalidInput, Parameters, RunId, decode_parameters
from fedloop.distributed.checkpoint import Checkpoint, find_checkpoint, save_checkpoint
from fedloop.distributed.job import JobSpec, steps_per_epoch
from fedloop.distributed.progress import StepReporter, read_step_file
from fedloop.store import FsspecArtifactStore, MetricPoint, SqlMetadataStore

if TYPE_CHECKING:
    from fedloop.learn import TorchAdapter

__all__ = ["WorkerReport", "build_adapter", "main", "run_worker"]


@dataclass(frozen=True)
class WorkerReport:
    """What one rank did in one attempt.

    Attributes
    ----------
    rank : int
        This rank.
    attempt : int
        0 for the first start of the group, n after n restarts.
    resumed_from_step : int
        Step of the checkpoint this attempt started from (0: none).
    step : int
        Steps done at the end.
    rows : int
        Rows in this rank's shard of an epoch.
    """

    rank: int
    attempt: int
    resumed_from_step: int
    step: int
    rows: int


def build_adapter(
    adapter: str, kwargs: Mapping[str, Any], *, num_features: int | None = None
) -> TorchAdapter:
    """Import an adapter factory by name and build the adapter; check it fits the data.

    Parameters
    ----------
    adapter : str
        ``package.module:function`` returning a ``TorchAdapter``.
    kwargs : Mapping
        Its keyword arguments.
    num_features : int or None
        Columns of the training data; None skips that check.

    Returns
    -------
    TorchAdapter
        A fresh adapter (same initial weights on every rank: its seed is in the kwargs).

    Raises
    ------
    InvalidInput
        Field ``adapter`` when the factory cannot be imported or returns something without a
        torch module, or its input width differs from the data's.
    """
    module_name, _, name = adapter.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise InvalidInput(
            f"`adapter` {adapter!r} cannot be imported: {err}.",
            field="adapter",
            value=adapter,
            hint="Name a function `package.module:function` that returns a TorchAdapter.",
        ) from err
    built = factory(**kwargs)
    if not hasattr(built, "module") or not hasattr(built, "get_optimizer_state"):
        raise InvalidInput(
            f"`adapter` {adapter!r} returned {type(built).__name__}, not a TorchAdapter.",
            field="adapter",
            value=adapter,
        )
    if num_features is not None and int(built.num_features) != num_features:
        raise InvalidInput(
            f"the model takes {built.num_features} features but the data has "
            f"{num_features} columns.",
            field="data.x",
            value=num_features,
            hint="Train on the columns the model was built for, or build the model for these.",
        )
    return built  # type: ignore[no-any-return]


def _load_data(
    artifacts: FsspecArtifactStore, job: JobSpec
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    tensors = decode_parameters(artifacts.get_bytes(job.data_digest), field="data")
    x, y = tensors["x"], tensors["y"]
    if x.shape != (job.num_rows, job.num_features) or y.shape[0] != job.num_rows:
        raise InvalidInput(
            f"the stored training data has shape {x.shape}; the job expects "
            f"({job.num_rows}, {job.num_features}).",
            field="data",
        )
    return np.ascontiguousarray(x, dtype=np.float32), np.asarray(y, dtype=np.float32)


def _position(
    checkpoint: Checkpoint | None, world_size: int, per_epoch: int
) -> tuple[int, int, int]:
    """Return (step, epoch, step in epoch) to start from; a resized group maps rows over."""
    if checkpoint is None:
        return 0, 0, 0
    pos = checkpoint.step_in_epoch
    if checkpoint.world_size != world_size:
        pos = min(per_epoch, pos * checkpoint.world_size // world_size)
    return checkpoint.step, checkpoint.epoch, pos


def _agree(step: int, device: Any) -> None:
    """Check that every rank starts from the same step (all read the same checkpoint)."""
    import torch
    import torch.distributed as dist

    both = torch.tensor([step, -step], dtype=torch.int64, device=device)
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    if int(both[0]) != -int(both[1]):
        raise InvalidInput(
            f"ranks disagree on the checkpoint to resume from (steps {-int(both[1])} to "
            f"{int(both[0])}).",
            field="checkpoint",
            hint="Another run wrote to this run's checkpoints; start a new run.",
        )


def _attempt_from_store(metadata: SqlMetadataStore, run_id: RunId) -> int:
    history = metadata.get_metric_history(run_id, "attempt")
    return (max(p.step for p in history) + 1) if history else 0


def run_worker(
    job: JobSpec,
    *,
    rank: int,
    world_size: int,
    local_rank: int = 0,
    local_world_size: int | None = None,
    attempt: int | None = None,
    init_process_group: bool = True,
) -> WorkerReport:
    """Train this rank's share of the job, checkpointing from rank 0, until the last epoch.

    Parameters
    ----------
    job : JobSpec
        The job.
    rank, world_size : int
        This rank and the group size.
    local_rank : int, default 0
        Rank on this machine (the GPU index with nccl).
    local_world_size : int or None
        Ranks on this machine (CPU threads are split among them); default ``world_size``.
    attempt : int or None
        Restarts of the group so far; None counts the run's recorded attempts.
    init_process_group : bool, default True
        Join the process group from ``MASTER_ADDR``/``MASTER_PORT`` (``env://``); False when
        the caller (Ray Train) already did.

    Returns
    -------
    WorkerReport
        What this rank did.
    """
    import torch
    import torch.distributed as dist

    if job.work_dir is not None and Path(job.work_dir).is_dir():  # not on a remote Ray node
        Path(job.work_dir, f"rank-{rank}.pid").write_text(str(os.getpid()), encoding="utf-8")
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // (local_world_size or world_size)))
    if init_process_group:
        dist.init_process_group(
            job.backend,
            rank=rank,
            world_size=world_size,
            timeout=timedelta(seconds=job.timeout_s),
        )
    metadata = SqlMetadataStore(
        job.store_url, busy_timeout_ms=job.busy_timeout_ms, auto_upgrade=False
    )
    try:
        return _train(job, metadata, rank, world_size, local_rank, attempt)
    finally:
        metadata.close()
        torch.set_num_threads(threads)
        if init_process_group:
            dist.destroy_process_group()


def _train(
    job: JobSpec,
    metadata: SqlMetadataStore,
    rank: int,
    world_size: int,
    local_rank: int,
    attempt: int | None,
) -> WorkerReport:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DistributedSampler

    run_id = RunId(job.run_id)
    artifacts = FsspecArtifactStore(job.artifacts_url)
    x, y = _load_data(artifacts, job)
    adapter = build_adapter(job.adapter, job.adapter_kwargs, num_features=job.num_features)
    checkpoint = find_checkpoint(metadata, artifacts, run_id)
    if checkpoint is not None:
        adapter.set_parameters(checkpoint.weights)
        adapter.set_optimizer_state(checkpoint.optimizer)
    device = None
    if job.backend == "nccl":
        torch.cuda.set_device(local_rank)
        adapter.to(f"cuda:{local_rank}")
        device = torch.device(f"cuda:{local_rank}")
    model = adapter.module
    # The adapter's own loop now drives DDP: backward() all-reduces the gradients.
    adapter.module = DistributedDataParallel(
        model, device_ids=[local_rank] if device is not None else None
    )
    batch = job.batch_size
    per_epoch = steps_per_epoch(job.num_rows, world_size, batch)
    step, epoch, pos = _position(checkpoint, world_size, per_epoch)
    _agree(step, device)
    sampler: DistributedSampler[int] = DistributedSampler(
        range(job.num_rows),  # type: ignore[arg-type]  # only len() is used
        num_replicas=world_size,
        rank=rank,
        shuffle=True,
        seed=job.seed,
    )
    work = Path(job.work_dir) if job.work_dir is not None and Path(job.work_dir).is_dir() else None
    reporter: StepReporter | None = None
    resumed_from = step
    if rank == 0:
        attempt = _attempt_from_store(metadata, run_id) if attempt is None else attempt
        before = read_step_file(work / "progress") if work is not None else None
        reporter = StepReporter(
            metadata,
            run_id,
            step=step,
            samples_per_step=batch * world_size,
            interval_s=job.progress_interval_s,
            step_file=work / "progress" if work is not None else None,
        )
        reporter.epoch = epoch
        start = {"attempt": float(attempt), "restarts": float(attempt), "world_size": world_size}
        if checkpoint is not None and (attempt > 0 or step > 0):
            start["resumed_from_step"] = float(step)
            if before is not None and attempt > 0:
                start["steps_lost"] = float(max(0, before[0] - step))
        metadata.log_metric_points(
            (run_id, _point(key, value, attempt)) for key, value in start.items()
        )
    try:
        while epoch < job.epochs:
            sampler.set_epoch(epoch)
            order = np.fromiter(iter(sampler), dtype=np.int64)
            if reporter is not None:
                reporter.epoch = epoch
            while pos < per_epoch:
                end = min(
                    per_epoch, pos + job.checkpoint_every_steps - step % job.checkpoint_every_steps
                )
                rows = order[pos * batch : end * batch]
                adapter.fit(
                    x[rows],
                    y[rows],
                    shuffle=False,
                    on_step=reporter.on_step if reporter is not None else None,
                )
                step, pos = step + end - pos, end
                last = pos == per_epoch and epoch + 1 == job.epochs
                if reporter is not None and (step % job.checkpoint_every_steps == 0 or last):
                    at_end = pos == per_epoch
                    save_checkpoint(
                        metadata,
                        artifacts,
                        run_id,
                        Checkpoint(
                            step=step,
                            epoch=epoch + 1 if at_end else epoch,
                            step_in_epoch=0 if at_end else pos,
                            world_size=world_size,
                            weights=_state(model),
                            optimizer=adapter.get_optimizer_state(),
                            metrics={"train_loss": reporter.last_loss},
                        ),
                    )
                    reporter.report(checkpoint_step=float(step))
            epoch, pos = epoch + 1, 0
        if reporter is not None:
            reporter.epoch = job.epochs
            reporter.report()
        # Nobody leaves before rank 0 has saved the final checkpoint: a rank that exits early
        # takes the workers' store down under the others.
        dist.barrier()
    finally:
        if reporter is not None:
            reporter.close()
    return WorkerReport(
        rank=rank,
        attempt=attempt if attempt is not None else -1,
        resumed_from_step=resumed_from,
        step=step,
        rows=len(sampler),
    )


def _state(module: Any) -> Parameters:
    return OrderedDict((k, v.detach().cpu().numpy().copy()) for k, v in module.state_dict().items())


def _point(key: str, value: float, step: int) -> MetricPoint:
    return MetricPoint(key, float(value), step, int(time.time() * 1000))


def _redirect_output(job: JobSpec, env: Mapping[str, str]) -> None:
    """Send this process's stdout and stderr to ``logs/attempt-<n>/rank-<r>.log`` in the work dir."""
    if job.work_dir is None or not Path(job.work_dir).is_dir():
        return
    folder = Path(job.work_dir, "logs", f"attempt-{env.get('TORCHELASTIC_RESTART_COUNT', '0')}")
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(
        folder / f"rank-{env.get('RANK', '0')}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def main(argv: list[str] | None = None) -> int:
    """Run one rank from the elastic agent's environment (``python -m fedloop.distributed JOB``)."""
    from torch.distributed.elastic.multiprocessing.errors import record

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m fedloop.distributed JOB.json", file=sys.stderr)
        return 2
    job = JobSpec.read(Path(args[0]))
    env = os.environ
    _redirect_output(job, env)

    @record
    def _run() -> None:
        run_worker(
            job,
            rank=int(env["RANK"]),
            world_size=int(env["WORLD_SIZE"]),
            local_rank=int(env.get("LOCAL_RANK", "0")),
            local_world_size=int(env.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"])),
            attempt=job.attempt_offset + int(env.get("TORCHELASTIC_RESTART_COUNT", "0")),
        )

    _run()
    sys.stdout.flush()
    sys.stderr.flush()
    # No interpreter teardown: gloo's threads can abort it ("terminate called without an
    # active exception"), which the agent would count as a failure and restart the group for.
    os._exit(0)
