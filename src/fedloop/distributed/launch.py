"""Launch a job's workers on this machine under torch.distributed's elastic agent (c10d rendezvous)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from fedloop.core import DistributedConfig, RendezvousError, WorkersFailed
from fedloop.distributed.job import JobSpec, rendezvous_endpoint

__all__ = ["ElasticLauncher", "Launcher"]

# Without it torch 2.13's agent can hang re-forming a gloo group after a worker died
# (pytorch#135712): the workers get their own store instead of sharing the rendezvous one.
_AGENT_ENV = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
_AGENT_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT")
_ELASTIC_LOGGER = "torch.distributed.elastic"


class Launcher(Protocol):
    """Starts every worker of a job, restarts the group on failure, returns when it finished."""

    def launch(self, job: JobSpec, *, job_path: Path) -> None:
        """Run the job to its end.

        Parameters
        ----------
        job : JobSpec
            The job (already written to ``job_path``).
        job_path : Path
            Its JSON file, for workers started as processes.

        Raises
        ------
        RendezvousError
            When the workers cannot meet.
        WorkersFailed
            When the group failed more often than it may restart.
        """
        ...


@contextlib.contextmanager
def _agent_process_state(log_file: Path | None) -> Iterator[None]:
    """Give the agent what it needs, and take back what it changes in this process.

    The agent sets ``TORCHELASTIC_SIGNALS_TO_HANDLE`` and, on the main thread, replaces the
    handlers of SIGTERM/SIGINT/SIGHUP/SIGQUIT (for good); its log lines go to ``log_file``
    instead of this process's stderr.
    """
    saved_env = {k: os.environ.get(k) for k in (*_AGENT_ENV, "TORCHELASTIC_SIGNALS_TO_HANDLE")}
    on_main = threading.current_thread() is threading.main_thread()
    saved_handlers = (
        {name: signal.getsignal(getattr(signal, name)) for name in _AGENT_SIGNALS}
        if on_main
        else {}
    )
    logger = logging.getLogger(_ELASTIC_LOGGER)
    saved_propagate = logger.propagate
    handler = logging.FileHandler(log_file, encoding="utf-8") if log_file is not None else None
    if handler is not None:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.propagate = False
    os.environ.update(_AGENT_ENV)
    try:
        yield
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        for name, previous in saved_handlers.items():
            signal.signal(getattr(signal, name), previous)
        logger.propagate = saved_propagate
        if handler is not None:
            logger.removeHandler(handler)
            handler.close()


def _root_cause(err: Any) -> tuple[int, str]:
    """Return (rank, message) of the first failure of a ChildFailedError."""
    rank, failure = err.get_first_failure()
    message = failure.message
    if isinstance(message, dict):  # the error file's structured form
        message = message.get("message", str(message))
    return int(rank), str(message).strip().splitlines()[-1] if str(message).strip() else "?"


class ElasticLauncher:
    """Run ``workers`` DDP ranks on this machine with torch.distributed's elastic agent.

    The agent runs in the calling thread and starts each rank as
    ``python -m fedloop.distributed JOB.json`` (a process, not a pickled function). When
    a rank dies, the agent stops the others and restarts the whole group (up to
    ``max_restarts`` times) through a new c10d rendezvous round; the new group resumes from
    the run's last checkpoint. Workers' stdout/stderr and the agent's log lines go to
    ``log_dir``.

    Parameters
    ----------
    config : DistributedConfig
        ``workers``, ``max_restarts``, ``rendezvous``, ``rendezvous_timeout_s``.
    log_dir : Path or None
        Where worker and agent logs go (None: a temporary folder torch picks).
    monitor_interval_s : float, default 0.1
        How often the agent checks its workers (the detection part of recovery time).
    shutdown_timeout_s : int, default 5
        How long surviving workers get to exit on SIGTERM before SIGKILL.

    Example
    -------
    >>> ElasticLauncher(DistributedConfig(workers=2)).launch(job, job_path=path)  # doctest: +SKIP
    """

    def __init__(
        self,
        config: DistributedConfig,
        *,
        log_dir: Path | None = None,
        monitor_interval_s: float = 0.1,
        shutdown_timeout_s: int = 5,
    ) -> None:
        self.config = config
        self.log_dir = log_dir
        self.monitor_interval_s = monitor_interval_s
        self.shutdown_timeout_s = shutdown_timeout_s

    def launch(self, job: JobSpec, *, job_path: Path) -> None:
        """Run the job's workers until they finish; see :class:`Launcher`.

        Raises
        ------
        RendezvousError
            Field ``distributed.rendezvous``: unreachable, or the group did not form within
            ``rendezvous_timeout_s``.
        WorkersFailed
            Field ``distributed.max_restarts``: the root cause of the last failure.
        """
        from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
        from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
        from torch.distributed.elastic.rendezvous import RendezvousError as TorchRendezvousError
        from torch.distributed.launcher.api import LaunchConfig, elastic_launch

        cfg = self.config
        endpoint, local = rendezvous_endpoint(cfg)
        timeout = max(1, round(cfg.rendezvous_timeout_s))
        logs = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            # Error files only: each worker sends its own output to the folder itself (torch's
            # redirection leaves the files of finished workers open).
            logs = DefaultLogsSpecs(log_dir=str(self.log_dir))
        launch_config = LaunchConfig(
            min_nodes=1,
            max_nodes=1,
            nproc_per_node=cfg.workers,
            run_id=job.run_id,
            rdzv_backend="c10d",
            rdzv_endpoint=endpoint,
            rdzv_configs={"timeout": timeout, "read_timeout": timeout},
            max_restarts=cfg.max_restarts,
            monitor_interval=self.monitor_interval_s,
            local_addr="127.0.0.1" if local else None,
            logs_specs=logs,
            shutdown_timeout=self.shutdown_timeout_s,
        )
        agent_log = self.log_dir / "agent.log" if self.log_dir is not None else None
        with _agent_process_state(agent_log):
            try:
                elastic_launch(launch_config, sys.executable)(
                    "-m", "fedloop.distributed", str(job_path)
                )
            except ChildFailedError as err:
                rank, message = _root_cause(err)
                raise WorkersFailed(
                    f"data-parallel run {job.run_id} failed after {cfg.max_restarts} "
                    f"restart(s): rank {rank}: {message}",
                    field="distributed.max_restarts",
                    value=cfg.max_restarts,
                    hint=f"See the worker logs under {self.log_dir or 'the torchelastic temp folder'}; "
                    f"`fedloop train --resume {job.run_id}` continues from the last checkpoint.",
                ) from err
            except TorchRendezvousError as err:
                raise RendezvousError(
                    f"the workers could not meet at `distributed.rendezvous` = {endpoint!r} "
                    f"within {timeout} s: {type(err).__name__}: {err}.",
                    field="distributed.rendezvous",
                    value=cfg.rendezvous,
                    hint="Check that every node uses the same endpoint and that it is reachable; "
                    "127.0.0.1:0 trains on this machine.",
                ) from err
            except Exception as err:
                if type(err).__name__ == "SignalException":  # the agent got SIGINT/SIGTERM
                    raise KeyboardInterrupt from err
                raise
