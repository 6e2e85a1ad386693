"""Client-level DP-FedAvg: clipping, noise, adaptive clipping, the accountant, budget and lineage."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedloop.core import FederatedConfig, Parameters, PrivacyBudgetExhausted, RunId, resolve
from fedloop.federated.coordinator import Coordinator
from fedloop.federated.messages import FitIns, FitRes
from fedloop.federated.privacy import PrivacyAccountant, clip_update, update_norm
from fedloop.federated.registration import register_federated_model
from fedloop.federated.strategies import ClientUpdate, DPFedAvg, make_strategy
from fedloop.federated.transports import InProcessTransport
from fedloop.learn import TorchAdapter, mlp
from fedloop.registry import ModelRegistry
from fedloop.store import Workspace, open_workspace


class ShiftClient:
    """Adds a fixed offset to every weight."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def fit(self, ins: FitIns) -> FitRes:
        params = OrderedDict((k, v + np.float32(self.offset)) for k, v in ins.parameters.items())
        return FitRes(params, 10, {"loss": self.offset}, round_num=ins.round_num)


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    config = resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as workspace:
        yield workspace


def _coordinator(ws: Workspace, strategy: DPFedAvg, num_rounds: int) -> Coordinator:
    clients = {f"bank-{i}": ShiftClient(0.01 * (i + 1)) for i in range(4)}
    return Coordinator(
        InProcessTransport(clients),
        strategy,
        config=FederatedConfig(num_rounds=num_rounds, round_timeout_s=30.0),
        metadata=ws.metadata,
        artifacts=ws.artifacts,
    )


def _dp(**overrides: Any) -> DPFedAvg:
    params: dict[str, Any] = {
        "noise_multiplier": 1.0,
        "clip_norm": 0.5,
        "expected_clients_per_round": 4,
        "sampling_probability": 0.1,
        "seed": 7,
    }
    return DPFedAvg(**{**params, **overrides})


def _initial() -> Parameters:
    return OrderedDict(w=np.zeros((3, 4), dtype=np.float32), b=np.zeros(4, dtype=np.float32))


def _epsilon_directly(q: float, z: float, rounds: int, delta: float) -> float:
    import dp_accounting
    from dp_accounting import rdp

    from fedloop.federated.privacy import RDP_ORDERS

    accountant = rdp.RdpAccountant(orders=list(RDP_ORDERS))
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z))
    accountant.compose(event, rounds)
    return float(accountant.get_epsilon(delta))


@settings(max_examples=50, deadline=None)
@given(
    delta=hnp.arrays(
        np.float64, (3, 5), elements=st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
    ),
    clip_norm=st.floats(1e-3, 1e3),
)
def test_clipping_bounds_the_norm(delta: np.ndarray[Any, Any], clip_norm: float) -> None:
    """A clipped update never exceeds the clip norm, and one within it is left unchanged."""
    # Arrange
    update = OrderedDict(w=delta, b=delta[0] / 2)

    # Act
    clipped, norm = clip_update(update, clip_norm)

    # Assert
    assert update_norm(clipped) <= clip_norm * (1 + 1e-9)
    if norm <= clip_norm:
        assert all(np.array_equal(clipped[k], update[k]) for k in update)


def test_noise_scale_is_z_times_c_over_n() -> None:
    """With clients equal to the model, the new model is pure noise of stddev z * C / n."""
    # Arrange
    current: Parameters = OrderedDict(w=np.zeros(200_000, dtype=np.float64))
    updates = [ClientUpdate(f"c{i}", current, 1) for i in range(4)]
    strategy = _dp(noise_multiplier=1.2, clip_norm=0.5, expected_clients_per_round=4)

    # Act
    result = strategy.aggregate_train(1, current, updates)

    # Assert
    assert abs(float(np.mean(result["w"]))) < 0.01 * 0.15
    assert float(np.std(result["w"])) == pytest.approx(1.2 * 0.5 / 4, rel=0.01)


def test_seeded_noise_is_reproducible() -> None:
    """Two strategies with one seed add the same noise in the same round."""
    # Arrange
    current = _initial()
    updates = [ClientUpdate("a", current, 1)]

    # Act
    first = _dp().aggregate_train(3, current, updates)
    second = _dp().aggregate_train(3, current, updates)

    # Assert
    assert all(np.array_equal(first[k], second[k]) for k in current)


def test_adaptive_clip_norm_moves_to_the_target_quantile() -> None:
    """The clip norm converges near the median of the update norms (1..10)."""
    # Arrange
    current: Parameters = OrderedDict(w=np.zeros(1, dtype=np.float64))
    updates = [ClientUpdate(f"c{i:02d}", OrderedDict(w=np.array([i + 1.0])), 1) for i in range(10)]
    strategy = _dp(
        noise_multiplier=0.5,
        clip_norm=0.1,
        adaptive_clipping=True,
        target_quantile=0.5,
        clip_learning_rate=0.2,
        expected_clients_per_round=10,
        clipped_count_stddev=0.5,
    )

    # Act
    for round_num in range(1, 101):
        strategy.aggregate_train(round_num, current, updates)

    # Assert
    assert 3.0 <= strategy.current_clip_norm <= 8.0


def test_accountant_matches_dp_accounting_and_grows() -> None:
    """Epsilon equals dp-accounting's RDP for the same events and grows with rounds."""
    # Arrange
    accountant = PrivacyAccountant()

    # Act
    accountant.spend(sampling_probability=0.1, noise_multiplier=1.1, rounds=5)
    five = accountant.epsilon(1e-5)
    accountant.spend(sampling_probability=0.1, noise_multiplier=1.1, rounds=5)
    ten = accountant.epsilon(1e-5)

    # Assert
    assert five == _epsilon_directly(0.1, 1.1, 5, 1e-5)
    assert ten == _epsilon_directly(0.1, 1.1, 10, 1e-5)
    assert 0 < five < ten


def test_budget_exhausted_stops_training(ws: Workspace) -> None:
    """A run whose budget covers 2 rounds stops before round 3, naming target_epsilon."""
    # Arrange
    budget = (_epsilon_directly(0.1, 1.0, 2, 1e-5) + _epsilon_directly(0.1, 1.0, 3, 1e-5)) / 2
    coordinator = _coordinator(ws, _dp(target_epsilon=budget), num_rounds=5)
    run_id = coordinator.start(ws.project.id, _initial())

    # Act / Assert
    with pytest.raises(PrivacyBudgetExhausted, match=r"target_epsilon") as info:
        coordinator.run(run_id)
    assert info.value.field == "strategy.target_epsilon"
    assert [r.round for r in ws.metadata.list_fl_rounds(run_id)] == [0, 1, 2]


class _Crash(Exception):
    """Stands for a coordinator killed after a round was checkpointed."""


def _crash_after(round_num: int) -> Any:
    def on_round(report: Any) -> None:
        if report.round_num == round_num:
            raise _Crash

    return on_round


def test_restart_keeps_the_ledger(ws: Workspace) -> None:
    """3 rounds, a crash, a new coordinator resuming: the epsilon of 5 uninterrupted rounds."""
    # Arrange
    crashing = _coordinator(ws, _dp(), num_rounds=5)
    crashing.on_round = _crash_after(3)
    run_id = crashing.start(ws.project.id, _initial())
    with pytest.raises(_Crash):
        crashing.run(run_id)
    straight = _coordinator(ws, _dp(), num_rounds=5)
    straight_final = straight.run(straight.start(ws.project.id, _initial()))
    resumed = _coordinator(ws, _dp(), num_rounds=5)

    # Act
    final = resumed.run(run_id)

    # Assert
    assert isinstance(resumed.strategy, DPFedAvg)
    assert isinstance(straight.strategy, DPFedAvg)
    assert resumed.strategy.accountant.rounds == 5
    assert resumed.strategy.epsilon() == straight.strategy.epsilon()
    assert resumed.strategy.epsilon() == _epsilon_directly(0.1, 1.0, 5, 1e-5)
    assert all(np.array_equal(final[k], straight_final[k]) for k in final)


def test_registration_records_epsilon_and_lineage_shows_it(ws: Workspace) -> None:
    """The DP run's model version carries epsilon, delta, z, C and rounds; lineage shows them."""
    # Arrange
    adapter = TorchAdapter(lambda: mlp(4, (3,)), num_features=4, seed=0)
    coordinator = _coordinator(ws, _dp(), num_rounds=2)
    run_id: RunId = coordinator.start(ws.project.id, adapter.get_parameters())
    adapter.set_parameters(coordinator.run(run_id))

    # Act
    mv = register_federated_model(
        ws,
        "dp-model",
        run_id=run_id,
        weights=adapter.get_parameters(),
        onnx_model=adapter.to_onnx(),
        signature=adapter.signature(),
    )
    lineage = ModelRegistry(ws.metadata, ws.artifacts, ws.project).lineage("dp-model", mv.version)

    # Assert
    expected = _epsilon_directly(0.1, 1.0, 2, 1e-5)
    assert mv.privacy["mechanism"] == "dp-fedavg"
    assert mv.privacy["epsilon"] == pytest.approx(expected)
    assert (mv.privacy["delta"], mv.privacy["noise_multiplier"], mv.privacy["clip_norm"]) == (
        1e-5,
        1.0,
        0.5,
    )
    assert (mv.privacy["rounds"], mv.privacy["accountant"]) == (2, "rdp")
    assert lineage.to_dict()["privacy"]["epsilon"] == pytest.approx(expected)


def test_non_dp_registration_records_no_privacy(ws: Workspace) -> None:
    """A FedAvg run's version has no privacy cost."""
    # Arrange
    adapter = TorchAdapter(lambda: mlp(4, (3,)), num_features=4, seed=0)
    coordinator = _coordinator(ws, _dp(), num_rounds=1)
    coordinator.strategy = make_strategy("fedavg")
    run_id = coordinator.start(ws.project.id, adapter.get_parameters())
    adapter.set_parameters(coordinator.run(run_id))

    # Act
    mv = register_federated_model(
        ws,
        "plain",
        run_id=run_id,
        weights=adapter.get_parameters(),
        onnx_model=adapter.to_onnx(),
        signature=adapter.signature(),
    )

    # Assert
    assert not mv.privacy


def test_dp_fraud_run_still_learns(ws: Workspace) -> None:
    """DP-FedAvg at small noise on the fraud scenario's small data reaches AUC > 0.6."""
    # Arrange
    from fedloop.scenarios.fraud.federated import simulate

    params = {
        "noise_multiplier": 0.02,
        "clip_norm": 5.0,
        "expected_clients_per_round": 3,
        "seed": 0,
    }
    config = resolve(
        {
            "project": {"dir": str(Path(ws.config.project.dir))},
            "federated": {"num_rounds": 3},
            "strategy": {"name": "dpfedavg", "params": params},
        },
        {},
        {},
    ).config

    # Act
    result = simulate(ws, config, num_clients=3, rows=3000, partition="iid", backend="inprocess")

    # Assert
    mv = ws.metadata.get_model_version("fraud-fl", result["version"])
    assert mv.metrics["auc"] > 0.6
    assert mv.privacy["rounds"] == 3


def test_round_metrics_carry_the_epsilon_spent() -> None:
    """After each DP round the strategy reports dp_epsilon (growing) and the clip norm."""
    # Arrange
    from fedloop.federated.strategies import DPFedAvg

    strategy = DPFedAvg(noise_multiplier=1.0, clip_norm=1.0, sampling_probability=0.1)

    # Act
    before = strategy.round_metrics()
    strategy.accountant.spend(sampling_probability=0.1, noise_multiplier=1.0)
    one = strategy.round_metrics()["dp_epsilon"]
    strategy.accountant.spend(sampling_probability=0.1, noise_multiplier=1.0)
    two = strategy.round_metrics()["dp_epsilon"]

    # Assert
    assert before == {"dp_clip_norm": 1.0}
    assert 0 < one < two
