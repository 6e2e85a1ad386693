"""Lineage: run, data sets, contributors, privacy, ancestors and alias moves of a version."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedloop.core import NotFound, Parameters, fingerprint_arrays
from fedloop.registry import Lineage, ModelRegistry, lineage
from fedloop.store import Contributor, Dataset, Run, Workspace

CONTRIBUTORS = (
    Contributor(contributor="bank-a", kind="client", rounds=(1, 2, 3), num_examples=1200),
    Contributor(contributor="bank-b", kind="client", rounds=(2, 3), num_examples=None),
)
PRIVACY = {"epsilon": 2.5, "delta": 1e-5, "accountant": "rdp"}


def _dataset(ws: Workspace, name: str, seed: int) -> Dataset:
    x = np.random.default_rng(seed).normal(size=(10, 4))
    return ws.metadata.register_dataset(
        ws.project.id, name, fingerprint=fingerprint_arrays(x), num_rows=10
    )


@pytest.fixture
def train_set(workspace: Workspace) -> Dataset:
    """Return a registered training data set."""
    return _dataset(workspace, "train", 0)


@pytest.fixture
def eval_set(workspace: Workspace) -> Dataset:
    """Return a registered evaluation data set."""
    return _dataset(workspace, "eval", 1)


@pytest.fixture
def run(workspace: Workspace, train_set: Dataset, eval_set: Dataset) -> Run:
    """Return a federated run with params that used both data sets."""
    return workspace.metadata.create_run(
        workspace.project.id,
        name="fl-round",
        kind="federated",
        params={"lr": 0.05, "rounds": 3},
        dataset_ids=[(train_set.id, "train"), (eval_set.id, "eval")],
    )


@pytest.fixture
def history(registry: ModelRegistry, run: Run, weights: Parameters, graph: bytes) -> ModelRegistry:
    """Return a registry with v1 -> v2 -> v3 (warm starts); v3 has the run, contributors, privacy."""
    registry.register("m", weights=weights, onnx_model=graph)
    registry.register("m", weights=weights, onnx_model=graph, parent_version=1)
    registry.register(
        "m",
        weights=weights,
        onnx_model=graph,
        parent_version=2,
        run_id=run.id,
        contributors=CONTRIBUTORS,
        privacy=PRIVACY,
        metrics={"auc": 0.91},
    )
    registry.promote("m", 2, actor="alice", reason="first")
    registry.promote("m", 3, actor="bob", reason="better")
    return registry


def test_lineage_includes_run_and_params(history: ModelRegistry, run: Run) -> None:
    """The lineage names the producing run with its kind and params."""
    # Act
    info = history.lineage("m", 3)

    # Assert
    assert info.run is not None
    assert (info.run.id, info.run.kind) == (run.id, "federated")
    assert info.run.params == {"lr": "0.05", "rounds": "3"}


def test_lineage_includes_datasets_with_roles(
    history: ModelRegistry, train_set: Dataset, eval_set: Dataset
) -> None:
    """The lineage lists the run's data sets with their roles and fingerprints."""
    # Act
    info = history.lineage("m", 3)

    # Assert
    found = {(d.name, d.fingerprint, role) for d, role in info.datasets}
    assert found == {
        ("train", train_set.fingerprint, "train"),
        ("eval", eval_set.fingerprint, "eval"),
    }


def test_lineage_includes_datasets_given_at_registration(
    registry: ModelRegistry, train_set: Dataset, weights: Parameters, graph: bytes
) -> None:
    """Data sets passed to register() without a run appear with the role given."""
    # Arrange
    registry.register("m", weights=weights, onnx_model=graph, datasets=[(train_set.id, "train")])

    # Act
    info = registry.lineage("m", 1)

    # Assert
    assert [(d.id, role) for d, role in info.datasets] == [(train_set.id, "train")]


def test_lineage_includes_contributors_and_privacy(history: ModelRegistry) -> None:
    """The version in the lineage carries its contributors (by name) and privacy cost."""
    # Act
    info = history.lineage("m", 3)

    # Assert
    assert info.version.contributors == CONTRIBUTORS
    assert info.version.privacy == PRIVACY


def test_lineage_follows_ancestors_nearest_first(history: ModelRegistry) -> None:
    """Ancestors are the parent chain of warm starts, nearest first."""
    # Act
    info = history.lineage("m", 3)

    # Assert
    assert [a.version for a in info.ancestors] == [2, 1]


def test_first_version_has_no_ancestors_or_run(history: ModelRegistry) -> None:
    """A version trained from scratch without a run has no ancestors and no run."""
    # Act
    info = history.lineage("m", 1)

    # Assert
    assert (info.run, info.ancestors, info.datasets) == (None, [], [])


def test_lineage_lists_alias_moves_touching_the_version(history: ModelRegistry) -> None:
    """Alias moves to or from the version are listed; others are not."""
    # Act
    moves_v2 = history.lineage("m", 2).alias_history
    moves_v1 = history.lineage("m", 1).alias_history

    # Assert
    assert [(h.from_version, h.to_version, h.actor) for h in moves_v2] == [
        (None, 2, "alice"),
        (2, 3, "bob"),
    ]
    assert moves_v1 == []


def test_lineage_includes_registration_event(history: ModelRegistry) -> None:
    """The lineage carries the version's model.version_registered audit event."""
    # Act
    info = history.lineage("m", 3)

    # Assert
    assert [e.kind for e in info.events] == ["model.version_registered"]


def test_lineage_of_unknown_version_is_not_found(history: ModelRegistry) -> None:
    """The lineage of a version that does not exist raises NotFound."""
    # Act / Assert
    with pytest.raises(NotFound) as info:
        history.lineage("m", 9)
    assert info.value.field == "version"


def test_module_lineage_matches_registry(history: ModelRegistry, workspace: Workspace) -> None:
    """lineage(store, …) returns the same lineage as ModelRegistry.lineage."""
    # Act
    info = lineage(workspace.metadata, "m", 3)

    # Assert
    assert isinstance(info, Lineage)
    assert info.to_dict() == history.lineage("m", 3).to_dict()


def test_to_dict_is_json_serializable(history: ModelRegistry) -> None:
    """to_dict() survives json.dumps without a default and keeps the lineage facts."""
    # Arrange
    info = history.lineage("m", 3)

    # Act
    data = json.loads(json.dumps(info.to_dict()))

    # Assert
    assert (data["model"], data["version"], data["aliases"]) == ("m", 3, ["champion"])
    assert data["run"]["params"] == {"lr": "0.05", "rounds": "3"}
    assert sorted(d["role"] for d in data["datasets"]) == ["eval", "train"]
    assert data["contributors"][0] == {
        "id": "bank-a",
        "kind": "client",
        "rounds": [1, 2, 3],
        "num_examples": 1200,
    }
    assert data["privacy"] == PRIVACY
    assert [a["version"] for a in data["ancestors"]] == [2, 1]
    assert [h["to"] for h in data["alias_history"]] == [3]
    assert data["metrics"] == {"auc": 0.91}


def test_to_dict_without_run_has_null_run(history: ModelRegistry) -> None:
    """to_dict() of a version without a run has run None and no data sets."""
    # Act
    data = history.lineage("m", 1).to_dict()

    # Assert
    assert (data["run"], data["datasets"], data["privacy"]) == (None, [], None)
