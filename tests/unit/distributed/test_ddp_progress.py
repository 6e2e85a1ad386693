"""Progress: rank 0's step file and metrics, and the driver's watcher of them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _ddp import config_for

from fedloop.core import RunId
from fedloop.distributed import Progress, ProgressWatcher, StepReporter, read_step_file
from fedloop.store import Workspace, open_workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """Return an empty project."""
    with open_workspace(config_for(tmp_path)) as ws:
        yield ws


def _run(ws: Workspace) -> RunId:
    return ws.metadata.create_run(ws.project.id, name="ddp", kind="data-parallel").id


def test_reporter_writes_every_step_to_the_file_and_metrics_when_due(
    workspace: Workspace, tmp_path: Path
) -> None:
    """Each step lands in the step file; a report writes step, epoch, loss and throughput."""
    # Arrange
    run_id = _run(workspace)
    reporter = StepReporter(
        workspace.metadata,
        run_id,
        step=10,
        samples_per_step=64,
        interval_s=3600,
        step_file=tmp_path / "progress",
    )
    reporter.epoch = 1

    # Act
    for i in range(5):
        reporter.on_step(i, 0.5)
    on_file = read_step_file(tmp_path / "progress")
    time.sleep(0.01)
    reporter.report(checkpoint_step=15.0)
    reporter.close()

    # Assert
    assert on_file is not None
    assert on_file[:2] == (15, 1)
    latest = workspace.metadata.get_run(run_id).latest_metrics
    assert latest["step"] == 15
    assert latest["epoch"] == 1
    assert latest["train_loss"] == pytest.approx(0.5)
    assert latest["checkpoint_step"] == 15
    assert latest["samples_per_s"] > 0


def test_reporter_reports_on_its_own_when_the_interval_passed(workspace: Workspace) -> None:
    """With a zero interval every step is reported (no step file needed)."""
    # Arrange
    run_id = _run(workspace)
    reporter = StepReporter(workspace.metadata, run_id, step=0, samples_per_step=1, interval_s=0)

    # Act
    reporter.on_step(1, 0.25)
    reporter.close()

    # Assert
    assert workspace.metadata.get_run(run_id).latest_metrics["step"] == 1


@pytest.mark.parametrize(
    "content", [pytest.param(None, id="missing"), pytest.param(b"\x01\x02", id="short")]
)
def test_a_missing_or_short_step_file_reads_as_none(tmp_path: Path, content: bytes | None) -> None:
    """No step file, or a torn one, is no progress."""
    # Arrange
    path = tmp_path / "progress"
    if content is not None:
        path.write_bytes(content)

    # Act / Assert
    assert read_step_file(path) is None


def test_watcher_calls_back_on_new_progress(workspace: Workspace) -> None:
    """The watcher turns rank 0's latest metrics into Progress, once per change."""
    # Arrange
    run_id = _run(workspace)
    seen: list[Progress] = []
    reporter = StepReporter(workspace.metadata, run_id, step=0, samples_per_step=8, interval_s=1e9)

    # Act
    with ProgressWatcher(
        workspace.metadata, run_id, total_steps=100, on_progress=seen.append, interval_s=0.01
    ) as watcher:
        first = watcher.poll()
        reporter.on_step(1, 0.5)
        reporter.report(restarts=1.0)
        deadline = time.monotonic() + 5
        while not any(p.step == 1 for p in seen) and time.monotonic() < deadline:
            time.sleep(0.01)
        again = watcher.poll()

    # Assert
    assert first is not None
    assert seen[0] == first
    assert first.step == 0
    assert seen[-1] == Progress(
        step=1, total_steps=100, epoch=0, train_loss=0.5, samples_per_s=seen[-1].samples_per_s,
        restarts=1,
    )  # fmt: skip
    assert again == seen[-1]
    assert len(seen) == 2
