"""The fraud scenario in process: synthetic data and the quickstart flow's alias decision."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fedloop.core import resolve
from fedloop.registry import ModelRegistry
from fedloop.scenarios.fraud import make_fraudlike
from fedloop.scenarios.fraud.quickstart import MODEL_NAME, run
from fedloop.store import Workspace, open_workspace

ROWS = 2_000


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """Return a workspace (SQLite + local artifacts) under ``tmp_path/.fedloop``."""
    config = resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as ws:
        yield ws


# -- data ------------------------------------------------------------------------------------


def test_fraudlike_split_shapes() -> None:
    """make_fraudlike gives an 80/20 split of 30 float32 features and int64 labels."""
    # Act
    data = make_fraudlike(ROWS, seed=0)

    # Assert
    assert (data.x_train.shape, data.x_test.shape) == ((1600, 30), (400, 30))
    assert (data.x_train.dtype, data.y_train.dtype) == (np.float32, np.int64)
    assert data.num_features == 30


def test_fraudlike_is_imbalanced() -> None:
    """About 3% of the transactions are fraud, in both splits."""
    # Act
    data = make_fraudlike(ROWS, seed=0)

    # Assert
    assert 0.01 < data.y_train.mean() < 0.06
    assert 0.01 < data.y_test.mean() < 0.06


def test_fraudlike_standardizes_with_train_statistics() -> None:
    """Training features have mean 0 and standard deviation 1 per column."""
    # Act
    data = make_fraudlike(ROWS, seed=0)

    # Assert
    assert np.allclose(data.x_train.mean(axis=0), 0, atol=1e-4)
    assert np.allclose(data.x_train.std(axis=0), 1, atol=1e-3)


def test_fraudlike_is_deterministic_per_seed() -> None:
    """The same seed gives the same data; another seed gives other data."""
    # Act
    first, again, other = (make_fraudlike(ROWS, seed=s) for s in (0, 0, 1))

    # Assert
    assert np.array_equal(first.x_train, again.x_train)
    assert not np.array_equal(first.x_train, other.x_train)


# -- the quickstart flow ---------------------------------------------------------------------


def test_first_quickstart_promotes_champion(workspace: Workspace) -> None:
    """The first run registers v1, promotes it to champion and finds the audit log intact."""
    # Act
    summary = run(workspace, rows=ROWS, epochs=1)

    # Assert
    assert (summary["version"], summary["decision"], summary["audit_ok"]) == (
        1,
        "promoted to champion",
        True,
    )
    assert summary["onnx_max_abs_diff"] < 1e-5
    registry = ModelRegistry(workspace.metadata, workspace.artifacts, workspace.project)
    assert registry.get(f"{MODEL_NAME}@champion").run_id == summary["run_id"]


def test_quickstart_worse_than_champion_becomes_challenger(workspace: Workspace) -> None:
    """A run that does not beat the champion's AUC is registered as challenger, warm-started."""
    # Arrange: the champion claims a perfect AUC no retraining can beat
    run(workspace, rows=ROWS, epochs=1)
    registry = ModelRegistry(workspace.metadata, workspace.artifacts, workspace.project)
    v1 = registry.get(f"{MODEL_NAME}:1")
    perfect = registry.register(
        MODEL_NAME,
        weights=registry.load_weights(v1),
        onnx_model=registry.load_onnx(v1),
        metrics={"auc": 1.0},
    )
    registry.promote(MODEL_NAME, perfect.version)

    # Act
    summary = run(workspace, rows=ROWS, epochs=1)

    # Assert
    assert summary["decision"].startswith("kept as challenger")
    new = registry.get(f"{MODEL_NAME}@challenger")
    assert (new.version, new.parent_version_id) == (3, perfect.id)
    assert registry.get(f"{MODEL_NAME}@champion").version == perfect.version
