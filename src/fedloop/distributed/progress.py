"""Progress of a data-parallel run: rank 0 writes it (store metrics, a step file), the driver reads it."""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fedloop.core import RunId, StoreUnavailable
from fedloop.store import MetricPoint, SqlMetadataStore

__all__ = ["Progress", "ProgressWatcher", "StepReporter", "read_step_file"]

# (step, epoch, unix time) of rank 0's last optimizer step, rewritten in place every step.
_STEP_RECORD = struct.Struct("<qqd")


def read_step_file(path: Path) -> tuple[int, int, float] | None:
    """Return ``(step, epoch, unix time)`` from a step file, or None when it has none.

    Parameters
    ----------
    path : Path
        The ``progress`` file of a run's work folder.

    Returns
    -------
    (int, int, float) or None
        The last step rank 0 finished (it survives a SIGKILL: the page cache keeps it).
    """
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if len(data) < _STEP_RECORD.size:
        return None
    step, epoch, when = _STEP_RECORD.unpack_from(data)
    return int(step), int(epoch), float(when)


class StepReporter:
    """Rank 0's progress: every step into the step file, every ``interval_s`` into the store.

    Parameters
    ----------
    metadata : SqlMetadataStore
        Where the run's metrics go.
    run_id : RunId
        The run.
    step : int
        Steps done before this attempt.
    samples_per_step : int
        Rows all ranks train on per step (``batch_size * world_size``).
    interval_s : float
        Least time between two metric writes.
    step_file : Path or None
        Written every step (``pwrite`` of 24 bytes) when given.
    """

    def __init__(
        self,
        metadata: SqlMetadataStore,
        run_id: RunId,
        *,
        step: int,
        samples_per_step: int,
        interval_s: float,
        step_file: Path | None = None,
    ) -> None:
        self.metadata = metadata
        self.run_id = run_id
        self.step = step
        self.epoch = 0
        self.samples_per_step = samples_per_step
        self.interval_s = interval_s
        self._fd = (
            os.open(step_file, os.O_RDWR | os.O_CREAT, 0o600) if step_file is not None else None
        )
        self._loss_sum = 0.0
        self._loss_count = 0
        self.last_loss = float("nan")
        self._since_step = step
        self._since = time.monotonic()
        self._next = self._since + interval_s

    def on_step(self, _: int, loss: float) -> None:
        """Count one optimizer step (the adapter's ``on_step`` callback)."""
        self.step += 1
        self._loss_sum += loss
        self._loss_count += 1
        if self._fd is not None:
            os.pwrite(self._fd, _STEP_RECORD.pack(self.step, self.epoch, time.time()), 0)
        if time.monotonic() >= self._next:
            self.report()

    def report(self, **extra: float) -> None:
        """Write ``step``, ``epoch``, ``train_loss``, ``samples_per_s`` and ``extra`` now.

        A store that is briefly unavailable (a locked SQLite file) costs the points, never the
        training: the next report carries the state on.
        """
        now = time.monotonic()
        points = {"step": float(self.step), "epoch": float(self.epoch), **extra}
        if self._loss_count:
            self.last_loss = self._loss_sum / self._loss_count
            points["train_loss"] = self.last_loss
        if now > self._since and self.step > self._since_step:
            rate = (self.step - self._since_step) * self.samples_per_step / (now - self._since)
            points["samples_per_s"] = rate
        stamp = int(time.time() * 1000)
        with contextlib.suppress(StoreUnavailable):
            self.metadata.log_metric_points(
                (self.run_id, MetricPoint(key, float(value), self.step, stamp))
                for key, value in points.items()
            )
        self._loss_sum, self._loss_count = 0.0, 0
        self._since, self._since_step = now, self.step
        self._next = now + self.interval_s

    def close(self) -> None:
        """Close the step file."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass(frozen=True)
class Progress:
    """What the driver knows of a running group (from rank 0's latest metrics).

    Attributes
    ----------
    step : int
        Optimizer steps done.
    total_steps : int
        Steps of the whole run (at the launch's world size).
    epoch : int
        Current epoch (0-based).
    train_loss : float or None
        Rank 0's mean loss since its previous report.
    samples_per_s : float or None
        Rows per second over all workers.
    restarts : int
        Group restarts so far.
    """

    step: int
    total_steps: int
    epoch: int
    train_loss: float | None
    samples_per_s: float | None
    restarts: int


class ProgressWatcher:
    """A daemon thread that polls the run's latest metrics and calls ``on_progress`` on change.

    Parameters
    ----------
    metadata : SqlMetadataStore
        Where rank 0 writes.
    run_id : RunId
        The run.
    total_steps : int
        Steps of the whole run.
    on_progress : callable
        Called with a :class:`Progress` from the watcher thread.
    interval_s : float, default 0.25
        Poll period.
    """

    def __init__(
        self,
        metadata: SqlMetadataStore,
        run_id: RunId,
        *,
        total_steps: int,
        on_progress: Callable[[Progress], None],
        interval_s: float = 0.25,
    ) -> None:
        self.metadata = metadata
        self.run_id = run_id
        self.total_steps = total_steps
        self.on_progress = on_progress
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._last: Progress | None = None
        self._thread = threading.Thread(target=self._loop, name="fedloop-ddp-progress", daemon=True)

    def __enter__(self) -> ProgressWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.poll()

    def poll(self) -> Progress | None:
        """Read the latest metrics once; call ``on_progress`` when they changed."""
        try:
            latest = self.metadata.get_run(self.run_id).latest_metrics
        except StoreUnavailable:
            return self._last
        now = Progress(
            step=int(latest.get("step", 0)),
            total_steps=self.total_steps,
            epoch=int(latest.get("epoch", 0)),
            train_loss=latest.get("train_loss"),
            samples_per_s=latest.get("samples_per_s"),
            restarts=int(latest.get("restarts", 0)),
        )
        with self._lock:
            if now != self._last:
                self._last = now
                self.on_progress(now)
        return now

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()
