"""The tracking API: start_run, buffered metrics, final status and the default store."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pytest

import fedloop
from fedloop.core import Conflict, FedloopError, InvalidInput, RunId, StoreUnavailable
from fedloop.store import ActiveRun, MetricPoint, SqlMetadataStore, start_run


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlMetadataStore]:
    """Return a SQLite store in a temporary folder."""
    opened = SqlMetadataStore(f"sqlite:///{tmp_path / 'tracking.db'}")
    yield opened
    opened.close()


@pytest.fixture
def slow_run(store: SqlMetadataStore) -> Iterator[ActiveRun]:
    """Return an active run whose background flush waits ten minutes."""
    project = store.ensure_project("demo")
    active = ActiveRun(store, store.create_run(project.id), flush_interval_ms=600_000)
    yield active
    active.end()


def _open(path: Path) -> SqlMetadataStore:
    return SqlMetadataStore(f"sqlite:///{path}")


def _wait_for_points(store: SqlMetadataStore, run: ActiveRun, key: str, count: int) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = len(store.get_metric_history(run.id, key))
        if found >= count:
            return found
        time.sleep(0.02)
    return len(store.get_metric_history(run.id, key))


def test_start_run_records_params(store: SqlMetadataStore) -> None:
    """Params given to start_run and logged inside the block are stored."""
    # Act
    with start_run("baseline", store=store, params={"lr": 0.05}) as run:
        run.log_param("epochs", 3)
        run.log_params({"optimizer": "sgd"})

    # Assert
    assert store.get_run(run.id).params == {"lr": "0.05", "epochs": "3", "optimizer": "sgd"}


def test_start_run_records_tags(store: SqlMetadataStore) -> None:
    """Tags given to start_run and set inside the block are stored."""
    # Act
    with start_run(store=store, tags={"team": "risk"}) as run:
        run.set_tags({"stage": "dev"})

    # Assert
    assert store.get_run(run.id).tags == {"team": "risk", "stage": "dev"}


def test_log_param_cannot_change(store: SqlMetadataStore) -> None:
    """A param logged twice with different values raises Conflict."""
    # Act / Assert
    with start_run(store=store, params={"lr": 0.05}) as run, pytest.raises(Conflict) as info:
        run.log_param("lr", 0.1)
    assert info.value.field == "params.lr"


def test_metrics_without_step_get_next_step(store: SqlMetadataStore) -> None:
    """A metric logged without a step gets one more than its key's last step."""
    # Act
    with start_run(store=store) as run:
        run.log_metric("loss", 0.9)
        run.log_metric("loss", 0.5)
        run.log_metric("loss", 0.4, step=10)
        run.log_metric("loss", 0.3)
        run.log_metrics({"acc": 0.7})

    # Assert
    assert [p.step for p in store.get_metric_history(run.id, "loss")] == [0, 1, 10, 11]
    assert [p.step for p in store.get_metric_history(run.id, "acc")] == [0]


def test_log_metrics_writes_all_keys_at_one_step(store: SqlMetadataStore) -> None:
    """log_metrics with a step stores every key at that step."""
    # Act
    with start_run(store=store) as run:
        run.log_metrics({"loss": 0.3, "auc": 0.9}, step=7)

    # Assert
    assert store.get_run(run.id).latest_metrics == {"loss": 0.3, "auc": 0.9}
    assert [p.step for p in store.get_metric_history(run.id, "auc")] == [7]


def test_clean_exit_marks_run_finished(store: SqlMetadataStore) -> None:
    """Leaving the block normally marks the run finished."""
    # Act
    with start_run(store=store) as run:
        pass

    # Assert
    loaded = store.get_run(run.id)
    assert (loaded.status, loaded.error) == ("finished", None)
    assert loaded.ended_at is not None


def test_exception_marks_run_failed_and_propagates(store: SqlMetadataStore) -> None:
    """An exception in the block marks the run failed with the error text and is re-raised."""
    # Act
    with pytest.raises(RuntimeError, match=r"diverged"), start_run(store=store) as run:  # noqa: PT012
        run.log_metric("loss", 1.0)
        raise RuntimeError("diverged")

    # Assert
    loaded = store.get_run(run.id)
    assert loaded.status == "failed"
    assert loaded.error == "RuntimeError: diverged"
    assert [p.value for p in store.get_metric_history(run.id, "loss")] == [1.0]


def test_keyboard_interrupt_marks_run_killed(store: SqlMetadataStore) -> None:
    """A KeyboardInterrupt in the block marks the run killed."""
    # Act
    with pytest.raises(KeyboardInterrupt), start_run(store=store) as run:
        raise KeyboardInterrupt

    # Assert
    assert store.get_run(run.id).status == "killed"


def test_metrics_are_buffered(store: SqlMetadataStore, slow_run: ActiveRun) -> None:
    """Logged points are not in the database before a flush."""
    # Act
    slow_run.log_metric("loss", 0.5)
    slow_run.log_metric("loss", 0.4)

    # Assert
    assert store.get_metric_history(slow_run.id, "loss") == []


def test_end_writes_buffered_points(store: SqlMetadataStore, slow_run: ActiveRun) -> None:
    """end() writes every buffered point and sets the status."""
    # Arrange
    for step in range(50):
        slow_run.log_metric("loss", 1 / (step + 1))

    # Act
    slow_run.end()

    # Assert
    assert [p.step for p in store.get_metric_history(slow_run.id, "loss")] == list(range(50))
    assert store.get_run(slow_run.id).status == "finished"


def test_flush_writes_buffered_points(store: SqlMetadataStore, slow_run: ActiveRun) -> None:
    """flush() writes the buffer at once and returns how many points it wrote."""
    # Arrange
    slow_run.log_metrics({"loss": 0.5, "auc": 0.8})

    # Act
    written = slow_run.flush()

    # Assert
    assert written == 2
    assert store.get_run(slow_run.id).latest_metrics == {"loss": 0.5, "auc": 0.8}
    assert slow_run.flush() == 0


def test_full_buffer_is_flushed_in_background(store: SqlMetadataStore) -> None:
    """Reaching max_buffered_points wakes the background writer before the interval."""
    # Arrange
    project = store.ensure_project("demo")
    run = ActiveRun(
        store, store.create_run(project.id), flush_interval_ms=600_000, max_buffered_points=5
    )

    # Act
    for step in range(5):
        run.log_metric("loss", 0.1, step=step)
    written = _wait_for_points(store, run, "loss", 5)
    run.end()

    # Assert
    assert written == 5


class _FailingOnceStore(SqlMetadataStore):
    """A real store whose first metric write fails with a given error."""

    def __init__(self, url: str, error: FedloopError) -> None:
        super().__init__(url)
        self.error = error
        self.metric_calls = 0

    def log_metric_points(self, points: Iterable[tuple[RunId, MetricPoint]]) -> int:
        self.metric_calls += 1
        if self.metric_calls == 1:
            raise self.error
        return super().log_metric_points(points)


def _run_with_failed_background_flush(tmp_path: Path, error: FedloopError) -> ActiveRun:
    store = _FailingOnceStore(f"sqlite:///{tmp_path / 'failing.db'}", error)
    project = store.ensure_project("demo")
    run = ActiveRun(store, store.create_run(project.id), flush_interval_ms=10, owns_store=True)
    run.log_metric("loss", 0.5)
    deadline = time.monotonic() + 10
    while store.metric_calls == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    return run


def test_retryable_background_flush_error_keeps_points(tmp_path: Path) -> None:
    """Points whose background write hit StoreUnavailable are written later."""
    # Arrange
    run = _run_with_failed_background_flush(tmp_path, StoreUnavailable("locked"))

    # Act
    run.end()

    # Assert
    with _open(tmp_path / "failing.db") as check:
        assert [p.value for p in check.get_metric_history(run.id, "loss")] == [0.5]
        assert check.get_run(run.id).status == "finished"


def test_background_flush_error_is_raised_by_end(tmp_path: Path) -> None:
    """A non-retryable error of the background writer is raised by end(), not lost."""
    # Arrange
    run = _run_with_failed_background_flush(tmp_path, Conflict("simulated failure"))

    # Act / Assert
    with pytest.raises(Conflict, match=r"simulated failure"):
        run.end()


def test_logging_after_end_raises_invalid_input(store: SqlMetadataStore) -> None:
    """A metric logged after end() is refused."""
    # Arrange
    with start_run(store=store) as run:
        pass

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"has ended") as info:
        run.log_metric("loss", 0.1)
    assert info.value.field == "run"


def test_end_is_idempotent(store: SqlMetadataStore) -> None:
    """A second end() changes nothing."""
    # Arrange
    with start_run(store=store) as run:
        pass

    # Act
    run.end("failed", error="late")

    # Assert
    assert store.get_run(run.id).status == "finished"


@pytest.mark.parametrize(
    ("key", "value", "step", "field"),
    [
        pytest.param("loss", math.nan, None, "metrics.loss", id="nan"),
        pytest.param("loss", math.inf, None, "metrics.loss", id="inf"),
        pytest.param("loss", "high", None, "metrics.loss", id="text"),
        pytest.param("loss", None, None, "metrics.loss", id="none"),
        pytest.param("loss$", 0.5, None, "metrics", id="bad-key"),
        pytest.param("loss", 0.5, -1, "step", id="negative-step"),
        pytest.param("loss", 0.5, 1.5, "step", id="float-step"),
        pytest.param("loss", 0.5, True, "step", id="bool-step"),
    ],
)
def test_bad_metric_raises_at_call_site(
    store: SqlMetadataStore,
    slow_run: ActiveRun,
    key: str,
    value: object,
    step: object,
    field: str,
) -> None:
    """A bad metric raises InvalidInput from log_metric and buffers nothing."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        slow_run.log_metric(key, value, step=step)  # type: ignore[arg-type]
    assert info.value.field == field
    assert slow_run.flush() == 0


def test_numpy_scalar_metric_is_accepted(store: SqlMetadataStore) -> None:
    """A numpy scalar is stored as a float."""
    # Act
    with start_run(store=store) as run:
        run.log_metric("loss", np.float32(0.25))

    # Assert
    assert store.get_run(run.id).latest_metrics == {"loss": 0.25}


def test_start_run_without_store_uses_cwd_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """start_run() with no store writes to .fedloop/fedloop.db in the working directory."""
    # Arrange
    monkeypatch.chdir(tmp_path)

    # Act
    with fedloop.start_run(name="cwd-run") as run:
        run.log_metric("loss", 0.5)

    # Assert
    db = tmp_path / ".fedloop" / "fedloop.db"
    assert db.is_file()
    with _open(db) as store:
        loaded = store.get_run(run.id)
        assert (loaded.name, loaded.status) == ("cwd-run", "finished")
        assert loaded.project_id == store.get_project("default").id
        assert loaded.latest_metrics == {"loss": 0.5}


def test_start_run_without_store_uses_configured_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The project name comes from fedloop.toml in the working directory."""
    # Arrange
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fedloop.toml").write_text('[project]\nname = "fraud"\n', encoding="utf-8")

    # Act
    with fedloop.start_run() as run:
        pass

    # Assert
    with _open(tmp_path / ".fedloop" / "fedloop.db") as store:
        assert store.get_run(run.id).project_id == store.get_project("fraud").id


def test_store_url_env_var_redirects_default_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FEDLOOP_STORE_URL sends start_run() to another database."""
    # Arrange
    other = tmp_path / "elsewhere" / "other.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEDLOOP_STORE_URL", f"sqlite:///{other}")

    # Act
    with fedloop.start_run(name="redirected") as run:
        pass

    # Assert
    assert not (tmp_path / ".fedloop" / "fedloop.db").exists()
    with _open(other) as store:
        assert store.get_run(run.id).name == "redirected"


def test_exit_without_end_flushes_points_and_marks_run_killed(tmp_path: Path) -> None:
    """A process that exits without end() still writes its points and marks the run killed."""
    # Arrange
    script = textwrap.dedent(
        """
        import fedloop

        run = fedloop.start_run(name="orphan")
        for step in range(3):
            run.log_metric("loss", 1.0 / (step + 1))
        print(run.id)
        """
    )

    # Act
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Assert
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.strip().splitlines()[-1]
    with _open(tmp_path / ".fedloop" / "fedloop.db") as store:
        loaded = store.get_run(run_id)  # type: ignore[arg-type]
        assert loaded.status == "killed"
        assert loaded.error is not None
        assert [p.step for p in store.get_metric_history(loaded.id, "loss")] == [0, 1, 2]
