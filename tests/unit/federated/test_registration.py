"""register_federated_model: lineage from client rounds, champion on first registration."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fedloop.core import FederatedConfig, Parameters, RunId, resolve
from fedloop.federated.coordinator import Coordinator
from fedloop.federated.messages import FitIns, FitRes
from fedloop.federated.registration import register_federated_model
from fedloop.federated.strategies import FedAvg
from fedloop.federated.transports import InProcessTransport
from fedloop.learn import TorchAdapter, mlp
from fedloop.registry import CHAMPION
from fedloop.store import Workspace, open_workspace


class ShiftClient:
    """Adds an offset to every weight; fails in the rounds listed in ``fail_in``."""

    def __init__(self, offset: float, examples: int, fail_in: tuple[int, ...] = ()) -> None:
        self.offset = offset
        self.examples = examples
        self.fail_in = fail_in

    def fit(self, ins: FitIns) -> FitRes:
        if ins.round_num in self.fail_in:
            raise RuntimeError("disk full")
        params = OrderedDict((k, v + np.float32(self.offset)) for k, v in ins.parameters.items())
        return FitRes(params, self.examples, {"loss": self.offset}, round_num=ins.round_num)


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    config = resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    with open_workspace(config) as workspace:
        yield workspace


@pytest.fixture
def adapter() -> TorchAdapter:
    return TorchAdapter(lambda: mlp(4, (3,)), num_features=4, seed=0)


def _run(ws: Workspace, initial: Parameters) -> tuple[RunId, Parameters]:
    """Three rounds over bank-a (every round), bank-b (fails round 2) and bank-c (always fails)."""
    clients = {
        "bank-a": ShiftClient(0.1, examples=40),
        "bank-b": ShiftClient(0.2, examples=25, fail_in=(2,)),
        "bank-c": ShiftClient(0.3, examples=10, fail_in=(1, 2, 3)),
    }
    config = FederatedConfig(num_rounds=3, round_timeout_s=30.0, max_skipped_rounds=3)
    coordinator = Coordinator(
        InProcessTransport(clients),
        FedAvg(),
        config=config,
        metadata=ws.metadata,
        artifacts=ws.artifacts,
        evaluate_fn=lambda params: {"auc": 0.75, "loss": 0.5},
    )
    run_id = coordinator.start(ws.project.id, initial)
    return run_id, coordinator.run(run_id)


def test_contributors_are_the_clients_and_rounds_with_accepted_results(
    ws: Workspace, adapter: TorchAdapter
) -> None:
    """Each client with an ok round is credited with those rounds; one that never succeeded is not."""
    # Arrange
    run_id, final = _run(ws, adapter.get_parameters())
    adapter.set_parameters(final)

    # Act
    mv = register_federated_model(
        ws,
        "bank-fl",
        run_id=run_id,
        weights=final,
        onnx_model=adapter.to_onnx(),
        signature=adapter.signature(),
    )

    # Assert
    assert [(c.contributor, c.kind, c.rounds, c.num_examples) for c in mv.contributors] == [
        ("bank-a", "client", (1, 2, 3), 40),
        ("bank-b", "client", (1, 3), 25),
    ]
    assert mv.run_id == run_id
    assert mv.metrics == {"auc": 0.75, "loss": 0.5}


def test_first_version_becomes_champion_and_later_ones_do_not(
    ws: Workspace, adapter: TorchAdapter
) -> None:
    """The model's first registration is promoted; a second one leaves the champion alone."""
    # Arrange
    run_id, final = _run(ws, adapter.get_parameters())
    graph = adapter.to_onnx()

    # Act
    first = register_federated_model(ws, "bank-fl", run_id=run_id, weights=final, onnx_model=graph)
    second = register_federated_model(
        ws, "bank-fl", run_id=run_id, weights=final, onnx_model=graph, metrics={"auc": 0.7}
    )

    # Assert
    assert first.aliases == (CHAMPION,)
    assert second.version == 2
    assert second.aliases == ()
    assert second.metrics == {"auc": 0.7}
    champion = ws.metadata.find_alias("bank-fl", CHAMPION)
    assert champion is not None
    assert champion.version == 1


def test_fraud_simulation_registers_its_model_with_lineage(ws: Workspace) -> None:
    """`simulate` registers fraud-fl v1 as champion, crediting every bank that contributed."""
    # Arrange
    from fedloop.scenarios.fraud.federated import MODEL_NAME, simulate

    config = resolve(
        {"project": {"dir": str(Path(ws.config.project.dir))}, "federated": {"num_rounds": 1}},
        {},
        {},
    ).config

    # Act
    result = simulate(ws, config, num_clients=3, rows=3000, partition="iid", backend="inprocess")

    # Assert
    mv = ws.metadata.get_model_version(MODEL_NAME, result["version"])
    assert mv.aliases == (CHAMPION,)
    assert [(c.contributor, c.rounds) for c in mv.contributors] == [
        (f"bank-{i:03d}", (1,)) for i in range(3)
    ]
    assert "auc" in mv.metrics


def test_a_secure_dp_run_records_both_protections_in_lineage(
    ws: Workspace, adapter: TorchAdapter
) -> None:
    """A dpfedavg run under SecAgg+ has epsilon and the protocol on its version."""
    # Arrange
    from fedloop.federated.strategies import DPFedAvg

    clients = {f"bank-{i}": ShiftClient(0.01 * (i + 1), examples=10) for i in range(5)}
    config = FederatedConfig(
        num_rounds=2,
        secure_aggregation={"enabled": True, "neighbours": 2},  # type: ignore[arg-type]
    )
    coordinator = Coordinator(
        InProcessTransport(clients),  # type: ignore[arg-type]
        DPFedAvg(noise_multiplier=1.0, clip_norm=0.5, seed=1),
        config=config,
        metadata=ws.metadata,
        artifacts=ws.artifacts,
    )
    initial = adapter.get_parameters()
    run_id = coordinator.start(ws.project.id, initial)
    final = coordinator.run(run_id)
    adapter.set_parameters(final)

    # Act
    mv = register_federated_model(
        ws, "bank-fl", run_id=run_id, weights=final, onnx_model=adapter.to_onnx()
    )

    # Assert
    assert mv.privacy is not None
    assert mv.privacy["mechanism"] == "dp-fedavg"
    assert mv.privacy["epsilon"] > 0
    assert mv.privacy["secure_aggregation"] == {
        "protocol": "secagg+",
        "neighbours": 2,
        "threshold": 0.5,
        "scale_bits": 20,
    }
    assert [c.num_examples for c in mv.contributors] == [0] * 5  # sizes stayed in the sum
