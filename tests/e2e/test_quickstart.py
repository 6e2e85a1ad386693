"""End to end: `fedloop quickstart` as a real process, checked through the Python API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fedloop.core import resolve
from fedloop.registry import ModelRegistry
from fedloop.store import Workspace, open_workspace

MODEL = "fraud-detector"
QUICKSTART = ("quickstart", "--rows", "4000", "--epochs", "1")
OPTIONAL_HEAVY = {"ray", "psycopg", "s3fs"}


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FEDLOOP_")}


def _quickstart(cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m fedloop.cli quickstart`` (small) in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "fedloop.cli", *QUICKSTART],
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _workspace(root: Path) -> Workspace:
    return open_workspace(resolve({"project": {"dir": str(root / ".fedloop")}}, {}, {}).config)


@dataclass(frozen=True)
class Done:
    """A project folder after quickstart, and how the process ended."""

    root: Path
    process: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Done:
    """Run quickstart once in a fresh folder (shared by the read-only tests of this module)."""
    root = tmp_path_factory.mktemp("quickstart")
    return Done(root=root, process=_quickstart(root))


@pytest.fixture
def ws(first: Done) -> Iterator[Workspace]:
    """Return the workspace the first quickstart wrote."""
    with _workspace(first.root) as opened:
        yield opened


@pytest.fixture
def registry(ws: Workspace) -> ModelRegistry:
    """Return the registry of the first quickstart's workspace."""
    return ModelRegistry(ws.metadata, ws.artifacts, ws.project)


def test_quickstart_exits_0(first: Done) -> None:
    """The quickstart process exits 0 and reports the registered version."""
    # Assert
    assert first.process.returncode == 0, first.process.stderr
    assert f"Registered {MODEL} v1" in first.process.stdout
    assert "Traceback" not in first.process.stderr


def test_quickstart_registers_champion(registry: ModelRegistry) -> None:
    """The first quickstart registers version 1 and makes it champion."""
    # Act
    champion = registry.get(f"{MODEL}@champion")

    # Assert
    assert champion.version == 1
    assert [v.version for v in registry.list_versions(MODEL)] == [1]
    assert set(champion.metrics) >= {"auc", "average_precision", "log_loss"}


def test_quickstart_run_is_finished_with_loss_history(ws: Workspace) -> None:
    """The training run finished and logged one train_loss point per step (>= 50)."""
    # Act
    (run,) = ws.metadata.search_runs(ws.project.id)

    # Assert
    assert run.status == "finished"
    assert len(ws.metadata.get_metric_history(run.id, "train_loss")) >= 50
    assert "test_auc" in run.latest_metrics


def test_quickstart_lineage_has_run_and_two_datasets(registry: ModelRegistry) -> None:
    """The version's lineage names its run and the train and eval data sets."""
    # Act
    info = registry.lineage(MODEL, 1).to_dict()

    # Assert
    assert info["run"]["status"] == "finished"
    assert sorted(d["role"] for d in info["datasets"]) == ["eval", "train"]
    assert all(len(d["fingerprint"]) == 64 for d in info["datasets"])


def test_quickstart_leaves_intact_audit_log(ws: Workspace) -> None:
    """The audit log verifies and records the registration and the promotion."""
    # Act
    report = ws.metadata.verify_audit()

    # Assert
    assert report.ok
    kinds = [e.kind for e in ws.metadata.list_events()]
    assert "model.version_registered" in kinds
    assert "model.alias_moved" in kinds


def test_quickstart_onnx_matches_registered_signature(registry: ModelRegistry) -> None:
    """The champion's graph and weights load back intact with a 30-feature signature."""
    # Act
    package = registry.package(f"{MODEL}@champion")

    # Assert
    assert package.signature.inputs[0].shape == (None, 30)
    assert next(iter(package.weights)) == "0.weight"


def test_second_quickstart_warm_starts_from_champion(first: Done, tmp_path: Path) -> None:
    """Run again in the same project: version 2's parent is v1 and it gets champion or challenger."""
    # Arrange
    root = tmp_path / "again"
    shutil.copytree(first.root, root)

    # Act
    done = _quickstart(root)

    # Assert
    assert done.returncode == 0, done.stderr
    assert "Warm start from" in done.stdout
    with _workspace(root) as ws:
        registry = ModelRegistry(ws.metadata, ws.artifacts, ws.project)
        v1, v2 = registry.get(f"{MODEL}:1"), registry.get(f"{MODEL}:2")
        assert v2.parent_version_id == v1.id
        assert set(v2.aliases) & {"champion", "challenger"}
        assert registry.lineage(MODEL, 2).ancestors[0].id == v1.id
        assert ws.metadata.verify_audit().ok


def test_cli_import_and_help_skip_optional_backends(tmp_path: Path) -> None:
    """`import fedloop` and `fedloop --help` import none of ray, psycopg or s3fs."""
    # Arrange
    code = textwrap.dedent(
        f"""
        import json, sys
        import fedloop
        from fedloop.cli.app import app
        try:
            app(["--help"], prog_name="fedloop")
        except SystemExit:
            pass
        heavy = {sorted(OPTIONAL_HEAVY)!r}
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
        """
    )

    # Act
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    # Assert
    assert "Usage" in done.stdout
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
