"""The demo's data world: banks, imbalance, the fraud-pattern shift and recovery from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fedloop.core import FederatedConfig, InvalidInput, Parameters, resolve
from fedloop.federated.coordinator import Coordinator
from fedloop.federated.strategies import FedAvg
from fedloop.federated.transports import InProcessTransport
from fedloop.learn import profile_columns
from fedloop.monitoring.drift import check_drift
from fedloop.scenarios.fraud.shift import (
    FraudWorld,
    bank_data,
    bank_sizes,
    central_baseline,
    feature_names,
    holdout_data,
    make_shift_client,
    make_world,
    shift_adapter,
    traffic,
)
from fedloop.store import Workspace, open_workspace

ROWS = 20_000
MOVED = {"log_amount", "txn_last_1h", "txn_last_24h", "card_present"}


@pytest.fixture
def world() -> FraudWorld:
    """Return the default world (seed 0, five banks)."""
    return make_world(0, 5)


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """Return a workspace (SQLite + local artifacts) under ``tmp_path/.fedloop``."""
    config = resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as ws:
        yield ws


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Train on one torch thread (fastest for this tiny MLP, and fair to parallel test runs)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _column(x: np.ndarray, name: str) -> np.ndarray:
    return x[:, feature_names().index(name)]


# -- the world and its banks -----------------------------------------------------------------


def test_bank_data_shapes_and_dtypes(world: FraudWorld) -> None:
    """A bank's rows are 30 float32 features and int64 0/1 labels."""
    # Act
    x, y = bank_data(world, "bank-000", "before", rows=1_000)

    # Assert
    assert (x.shape, x.dtype, y.shape, y.dtype) == ((1_000, 30), np.float32, (1_000,), np.int64)
    assert set(np.unique(y)) <= {0, 1}
    assert len(feature_names()) == len(set(feature_names())) == 30


def test_data_is_deterministic_per_seed(world: FraudWorld) -> None:
    """The same world seed gives the same rows; another seed, other rows."""
    # Act
    first = bank_data(world, "bank-001", "after", rows=500)
    again = bank_data(make_world(0, 5), "bank-001", "after", rows=500)
    other = bank_data(make_world(1, 5), "bank-001", "after", rows=500)

    # Assert
    assert np.array_equal(first[0], again[0])
    assert np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_splits_and_traffic_batches_are_independent(world: FraudWorld) -> None:
    """Training, test and traffic rows differ, and each traffic seed gives new requests."""
    # Act
    train = bank_data(world, "bank-000", "before", rows=200)[0]
    test = bank_data(world, "bank-000", "before", rows=200, split="test")[0]
    batch0, batch1 = (traffic(world, "before", rows=200, seed=s)[0] for s in (0, 1))

    # Assert
    assert not np.array_equal(train, test)
    assert not np.array_equal(batch0, batch1)
    assert np.array_equal(batch0, traffic(world, "before", rows=200, seed=0)[0])


@pytest.mark.parametrize("regime", [pytest.param(r, id=r) for r in ("before", "after")])
def test_each_bank_has_its_own_realistic_fraud_rate(world: FraudWorld, regime: str) -> None:
    """Every bank's fraud rate is about 1-4%, near its expected rate, and banks differ."""
    # Act
    rates = {b: bank_data(world, b, regime, rows=ROWS)[1].mean() for b in world.banks}

    # Assert
    for bank, rate in rates.items():
        expected = world.fraud_rate(bank, regime)
        assert 0.01 <= expected <= 0.0375
        assert abs(rate - expected) < 4 * np.sqrt(expected / ROWS)
    assert max(rates.values()) > 2 * min(rates.values())


def test_banks_differ_in_size_and_customers(world: FraudWorld) -> None:
    """Bank shares are unequal and banks' customers spend differently (non-IID silos)."""
    # Act
    sizes = bank_sizes(world, 100_000)
    amounts = [
        _column(bank_data(world, b, "before", rows=5_000)[0], "log_amount").mean()
        for b in world.banks
    ]

    # Assert
    assert sum(sizes.values()) == 100_000
    assert max(sizes.values()) > 3 * min(sizes.values())
    assert max(amounts) - min(amounts) > 0.2


# -- the shift -------------------------------------------------------------------------------


def test_one_standardization_serves_both_regimes(world: FraudWorld) -> None:
    """Before-data is centred and scaled; after-data keeps that scale, so only moved columns move."""
    # Act
    before = holdout_data(world, "before", rows=ROWS)[0]
    after = holdout_data(world, "after", rows=ROWS)[0]
    shift = after.mean(axis=0) - before.mean(axis=0)

    # Assert
    assert np.allclose(before.mean(axis=0), 0, atol=0.05)
    assert np.allclose(before.std(axis=0), 1, atol=0.05)
    for name, delta in zip(feature_names(), shift, strict=True):
        if name in MOVED:
            assert abs(delta) > 0.2, name
        else:
            assert abs(delta) < 0.05, name
    assert min(abs(shift[feature_names().index(n)]) for n in MOVED - {"txn_last_24h"}) > 0.3


def test_the_monitor_flags_exactly_the_moved_features(world: FraudWorld) -> None:
    """The monitor's drift check flags the moved columns after the shift and nothing before it."""
    # Arrange
    names = feature_names()
    reference_x = traffic(world, "before", rows=ROWS, seed=0)[0]
    reference = profile_columns({n: reference_x[:, i] for i, n in enumerate(names)})
    edges = {n: reference.columns[n].edges for n in names}  # type: ignore[union-attr]

    def window(regime: str) -> set[str]:
        x = traffic(world, regime, rows=5_000, seed=1)[0]
        current = profile_columns({n: x[:, i] for i, n in enumerate(names)}, edges=edges)
        return {c.column for c in check_drift(reference, current).columns if c.drifted}

    # Act / Assert
    assert window("before") == set()
    assert window("after") == MOVED


def test_after_regime_has_more_fraud(world: FraudWorld) -> None:
    """The attack raises every bank's fraud rate by a quarter."""
    # Act / Assert
    for bank in world.banks:
        assert world.fraud_rate(bank, "after") == pytest.approx(
            1.25 * world.fraud_rate(bank, "before")
        )


# -- clients and errors ------------------------------------------------------------------------


def test_shift_client_holds_exactly_its_banks_rows(world: FraudWorld) -> None:
    """A bank's client generates its share of the rows, the same ones bank_data gives."""
    # Act
    client = make_shift_client("bank-002", regime="after", rows=ROWS, seed=3)
    x, y = bank_data(world, "bank-002", "after", rows=bank_sizes(world, ROWS)["bank-002"])

    # Assert
    assert (client.client_id, client.seed) == ("bank-002", 3)
    assert np.array_equal(client.x, x)
    assert np.array_equal(client.y, y)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        pytest.param(lambda w: bank_data(w, "bank-999", "before", rows=10), "bank", id="bank"),
        pytest.param(lambda w: bank_data(w, "bank-000", "later", rows=10), "regime", id="regime"),
        pytest.param(lambda w: bank_data(w, "bank-000", "before", rows=0), "rows", id="rows"),
        pytest.param(lambda w: holdout_data(w, "during", rows=100), "regime", id="test-regime"),
        pytest.param(lambda w: traffic(w, "after", rows=100, seed=-1), "seed", id="seed"),
        pytest.param(lambda w: make_world(0, num_banks=1), "num_banks", id="num-banks"),
    ],
)
def test_bad_arguments_raise_invalid_input(world: FraudWorld, call: object, field: str) -> None:
    """Unknown banks or regimes and out-of-range sizes raise InvalidInput naming the field."""
    # Act / Assert
    with pytest.raises(InvalidInput) as err:
        call(world)  # type: ignore[operator]
    assert err.value.field == field


# -- the loop at a small scale -----------------------------------------------------------------


def _federated(
    ws: Workspace, regime: str, initial: Parameters, *, rounds: int, banks: tuple[str, ...]
) -> Parameters:
    transport = InProcessTransport(
        {b: make_shift_client(b, regime=regime, rows=ROWS) for b in banks}
    )
    coordinator = Coordinator(
        transport,
        FedAvg(),
        config=FederatedConfig(num_rounds=rounds, local_epochs=3),
        metadata=ws.metadata,
        artifacts=ws.artifacts,
    )
    return coordinator.run(coordinator.start(ws.project.id, initial, name=f"shift-{regime}"))


@pytest.mark.usefixtures("one_thread")
def test_retraining_recovers_to_the_central_baseline(
    world: FraudWorld, workspace: Workspace
) -> None:
    """The old model loses AUC after the shift; warm federated retraining is within 0.01 of central."""
    # Arrange
    model = shift_adapter(0)
    tests = {r: holdout_data(world, r, rows=ROWS) for r in ("before", "after")}

    def auc(params: Parameters, regime: str) -> float:
        model.set_parameters(params)
        return model.evaluate(*tests[regime])["auc"]

    old = _federated(workspace, "before", model.get_parameters(), rounds=5, banks=world.banks)

    # Act
    new = _federated(workspace, "after", old, rounds=10, banks=world.banks)
    central = central_baseline(world, "after", rows=ROWS, epochs=10, test_rows=ROWS)

    # Assert
    assert auc(old, "before") > 0.92
    assert auc(old, "after") < auc(old, "before") - 0.1
    assert auc(new, "after") > central - 0.01
