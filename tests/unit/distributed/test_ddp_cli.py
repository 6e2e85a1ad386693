"""`fedloop train`: progress, the result table, and clear errors for bad input (exit codes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from _ddp import InProcessLauncher
from typer.testing import CliRunner

import fedloop.distributed.training as training
from fedloop.cli.app import app
from fedloop.core import ConfigError, DistributedConfig, FedloopError, RendezvousError, resolve
from fedloop.store import open_workspace


def _store(root: Path) -> list[str]:
    return [
        "--store-url",
        f"sqlite:///{root / '.fedloop' / 'fedloop.db'}",
        "--artifacts-url",
        str(root / ".fedloop" / "artifacts"),
    ]


def _runs(root: Path) -> list[str]:
    db = root / ".fedloop" / "fedloop.db"
    if not db.exists():
        return []
    config = resolve({"store": {"url": f"sqlite:///{db}"}}, {}, {}).config
    with open_workspace(config) as ws:
        return [r.status for r in ws.metadata.search_runs(ws.project.id)]


def test_train_runs_and_registers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`fedloop train --workers 1` trains, prints the run's table and registers fraud-ddp."""
    # Arrange
    monkeypatch.chdir(tmp_path)

    def make(config: DistributedConfig, *, work_dir: Path) -> InProcessLauncher:
        assert config.workers == 1
        assert config.checkpoint_every_steps == 7
        return InProcessLauncher()

    monkeypatch.setattr(training, "make_launcher", make)
    args = [*_store(tmp_path), "train", "--workers", "1", "--rows", "2000", "--epochs", "1"]

    # Act
    result = CliRunner().invoke(app, [*args, "--checkpoint-every", "7"])

    # Assert
    assert result.exit_code == 0, result.output
    assert "Data-parallel run" in result.output
    assert "Registered fraud-ddp v1" in result.output
    assert _runs(tmp_path) == ["finished"]


@pytest.mark.parametrize(
    ("argv", "error", "field"),
    [
        pytest.param(["--workers", "0"], ConfigError, "distributed.workers", id="zero-workers"),
        pytest.param(["--workers", "5000"], ConfigError, "distributed.workers", id="too-many"),
        pytest.param(["--backend", "mpi"], ConfigError, "distributed.backend", id="backend"),
        pytest.param(
            ["--rendezvous", "192.0.2.1:29400"],
            RendezvousError,
            "distributed.rendezvous",
            id="unreachable-rendezvous",
        ),
    ],
)
def test_bad_options_are_typed_errors_and_record_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    error: type[FedloopError],
    field: str,
) -> None:
    """A bad worker count or backend, or an unreachable rendezvous: its error, no run recorded."""
    # Arrange
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FEDLOOP_DISTRIBUTED__RENDEZVOUS_TIMEOUT_S", "1")

    # Act
    result = CliRunner().invoke(app, [*_store(tmp_path), "train", "--rows", "1000", *argv])

    # Assert
    assert isinstance(result.exception, error), result.output
    assert result.exception.field == field
    assert _runs(tmp_path) == []


def test_an_unknown_scenario_is_a_usage_error(tmp_path: Path) -> None:
    """--scenario must name a known flow (exit 2, click's usage error)."""
    # Act
    result = CliRunner().invoke(app, [*_store(tmp_path), "train", "--scenario", "nope"])

    # Assert
    assert result.exit_code == 2
    assert "unknown scenario" in result.output


def test_the_shell_renders_a_rendezvous_error_with_its_exit_code(tmp_path: Path) -> None:
    """`fedloop train` prints one headline and a hint, no traceback, and exits 11."""
    # Arrange
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDLOOP_")}
    env["FEDLOOP_DISTRIBUTED__RENDEZVOUS_TIMEOUT_S"] = "1"
    argv = ["train", "--rows", "1000", "--rendezvous", "192.0.2.1:29400"]

    # Act
    done = subprocess.run(
        [sys.executable, "-m", "fedloop.cli", *_store(tmp_path), *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    # Assert
    assert done.returncode == RendezvousError.exit_code == 11
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("Error (rendezvous_error): the rendezvous at")
    assert any(line.startswith("Hint:") for line in lines)
    assert "Traceback" not in done.stderr
