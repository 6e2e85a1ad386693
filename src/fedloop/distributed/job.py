"""What every worker of a data-parallel run is told (a JSON file), and the checks made before launch."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fedloop.core import (
    MAX_WORKERS,
    DistributedConfig,
    InvalidInput,
    RendezvousError,
)

__all__ = [
    "JobSpec",
    "check_workers",
    "rendezvous_endpoint",
    "steps_per_epoch",
]

_TRAINER_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"


class JobSpec(BaseModel):
    """One data-parallel training job, as each worker process reads it.

    Everything a worker needs travels in this JSON document (never a pickle): where the stores
    are, the adapter factory by dotted name, the digest of the training data in the artifact
    store, and the schedule. Workers derive their shard, order and position from it and from
    the run's last checkpoint, so every attempt of a restarted group computes the same thing.

    Parameters
    ----------
    run_id : str
        The run (kind ``data-parallel``) that checkpoints and metrics belong to.
    store_url : str
        SQLAlchemy URL of the metadata store.
    artifacts_url : str
        fsspec URL of the artifact store.
    busy_timeout_ms : int
        SQLite lock wait.
    adapter : str
        ``package.module:function`` returning a ``TorchAdapter``; called with ``adapter_kwargs``.
    adapter_kwargs : dict
        JSON keyword arguments of ``adapter``.
    data_digest : str
        sha256 of the training data (safetensors with tensors ``x`` and ``y``).
    num_rows, num_features : int
        Shape of ``x``.
    batch_size : int
        Rows per worker per optimizer step.
    epochs : int
        Passes over the data.
    checkpoint_every_steps : int
        Rank 0 checkpoints every this many optimizer steps (and at the end).
    backend : {"gloo", "nccl"}
        Process-group backend.
    seed : int
        Seed of the distributed sampler's shuffling.
    work_dir : str or None
        Folder for pid files and the progress file (local launches); None writes neither.
    progress_interval_s : float
        Rank 0 records progress metrics at most this often.
    timeout_s : float
        Collective-operation timeout of the process group.
    attempt_offset : int
        Attempts of this run before this launch (a resumed run keeps counting restarts).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str = Field(min_length=1, max_length=64)
    store_url: str = Field(min_length=1)
    artifacts_url: str = Field(min_length=1)
    busy_timeout_ms: int = Field(default=30_000, ge=0)
    adapter: str = Field(pattern=_TRAINER_PATTERN)
    adapter_kwargs: dict[str, Any] = Field(default_factory=dict)
    data_digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    num_rows: int = Field(ge=1)
    num_features: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    epochs: int = Field(ge=1, le=1_000_000)
    checkpoint_every_steps: int = Field(ge=1)
    backend: Literal["gloo", "nccl"] = "gloo"
    seed: int = Field(default=0, ge=0)
    work_dir: str | None = None
    progress_interval_s: float = Field(default=0.5, gt=0)
    timeout_s: float = Field(default=300.0, gt=0)
    attempt_offset: int = Field(default=0, ge=0)

    def write(self, path: Path) -> Path:
        """Write the spec as JSON, readable by the owner only (it may hold a store password).

        Parameters
        ----------
        path : Path
            Target file.

        Returns
        -------
        Path
            ``path``.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(self.model_dump_json(indent=2))
        return path

    @classmethod
    def read(cls, path: Path) -> JobSpec:
        """Read a spec written by :meth:`write`.

        Raises
        ------
        InvalidInput
            When the file is missing or not a valid spec.
        """
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InvalidInput(
                f"cannot read the job spec {path}: {err}.",
                field="job",
                hint="Workers are started by `fedloop train`; do not run them by hand.",
            ) from err


def steps_per_epoch(num_rows: int, world_size: int, batch_size: int) -> int:
    """Return the optimizer steps of one epoch: every rank gets ``ceil(rows / world)`` rows.

    Parameters
    ----------
    num_rows : int
        Training rows.
    world_size : int
        Ranks.
    batch_size : int
        Rows per rank per step.

    Returns
    -------
    int
        Steps (the same on every rank: the sampler pads the last shard).
    """
    return math.ceil(math.ceil(num_rows / world_size) / batch_size)


def check_workers(workers: int, *, num_rows: int, backend: str, gpus: int = 0) -> None:
    """Refuse a worker count that cannot train this data on this machine.

    Parameters
    ----------
    workers : int
        Requested worker processes.
    num_rows : int
        Training rows (every worker needs at least one).
    backend : {"gloo", "nccl"}
        Process-group backend.
    gpus : int, default 0
        GPUs visible here (nccl needs one per worker).

    Raises
    ------
    InvalidInput
        Field ``distributed.workers``, naming the limit and the value.
    """
    hint = "Pass --workers N or set workers under [distributed] in fedloop.toml."
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise InvalidInput(
            f"`distributed.workers` must be an int in [1, {MAX_WORKERS}]; got {workers!r}.",
            field="distributed.workers",
            value=workers,
            hint=hint,
        )
    if workers > num_rows:
        raise InvalidInput(
            f"`distributed.workers` is {workers} but the training data has only {num_rows} "
            "rows; every worker needs at least one.",
            field="distributed.workers",
            value=workers,
            hint=hint,
        )
    if backend == "nccl" and workers > gpus:
        raise InvalidInput(
            f"`distributed.workers` is {workers} but backend nccl needs one GPU per worker and "
            f"{gpus} are visible.",
            field="distributed.workers",
            value=workers,
            hint="Use fewer workers, or backend = 'gloo' to train on CPUs.",
        )


def _is_local(host: str) -> bool:
    """Return whether ``host`` is an address of this machine (binding to it succeeds)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    for family, _, _, _, address in infos:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((address[0], 0))
            return True
        except OSError:
            continue
    return False


def rendezvous_endpoint(config: DistributedConfig) -> tuple[str, bool]:
    """Return the c10d endpoint to use and whether this machine hosts it.

    A local host with port 0 gets a free port. A remote endpoint must accept a TCP connection
    within ``rendezvous_timeout_s``; otherwise no worker is started.

    Parameters
    ----------
    config : DistributedConfig
        ``rendezvous`` and ``rendezvous_timeout_s``.

    Returns
    -------
    (str, bool)
        ``host:port`` and True when this machine serves the rendezvous store.

    Raises
    ------
    RendezvousError
        Field ``distributed.rendezvous``: a remote endpoint that cannot be reached in time, or
        port 0 on a remote host.
    """
    host, port = config.rendezvous_host, config.rendezvous_port
    shown = f"[{host}]" if ":" in host else host
    if _is_local(host):
        if port == 0:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((host, 0))
                port = int(probe.getsockname()[1])
        return f"{shown}:{port}", True
    if port == 0:
        raise RendezvousError(
            f"`distributed.rendezvous` {config.rendezvous!r} is on another host, so its port "
            "cannot be picked here.",
            field="distributed.rendezvous",
            value=config.rendezvous,
            hint="Give the port the first node serves the rendezvous on (e.g. 29400).",
        )
    try:
        with socket.create_connection((host, port), timeout=config.rendezvous_timeout_s):
            pass
    except OSError as err:
        raise RendezvousError(
            f"the rendezvous at `distributed.rendezvous` = {config.rendezvous!r} cannot be "
            f"reached: {err} (waited up to {config.rendezvous_timeout_s:g} s).",
            field="distributed.rendezvous",
            value=config.rendezvous,
            hint="Start the first node, check host, port and firewall, or use 127.0.0.1:0 "
            "to train on this machine.",
        ) from err
    return f"{shown}:{port}", False
