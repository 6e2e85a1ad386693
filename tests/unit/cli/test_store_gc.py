"""`fedloop store gc`: orphaned artifacts and crash leftovers go, referenced ones stay."""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _cli import sigmoid_graph, store_args
from typer.testing import CliRunner, Result

from fedloop.cli import app
from fedloop.core import resolve
from fedloop.registry import ModelRegistry, read_package
from fedloop.store import open_workspace

MODEL = "fraud"
ORPHAN = b"weights uploaded by a registration whose row was never written"
PARTIAL = b"half of an upload, left by a hard crash"
TWO_HOURS_S = 2 * 3600


@dataclass(frozen=True)
class Garbage:
    """A project with a registered model, one orphaned artifact and one tmp/ leftover."""

    root: Path
    orphan_digest: str
    orphan_path: Path
    partial_path: Path

    @property
    def artifacts(self) -> Path:
        """Return the artifact store folder."""
        return self.root / ".fedloop" / "artifacts"

    @property
    def store_args(self) -> list[str]:
        """Return the global flags that point the CLI at this store."""
        return store_args(self.root)


def _age_everything(folder: Path, seconds: float) -> None:
    """Set the mtime of every file under ``folder`` to ``seconds`` ago."""
    then = time.time() - seconds
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, (then, then))


@pytest.fixture
def garbage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Garbage:
    """Return a project whose artifacts are all two hours old: fraud v1 plus garbage."""
    monkeypatch.chdir(tmp_path)
    config = resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as ws:
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        registry.register(
            MODEL, weights={"w": np.arange(4, dtype=np.float32)}, onnx_model=sigmoid_graph()
        )
        orphan = ws.artifacts.put_bytes(ORPHAN)
    artifacts = tmp_path / ".fedloop" / "artifacts"
    partial = artifacts / "tmp" / uuid.uuid4().hex
    partial.write_bytes(PARTIAL)
    _age_everything(artifacts, TWO_HOURS_S)
    return Garbage(
        root=tmp_path,
        orphan_digest=orphan.digest,
        orphan_path=Path(orphan.uri.removeprefix("file://")),
        partial_path=partial,
    )


@pytest.fixture
def runner() -> CliRunner:
    """Return a typer test runner."""
    return CliRunner()


def _invoke(runner: CliRunner, garbage: Garbage, *args: str) -> Result:
    return runner.invoke(app, [*garbage.store_args, *args])


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _gc_events(runner: CliRunner, garbage: Garbage) -> list[Any]:
    return list(
        _json(_invoke(runner, garbage, "audit", "list", "--kind", "store.gc", "-f", "json"))
    )


def test_gc_dry_run_lists_garbage_and_deletes_nothing(runner: CliRunner, garbage: Garbage) -> None:
    """`store gc --dry-run -f json` names the orphan and the leftover, and both stay."""
    # Act
    data = _json(_invoke(runner, garbage, "store", "gc", "--dry-run", "--format", "json"))

    # Assert
    assert data["dry_run"] is True
    assert data["digests"] == [garbage.orphan_digest]
    assert (data["blobs_deleted"], data["tmp_deleted"]) == (1, 1)
    assert data["bytes_freed"] == len(ORPHAN) + len(PARTIAL)
    assert data["kept_referenced"] == 2  # the version's weights and ONNX graph
    assert garbage.orphan_path.is_file()
    assert garbage.partial_path.is_file()
    assert _gc_events(runner, garbage) == []


def test_gc_deletes_garbage_and_keeps_model(
    runner: CliRunner, garbage: Garbage, tmp_path: Path
) -> None:
    """`store gc` removes the orphan and the leftover; the model still exports and verifies."""
    # Act
    data = _json(_invoke(runner, garbage, "store", "gc", "--format", "json"))

    # Assert
    assert (data["dry_run"], data["digests"], data["tmp_deleted"]) == (
        False,
        [garbage.orphan_digest],
        1,
    )
    assert not garbage.orphan_path.exists()
    assert not garbage.partial_path.exists()
    exported = _invoke(runner, garbage, "models", "export", f"{MODEL}:1", str(tmp_path / "pkg"))
    assert exported.exit_code == 0, exported.output
    package = read_package(tmp_path / "pkg")
    np.testing.assert_array_equal(package.weights["w"], np.arange(4, dtype=np.float32))
    verified = _invoke(runner, garbage, "audit", "verify")
    assert verified.exit_code == 0, verified.output


def test_gc_appends_audit_event_with_counts(runner: CliRunner, garbage: Garbage) -> None:
    """A collection that deleted something leaves one store.gc event with its counts."""
    # Act
    _json(_invoke(runner, garbage, "store", "gc", "-f", "json"))

    # Assert
    (event,) = _gc_events(runner, garbage)
    assert event["actor"] == "cli"
    assert event["payload"]["blobs_deleted"] == 1
    assert event["payload"]["tmp_deleted"] == 1
    assert event["payload"]["bytes_freed"] == len(ORPHAN) + len(PARTIAL)
    assert event["payload"]["digests"] == [garbage.orphan_digest]


def test_gc_with_nothing_to_delete_appends_no_event(runner: CliRunner, garbage: Garbage) -> None:
    """A second collection finds nothing and writes no second event."""
    # Arrange
    _json(_invoke(runner, garbage, "store", "gc", "-f", "json"))

    # Act
    data = _json(_invoke(runner, garbage, "store", "gc", "-f", "json"))

    # Assert
    assert (data["blobs_deleted"], data["tmp_deleted"], data["bytes_freed"]) == (0, 0, 0)
    assert len(_gc_events(runner, garbage)) == 1


def test_gc_keeps_garbage_younger_than_min_age(runner: CliRunner, garbage: Garbage) -> None:
    """With --min-age-s above the garbage's age, nothing is deleted."""
    # Act
    data = _json(
        _invoke(runner, garbage, "store", "gc", "--min-age-s", str(3 * 3600), "-f", "json")
    )

    # Assert
    assert (data["blobs_deleted"], data["tmp_deleted"], data["kept_young"]) == (0, 0, 2)
    assert garbage.orphan_path.is_file()
    assert garbage.partial_path.is_file()


def test_gc_table_reports_counts(runner: CliRunner, garbage: Garbage) -> None:
    """`store gc --dry-run` prints a table that says nothing was deleted."""
    # Act
    result = _invoke(runner, garbage, "store", "gc", "--dry-run")

    # Assert
    assert result.exit_code == 0, result.output
    assert "dry run: nothing deleted" in result.stdout
    assert "artifacts to delete" in result.stdout
    assert garbage.orphan_path.is_file()


def test_gc_keeps_federated_round_checkpoints(
    runner: CliRunner, garbage: Garbage, tmp_path: Path
) -> None:
    """A federated round's global model and strategy state are referenced, so they stay."""
    # Arrange
    config = resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as ws:
        run = ws.metadata.create_run(ws.project.id, kind="federated")
        model, state = ws.artifacts.put_bytes(b"global model"), ws.artifacts.put_bytes(b"state")
        ws.metadata.record_fl_round(
            run.id,
            0,
            status="completed",
            parameters_digest=model.digest,
            state_digest=state.digest,
            clients=[],
            seconds=0.0,
            metrics={},
        )
    _age_everything(garbage.artifacts, TWO_HOURS_S)

    # Act
    data = _json(_invoke(runner, garbage, "store", "gc", "-f", "json"))

    # Assert
    assert data["digests"] == [garbage.orphan_digest]
    assert Path(model.uri.removeprefix("file://")).is_file()
    assert Path(state.uri.removeprefix("file://")).is_file()


def test_gc_refuses_negative_min_age(runner: CliRunner, garbage: Garbage) -> None:
    """A negative --min-age-s is a usage error (exit 2) naming the option; nothing is deleted."""
    # Act
    result = _invoke(runner, garbage, "store", "gc", "--min-age-s", "-1")

    # Assert
    assert result.exit_code == 2
    assert "--min-age-s" in result.output
    assert garbage.orphan_path.is_file()
    assert garbage.partial_path.is_file()
