"""The tracking API for training code: runs, params, tags and buffered metric logging."""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from fedloop.core import (
    DatasetId,
    FedloopError,
    InvalidInput,
    RunId,
    StoreUnavailable,
    TrackingConfig,
)
from fedloop.store.metadata._common import check_key
from fedloop.store.metadata.records import MetricPoint, Run, StoredArtifact

if TYPE_CHECKING:
    from fedloop.store.artifacts import ArtifactStore
    from fedloop.store.metadata.sql import SqlMetadataStore

__all__ = ["ActiveRun", "start_run"]

_BACKPRESSURE_FACTOR = 10


class ActiveRun:
    """A run being recorded; metrics are buffered and written in batches.

    Metric calls validate their input at once (so mistakes surface at the call site) and
    return without touching the database; a background thread writes the buffer every
    ``flush_interval_ms`` or when ``max_buffered_points`` are pending. ``end()`` (or leaving
    the ``with`` block) writes everything that is left and sets the final status. If the
    store falls behind by ten buffers, callers wait for it rather than losing points.

    Parameters
    ----------
    store : SqlMetadataStore
        Where the run lives.
    run : Run
        The stored run record.
    artifacts : ArtifactStore or None
        Needed only for :meth:`log_artifact`.
    flush_interval_ms : int, default 500
        Longest time a point waits in the buffer.
    max_buffered_points : int, default 5000
        Buffer size that triggers a flush.
    """

    def __init__(
        self,
        store: SqlMetadataStore,
        run: Run,
        *,
        artifacts: ArtifactStore | None = None,
        flush_interval_ms: int = 500,
        max_buffered_points: int = 5_000,
        owns_store: bool = False,
    ) -> None:
        self.store = store
        self.run = run
        self.artifacts = artifacts
        self._flush_interval_s = flush_interval_ms / 1000
        self._max_points = max_buffered_points
        self._owns_store = owns_store
        self._buffer: list[tuple[RunId, MetricPoint]] = []
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._write_lock = threading.Lock()
        self._steps: dict[str, int] = {}
        self._closed = False
        self._last_error: FedloopError | None = None
        self._finalizer = weakref.finalize(self, ActiveRun._flush_at_exit, weakref.ref(self))

    # -- identity ------------------------------------------------------------------------------
    @property
    def id(self) -> RunId:
        """Return the run id."""
        return self.run.id

    @property
    def name(self) -> str:
        """Return the run name."""
        return self.run.name

    # -- params and tags (written at once) -------------------------------------------------
    def log_param(self, key: str, value: Any) -> None:
        """Record one hyperparameter (immutable once logged)."""
        self.store.log_params(self.id, {key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record hyperparameters (immutable once logged).

        Raises
        ------
        Conflict
            When a key was logged before with another value.
        """
        self.store.log_params(self.id, params)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set or overwrite tags."""
        self.store.set_tags(self.id, tags)

    # -- metrics (buffered) --------------------------------------------------------------------
    def log_metric(self, key: str, value: float, *, step: int | None = None) -> None:
        """Buffer one metric point.

        Parameters
        ----------
        key : str
            Metric name (letters, digits, spaces and ``_-./:``).
        value : float
            A finite number.
        step : int or None
            Training step; by default one more than this key's last step (0 first).

        Raises
        ------
        InvalidInput
            For a bad key, value or step (nothing is buffered).
        """
        self._append({key: value}, step)

    def log_metrics(self, values: Mapping[str, float], *, step: int | None = None) -> None:
        """Buffer several metric points at one step.

        Parameters
        ----------
        values : Mapping[str, float]
            Metric name -> finite value.
        step : int or None
            Training step; by default each key's next step.

        Raises
        ------
        InvalidInput
            For a bad key, value or step (nothing is buffered).
        """
        self._append(values, step)

    def _append(self, values: Mapping[str, float], step: int | None) -> None:
        if self._closed:
            raise InvalidInput(
                f"run {self.id} has ended; metrics can no longer be logged to it.",
                field="run",
                hint="Start a new run with fedloop.start_run().",
            )
        if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
            raise InvalidInput(
                f"`step` must be an int >= 0; got {step!r}.", field="step", value=step
            )
        now_ms = int(time.time() * 1000)
        points: list[tuple[RunId, MetricPoint]] = []
        for key, value in values.items():
            check_key(key, field="metrics")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                try:
                    value = float(value)  # numpy scalars, 0-d tensors
                except (TypeError, ValueError) as err:
                    raise InvalidInput(
                        f"metric {key!r} must be a number; got {type(value).__name__}.",
                        field=f"metrics.{key}",
                    ) from err
            if not math.isfinite(value):
                raise InvalidInput(
                    f"metric {key!r} must be finite; got {value!r}.",
                    field=f"metrics.{key}",
                    value=value,
                    hint="Check the training loop for divergence, or skip the point.",
                )
            s = step if step is not None else self._steps.get(key, -1) + 1
            points.append((self.id, MetricPoint(key, float(value), s, now_ms)))
        with self._lock:
            for _, p in points:
                self._steps[p.key] = max(self._steps.get(p.key, -1), p.step)
            was_empty = len(self._buffer) == 0
            self._buffer.extend(points)
            full = len(self._buffer) >= self._max_points
            if was_empty or full:
                _FLUSHER.schedule(self, delay_s=0.0 if full else self._flush_interval_s)
            while len(self._buffer) >= self._max_points * _BACKPRESSURE_FACTOR:
                self._drained.wait(timeout=1.0)

    def _background_flush(self) -> None:
        """Write the points on the shared flusher thread (when they are due)."""
        if self._closed:
            return  # end() writes the rest together with the final status
        try:
            self.flush()
        except FedloopError as err:  # raised by end(); StoreUnavailable keeps the points
            self._last_error = err
            _FLUSHER.schedule(self, delay_s=self._flush_interval_s)

    def flush(self) -> int:
        """Write all buffered points now.

        Returns
        -------
        int
            Points written.

        Raises
        ------
        StoreUnavailable
            When the store cannot take them (they stay buffered for the next try).
        """
        with self._write_lock:
            with self._lock:
                batch, self._buffer = self._buffer, []
            if not batch:
                return 0
            try:
                written = self.store.log_metric_points(batch)
            except StoreUnavailable:
                with self._lock:
                    self._buffer[:0] = batch
                raise
            with self._lock:
                if isinstance(self._last_error, StoreUnavailable):
                    self._last_error = None  # the retried points made it
                self._drained.notify_all()
            return written

    # -- artifacts -----------------------------------------------------------------------------
    def log_artifact(
        self, name: str, data: bytes | Path, *, media_type: str = "application/octet-stream"
    ) -> StoredArtifact:
        """Store bytes or a file in the artifact store and record it on the run.

        Raises
        ------
        InvalidInput
            When the run has no artifact store.
        """
        if self.artifacts is None:
            raise InvalidInput(
                "this run was started without an artifact store.",
                field="artifacts",
                hint="Pass artifacts= to start_run (open_workspace() gives you one).",
            )
        ref = (
            self.artifacts.put_file(data)
            if isinstance(data, Path)
            else self.artifacts.put_bytes(bytes(data))
        )
        return self.store.record_artifact(
            self.id, name, digest=ref.digest, size_bytes=ref.size_bytes, media_type=media_type
        )

    # -- end -------------------------------------------------------------------------------------
    def end(self, status: str = "finished", *, error: str | None = None) -> None:
        """Write what is buffered and set the final status (idempotent).

        Parameters
        ----------
        status : {"finished", "failed", "killed"}
            Final status.
        error : str or None
            Why it failed.

        Raises
        ------
        StoreUnavailable
            When the remaining points cannot be written.
        FedloopError
            The error of a background flush that failed (the run is then marked failed).
        """
        if self._closed:
            return
        self._closed = True
        _FLUSHER.cancel(self)
        with self._write_lock, self._lock:
            rest, self._buffer = self._buffer, []
        failed_flush, self._last_error = self._last_error, None
        if isinstance(failed_flush, StoreUnavailable):
            failed_flush = None  # its points stayed buffered and go out with the status now
        if failed_flush is not None and status == "finished":
            status, error = "failed", f"metric points were lost: {failed_flush.message}"
        try:
            self.store.set_run_status(self.id, status, error=error, final_points=rest)
        except StoreUnavailable:
            with self._lock:  # keep everything so that end() can be called again
                self._buffer[:0] = rest
            self._last_error, self._closed = failed_flush, False
            raise
        except BaseException:
            self._release()
            raise
        self._release()
        if failed_flush is not None:
            raise failed_flush

    def _release(self) -> None:
        self._finalizer.detach()
        if self._owns_store:
            self.store.close()

    @staticmethod
    def _flush_at_exit(ref: weakref.ref[ActiveRun]) -> None:
        run = ref()
        if run is not None and not run._closed:
            run.end("killed", error="the process exited without ending the run")

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.end("finished")
        elif isinstance(exc, KeyboardInterrupt):
            self.end("killed", error="interrupted")
        else:
            self.end("failed", error=f"{type(exc).__name__}: {exc}")

    def __repr__(self) -> str:
        return f"ActiveRun(id={self.id!r}, name={self.name!r})"


class _Flusher:
    """One daemon thread per process that writes every run's buffered points when due."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[ActiveRun, float] = {}
        self._thread: threading.Thread | None = None

    def schedule(self, run: ActiveRun, *, delay_s: float) -> None:
        """Ask for ``run`` to be flushed within ``delay_s`` seconds."""
        when = time.monotonic() + delay_s
        with self._cond:
            if run in self._due and self._due[run] <= when:
                return
            self._due[run] = when
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="fedloop-tracking-flusher", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def cancel(self, run: ActiveRun) -> None:
        """Forget ``run`` (it is ending and flushes itself)."""
        with self._cond:
            self._due.pop(run, None)

    def _loop(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                ready = [run for run, when in self._due.items() if when <= now]
                if not ready:
                    wait = min(self._due.values(), default=now + 60.0) - now
                    self._cond.wait(timeout=max(wait, 0.001))
                    continue
                for run in ready:
                    del self._due[run]
            for run in ready:
                run._background_flush()


_FLUSHER = _Flusher()


def start_run(
    name: str | None = None,
    *,
    kind: str = "local",
    project: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    parent_run_id: RunId | None = None,
    dataset_ids: Sequence[tuple[DatasetId, str]] = (),
    store: SqlMetadataStore | None = None,
    artifacts: ArtifactStore | None = None,
    tracking: TrackingConfig | None = None,
) -> ActiveRun:
    """Start recording a run; use it as a context manager.

    Without ``store``, the store of the current directory's project is opened
    (fedloop.toml and ``FEDLOOP_*`` variables apply, SQLite under ``.fedloop/`` by default).

    Parameters
    ----------
    name : str or None
        Display name.
    kind : {"local", "federated", "data-parallel"}
        What produces the run.
    project : str or None
        Project name; the configured project by default.
    params, tags : Mapping or None
        Initial hyperparameters and labels.
    parent_run_id : RunId or None
        Enclosing run.
    dataset_ids : sequence of (DatasetId, role)
        Data sets used.
    store : SqlMetadataStore or None
        Metadata store to write to.
    artifacts : ArtifactStore or None
        Artifact store for :meth:`ActiveRun.log_artifact`.
    tracking : TrackingConfig or None
        Buffering settings; the project's ``[tracking]`` section when the store is opened here,
        else the defaults.

    Returns
    -------
    ActiveRun
        The running run.

    Example
    -------
    >>> with start_run("baseline", params={"lr": 0.05}) as run:  # doctest: +SKIP
    ...     for step in range(100):
    ...         run.log_metric("loss", 1 / (step + 1), step=step)
    """
    owns = False
    if store is None:
        import os

        from fedloop.store.workspace import load_config, open_workspace

        resolved = load_config(cwd=Path.cwd(), environ=os.environ, overrides={})
        ws = open_workspace(resolved.config)
        store, owns = ws.metadata, True
        artifacts = artifacts or ws.artifacts
        project = project or resolved.config.project.name
        tracking = tracking or resolved.config.tracking
    tracking = tracking or TrackingConfig()
    proj = store.ensure_project(project or "default")
    run = store.create_run(
        proj.id,
        name=name,
        kind=kind,
        params=params,
        tags=tags,
        parent_run_id=parent_run_id,
        dataset_ids=dataset_ids,
    )
    return ActiveRun(
        store,
        run,
        artifacts=artifacts,
        flush_interval_ms=tracking.flush_interval_ms,
        max_buffered_points=tracking.max_buffered_points,
        owns_store=owns,
    )
