"""The driver of a data-parallel run: record it, stage data and step 0, launch, watch, collect."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedloop.core import (
    Conflict,
    DatasetId,
    DistributedConfig,
    InvalidInput,
    Parameters,
    RunId,
    encode_parameters,
    fingerprint_arrays,
)
from fedloop.distributed.checkpoint import Checkpoint, find_checkpoint, save_checkpoint
from fedloop.distributed.job import (
    JobSpec,
    check_workers,
    rendezvous_endpoint,
    steps_per_epoch,
)
from fedloop.distributed.launch import ElasticLauncher, Launcher
from fedloop.distributed.progress import Progress, ProgressWatcher
from fedloop.distributed.worker import build_adapter
from fedloop.store import ActiveRun, Workspace, start_run

__all__ = ["DataParallelResult", "make_launcher", "resolve_backend", "train_data_parallel"]

_DATA_ARTIFACT = "data/train"


@dataclass(frozen=True)
class DataParallelResult:
    """A finished data-parallel run.

    Attributes
    ----------
    run_id : RunId
        The run (kind ``data-parallel``).
    weights : Parameters
        The final model.
    workers : int
        Ranks of the last attempt.
    steps : int
        Optimizer steps done (over every attempt, not counting redone ones).
    restarts : int
        Times the group was restarted (or the run resumed).
    steps_lost : int
        Steps trained twice because a failure came after the last checkpoint.
    rows_per_worker : int
        Rows in each rank's shard of an epoch.
    seconds : float
        Wall time of the launch, restarts included.
    samples_per_s : float or None
        Rank 0's last measured throughput over all workers.
    """

    run_id: RunId
    weights: Parameters
    workers: int
    steps: int
    restarts: int
    steps_lost: int
    rows_per_worker: int
    seconds: float
    samples_per_s: float | None


def resolve_backend(config: DistributedConfig) -> str:
    """Return the process-group backend: ``auto`` is nccl when every local worker gets a GPU.

    On Ray the cluster's GPUs are not visible from here, so ``auto`` is gloo there; ask for
    nccl explicitly to train on the cluster's GPUs.
    """
    if config.backend != "auto":
        return config.backend
    if config.launcher == "ray":
        return "gloo"
    import torch

    usable = torch.cuda.is_available() and torch.cuda.device_count() >= config.workers
    return "nccl" if usable else "gloo"


def make_launcher(config: DistributedConfig, *, work_dir: Path) -> Launcher:
    """Return the launcher ``config.launcher`` names (Ray is imported only for ``ray``)."""
    if config.launcher == "ray":
        from fedloop.distributed.ray_train import RayTrainLauncher

        return RayTrainLauncher(
            config, storage_dir=work_dir / "ray", use_gpu=config.backend == "nccl"
        )
    return ElasticLauncher(config, log_dir=work_dir / "logs")


def _check_data(
    x: npt.NDArray[Any], y: npt.NDArray[Any], num_features: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Refuse data that does not fit the model before anything is recorded."""
    xa, ya = np.asarray(x), np.asarray(y)
    if xa.ndim != 2 or xa.shape[0] == 0:
        raise InvalidInput(
            f"training data `x` must be a non-empty 2-D array; got shape {xa.shape}.",
            field="data.x",
        )
    if xa.shape[1] != num_features:
        raise InvalidInput(
            f"the model takes {num_features} features but the data has {xa.shape[1]} columns.",
            field="data.x",
            value=xa.shape[1],
            hint="Train on the columns the model was built for, or build the model for these.",
        )
    if ya.reshape(-1).shape[0] != xa.shape[0]:
        raise InvalidInput(
            f"`y` has {ya.reshape(-1).shape[0]} labels but `x` has {xa.shape[0]} rows.",
            field="data.y",
        )
    xf = np.ascontiguousarray(xa, dtype=np.float32)
    yf = np.ascontiguousarray(ya.reshape(-1), dtype=np.float32)
    if not (np.isfinite(xf).all() and np.isfinite(yf).all()):
        raise InvalidInput("the training data contains NaN or infinite values.", field="data.x")
    if ((yf < 0) | (yf > 1)).any():
        raise InvalidInput(
            "labels `y` must lie in [0, 1] for the binary model.",
            field="data.y",
            hint="Encode the positive class as 1 and the negative as 0.",
        )
    return xf, yf


def _open_run(
    ws: Workspace,
    *,
    resume: RunId | None,
    name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, str],
    datasets: Sequence[tuple[DatasetId, str]],
) -> ActiveRun:
    if resume is None:
        return start_run(
            name,
            kind="data-parallel",
            project=ws.project.name,
            params=params,
            tags=tags,
            dataset_ids=datasets,
            store=ws.metadata,
            artifacts=ws.artifacts,
            tracking=ws.config.tracking,
        )
    run = ws.metadata.get_run(resume)
    if run.kind != "data-parallel":
        raise InvalidInput(
            f"run {resume} is a {run.kind} run; only data-parallel runs resume here.",
            field="resume",
            value=resume,
        )
    ws.metadata.set_run_status(resume, "running")
    return ActiveRun(ws.metadata, run, artifacts=ws.artifacts)


def _stage_data(ws: Workspace, run: ActiveRun, data: bytes) -> str:
    """Put the training data in the artifact store once; a resumed run must get the same bytes."""
    recorded = [a for a in ws.metadata.list_artifacts(run.id) if a.name == _DATA_ARTIFACT]
    ref = ws.artifacts.put_bytes(data)
    if recorded and recorded[-1].digest != ref.digest:
        raise Conflict(
            f"run {run.id} was trained on other data (sha256 {recorded[-1].digest[:12]}…).",
            field="resume",
            value=run.id,
            hint="Resume with the same data and arguments, or start a new run.",
        )
    if not recorded:
        ws.metadata.record_artifact(
            run.id, _DATA_ARTIFACT, digest=ref.digest, size_bytes=ref.size_bytes
        )
    return ref.digest


def train_data_parallel(
    ws: Workspace,
    config: DistributedConfig,
    *,
    adapter: str,
    adapter_kwargs: Mapping[str, Any],
    x: npt.NDArray[Any],
    y: npt.NDArray[Any],
    epochs: int,
    name: str = "data-parallel",
    dataset_name: str = "train",
    datasets: Sequence[tuple[DatasetId, str]] = (),
    initial: Parameters | None = None,
    resume: RunId | None = None,
    tags: Mapping[str, str] | None = None,
    on_run: Callable[[RunId], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    launcher: Launcher | None = None,
    work_dir: Path | None = None,
) -> DataParallelResult:
    """Train ``adapter`` with PyTorch DDP over ``config.workers`` processes, elastically.

    The run (kind ``data-parallel``) is recorded first, with its parameters and training data
    set; the data goes into the artifact store once and the initial weights become checkpoint
    0, so every worker — and every restarted group — starts from the store. Rank 0 checkpoints
    every ``config.checkpoint_every_steps`` steps; when a worker dies the launcher restarts the
    group (up to ``config.max_restarts`` times), which resumes from the last checkpoint, so at
    most one interval of work is lost. Progress comes from rank 0's metrics.

    Parameters
    ----------
    ws : Workspace
        The project's stores (every worker opens the same ones).
    config : DistributedConfig
        Workers, launcher, backend, checkpoint interval, restarts, rendezvous.
    adapter : str
        ``package.module:function`` returning a ``TorchAdapter`` (imported in every worker).
    adapter_kwargs : Mapping
        Its JSON keyword arguments (the adapter's seed makes every rank start alike).
    x, y : ndarray
        Training rows (``(n, features)``) and 0/1 labels.
    epochs : int
        Passes over the data, >= 1.
    name : str, default "data-parallel"
        Run name.
    dataset_name : str, default "train"
        Name the training data set is registered under (with its fingerprint).
    datasets : sequence of (DatasetId, role)
        More data sets of the run (e.g. the evaluation set, role ``eval``).
    initial : Parameters or None
        Warm-start weights (e.g. the champion's); default the adapter's initialization.
    resume : RunId or None
        Continue this run from its last checkpoint (same data and arguments).
    tags : Mapping or None
        Run tags.
    on_run : callable or None
        Called with the run id as soon as the run exists.
    on_progress : callable or None
        Called from a watcher thread with each new :class:`Progress`.
    launcher : Launcher or None
        Default: :func:`make_launcher` for ``config.launcher``.
    work_dir : Path or None
        Job file, pid files, progress file and logs; default ``<project.dir>/distributed/<run>``.

    Returns
    -------
    DataParallelResult
        The final weights and what the run went through.

    Raises
    ------
    InvalidInput
        Data that does not fit the model (field ``data.*``), a bad worker count (field
        ``distributed.workers``) or ``epochs`` (nothing is recorded).
    RendezvousError
        The workers could not meet (``distributed.rendezvous``).
    WorkersFailed
        The group failed more often than it may restart; the run is marked failed and can be
        resumed.

    Example
    -------
    >>> result = train_data_parallel(  # doctest: +SKIP
    ...     ws, DistributedConfig(workers=2), adapter="my.models:make_adapter",
    ...     adapter_kwargs={"seed": 0}, x=x_train, y=y_train, epochs=3)
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InvalidInput(f"`epochs` must be an int >= 1; got {epochs!r}.", field="epochs")
    model = build_adapter(adapter, adapter_kwargs)
    xf, yf = _check_data(x, y, int(model.num_features))
    backend = resolve_backend(config)
    gpus = 0
    if backend == "nccl":
        import torch

        # Ray places workers on the cluster's GPUs; the elastic launcher on this machine's.
        gpus = config.workers if config.launcher == "ray" else torch.cuda.device_count()
    check_workers(config.workers, num_rows=len(yf), backend=backend, gpus=gpus)
    if config.launcher == "elastic" and launcher is None:
        rendezvous_endpoint(config)  # an unreachable endpoint fails before anything is recorded
    if initial is not None:
        model.set_parameters(initial)
    dataset = ws.metadata.register_dataset(
        ws.project.id,
        dataset_name,
        fingerprint=fingerprint_arrays(xf, yf),
        num_rows=len(yf),
        schema={"features": xf.shape[1], "label": "y"},
    )
    params = {
        "workers": config.workers,
        "launcher": config.launcher,
        "backend": backend,
        "epochs": epochs,
        "batch_size": int(model.batch_size),
        "checkpoint_every_steps": config.checkpoint_every_steps,
        "max_restarts": config.max_restarts,
        "adapter": adapter,
        "adapter_kwargs": json.dumps(dict(adapter_kwargs), sort_keys=True),
        "rows": len(yf),
    }
    with _open_run(
        ws,
        resume=resume,
        name=name,
        params=params,
        tags=dict(tags or {}),
        datasets=[(dataset.id, "train"), *datasets],
    ) as run:
        if on_run is not None:
            on_run(run.id)
        digest = _stage_data(ws, run, encode_parameters({"x": xf, "y": yf}))
        last = find_checkpoint(ws.metadata, ws.artifacts, run.id)
        if last is None:
            save_checkpoint(
                ws.metadata,
                ws.artifacts,
                run.id,
                Checkpoint(
                    step=0, epoch=0, step_in_epoch=0, world_size=config.workers,
                    weights=model.get_parameters(),
                ),
            )  # fmt: skip
        folder = (work_dir or Path(ws.config.project.dir) / "distributed" / run.id).resolve()
        history = ws.metadata.get_metric_history(run.id, "attempt")
        job = JobSpec(
            run_id=run.id,
            store_url=ws.metadata.url,
            artifacts_url=ws.config.artifacts_url(),
            busy_timeout_ms=ws.config.store.busy_timeout_ms,
            adapter=adapter,
            adapter_kwargs=dict(adapter_kwargs),
            data_digest=digest,
            num_rows=len(yf),
            num_features=xf.shape[1],
            batch_size=int(model.batch_size),
            epochs=epochs,
            checkpoint_every_steps=config.checkpoint_every_steps,
            backend=backend,  # type: ignore[arg-type]
            seed=int(adapter_kwargs.get("seed", 0)),
            work_dir=str(folder),
            attempt_offset=(max(p.step for p in history) + 1) if history else 0,
        )
        job_path = job.write(folder / "job.json")
        total = epochs * steps_per_epoch(len(yf), config.workers, job.batch_size)
        started = time.monotonic()
        chosen = launcher or make_launcher(config, work_dir=folder)
        if last is not None and last.epoch >= epochs:
            pass  # a resumed run that had finished training: collect it without a launch
        elif on_progress is None:
            chosen.launch(job, job_path=job_path)
        else:
            with ProgressWatcher(ws.metadata, run.id, total_steps=total, on_progress=on_progress):
                chosen.launch(job, job_path=job_path)
        seconds = time.monotonic() - started
        final = find_checkpoint(ws.metadata, ws.artifacts, run.id)
        if final is None or final.epoch < epochs:
            raise Conflict(
                f"run {run.id} ended without its final checkpoint "
                f"(last: step {final.step if final else 0}).",
                field="run",
                value=run.id,
                hint=f"`fedloop train --resume {run.id}` continues from the last checkpoint.",
            )
        latest = ws.metadata.get_run(run.id).latest_metrics
        restarts = int(latest.get("restarts", 0))
        lost = int(sum(p.value for p in ws.metadata.get_metric_history(run.id, "steps_lost")))
        # Known only now; params are write-once, so a resumed run adds what it did not have.
        run.log_params({"restarts": restarts, "steps_lost": lost})
        run.set_tags({"workers": str(final.world_size), "restarts": str(restarts)})
        return DataParallelResult(
            run_id=run.id,
            weights=final.weights,
            workers=final.world_size,
            steps=final.step,
            restarts=restarts,
            steps_lost=lost,
            rows_per_worker=-(-len(yf) // final.world_size),
            seconds=seconds,
            samples_per_s=latest.get("samples_per_s"),
        )
