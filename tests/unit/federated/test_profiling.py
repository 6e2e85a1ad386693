"""A federated model's reference profile: merged from client summaries, equal to the central one."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from fedloop.core import InvalidInput
from fedloop.federated.client import AdapterClient, run_task
from fedloop.federated.messages import FitIns, FitRes
from fedloop.federated.profiling import collect_profile
from fedloop.federated.simulation import LocalBackend
from fedloop.federated.transports import InProcessTransport
from fedloop.learn import DataProfile, TorchAdapter, columns_from_tensors, mlp, profile_columns
from fedloop.scenarios.fraud.federated import make_client

FACTORY = "fedloop.scenarios.fraud.federated:make_client"
SPEC = {"rows": 3000, "num_clients": 3, "partition": "dirichlet", "alpha": 0.5, "seed": 0}
CLIENTS = [f"bank-{i:03d}" for i in range(3)]


def _adapter() -> TorchAdapter:
    return TorchAdapter(lambda: mlp(30, (64, 32)), num_features=30, seed=0)


def _clients() -> dict[str, AdapterClient]:
    return {c: make_client(c, **SPEC) for c in CLIENTS}  # type: ignore[arg-type]


def _assert_same(a: DataProfile, b: DataProfile) -> None:
    assert list(a.columns) == list(b.columns)
    assert a.num_rows == b.num_rows
    for name, col in a.columns.items():
        other = b.columns[name]
        np.testing.assert_array_equal(col.counts, other.counts, err_msg=name)
        assert col.mean == pytest.approx(other.mean, rel=1e-9, abs=1e-12)  # type: ignore[union-attr]


def test_merged_client_profile_equals_the_central_profile_on_its_edges() -> None:
    """Counts and moments merged from the clients equal a profile of all rows pooled."""
    # Arrange
    adapter = _adapter()
    clients = _clients()
    params = adapter.get_parameters()

    # Act
    merged = collect_profile(
        InProcessTransport(clients), params, signature=adapter.signature(), round_num=7
    )

    # Assert
    assert merged is not None
    x = np.concatenate([c.x for c in clients.values()])
    adapter.set_parameters(params)
    pooled = columns_from_tensors({"features": x, "probability": adapter.predict_proba(x)})
    edges = {k: v.edges for k, v in merged.columns.items()}  # type: ignore[union-attr]
    _assert_same(merged, profile_columns(pooled, edges=edges))
    assert merged.sample is None  # no raw row left a silo
    assert "probability" in merged.columns
    assert "features[29]" in merged.columns


def test_process_pool_gives_the_same_profile_as_in_process() -> None:
    """Summaries travel as tensors through the worker pipes unchanged."""
    # Arrange
    adapter = _adapter()
    params = adapter.get_parameters()
    pool = LocalBackend(FACTORY, CLIENTS, num_workers=2, kwargs=SPEC)

    # Act
    try:
        pooled = collect_profile(pool, params, signature=adapter.signature(), round_num=3)
    finally:
        pool.close()
    local = collect_profile(
        InProcessTransport(_clients()), params, signature=adapter.signature(), round_num=3
    )

    # Assert
    assert pooled is not None
    assert local is not None
    _assert_same(pooled, local)


class _TrainOnly:
    """A client without a profile method."""

    def fit(self, ins: FitIns) -> FitRes:
        return FitRes(ins.parameters, 1)


def test_a_client_that_cannot_profile_refuses_and_the_rest_still_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A profiling task never makes a client train; its silo is left out with a warning."""
    # Arrange
    adapter = _adapter()
    clients: dict[str, object] = dict(_clients())
    clients["bank-xyz"] = _TrainOnly()

    # Act
    with caplog.at_level(logging.WARNING, logger="fedloop.federated.profiling"):
        merged = collect_profile(
            InProcessTransport(clients),  # type: ignore[arg-type]
            adapter.get_parameters(),
            signature=adapter.signature(),
            round_num=1,
        )

    # Assert
    assert merged is not None
    assert merged.num_rows == sum(len(c.y) for c in _clients().values())
    assert "bank-xyz" in caplog.text
    with pytest.raises(InvalidInput, match="profiling"):
        run_task(_TrainOnly(), FitIns(1, adapter.get_parameters(), {"task": "profile"}))
