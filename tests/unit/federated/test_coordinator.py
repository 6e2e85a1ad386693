"""The coordinator: selection, validation, dropouts, skipped rounds, checkpoints and resume."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fedloop.core import Conflict, FederatedConfig, FederationError, Parameters, resolve
from fedloop.federated.coordinator import Coordinator, RoundReport, check_update, select_clients
from fedloop.federated.messages import FitIns, FitRes
from fedloop.federated.strategies import FedAvg
from fedloop.federated.transports import InProcessTransport
from fedloop.store import Workspace, open_workspace

INITIAL: Parameters = OrderedDict(w=np.zeros(3, dtype=np.float32), b=np.zeros(1, dtype=np.float32))


class ShiftClient:
    """A deterministic client: moves every weight by its own offset, reports its example count."""

    def __init__(self, offset: float, examples: int = 10) -> None:
        self.offset = offset
        self.examples = examples
        self.calls = 0

    def fit(self, ins: FitIns) -> FitRes:
        self.calls += 1
        params = OrderedDict(
            (k, (v + self.offset).astype(v.dtype)) for k, v in ins.parameters.items()
        )
        return FitRes(params, self.examples, {"loss": abs(self.offset)}, round_num=ins.round_num)


class BrokenClient:
    """A client whose answer is produced by a function of the instruction (to craft bad updates)."""

    def __init__(self, make: Callable[[FitIns], FitRes]) -> None:
        self.make = make

    def fit(self, ins: FitIns) -> FitRes:
        return self.make(ins)


class CrashingClient:
    """A client that fails every time."""

    def fit(self, ins: FitIns) -> FitRes:
        raise RuntimeError("disk full")


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    workspace = open_workspace(
        resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    )
    yield workspace
    workspace.close()


def _coordinator(ws: Workspace, clients: dict[str, object], **cfg: object) -> Coordinator:
    config = FederatedConfig(**{"num_rounds": 2, **cfg})  # type: ignore[arg-type]
    return Coordinator(
        InProcessTransport(clients),  # type: ignore[arg-type]
        FedAvg(),
        config=config,
        metadata=ws.metadata,
        artifacts=ws.artifacts,
    )


def test_select_clients_is_deterministic_and_sorted() -> None:
    """The same seed and round pick the same sorted clients; another round picks others."""
    # Arrange
    pool = [f"c{i:02d}" for i in range(50)]

    # Act
    first = select_clients(pool, 3, seed=7, num=10)
    again = select_clients(list(reversed(pool)), 3, seed=7, num=10)
    other = select_clients(pool, 4, seed=7, num=10)

    # Assert
    assert first == again == sorted(first)
    assert len(set(first)) == 10
    assert first != other


def test_rounds_average_updates_weighted_by_examples(ws: Workspace) -> None:
    """Two rounds of FedAvg move the model by the example-weighted mean offset each round."""
    # Arrange
    coordinator = _coordinator(ws, {"a": ShiftClient(1.0, 10), "b": ShiftClient(4.0, 30)})
    run_id = coordinator.start(ws.project.id, INITIAL)

    # Act
    final = coordinator.run(run_id)

    # Assert
    np.testing.assert_allclose(final["w"], np.full(3, 2 * (1.0 * 0.25 + 4.0 * 0.75)))
    rounds = ws.metadata.list_fl_rounds(run_id)
    assert [r.round for r in rounds] == [0, 1, 2]
    assert ws.metadata.get_run(run_id).status == "finished"
    assert ws.metadata.get_run(run_id).kind == "federated"


def test_round_metrics_land_in_the_run_series(ws: Workspace) -> None:
    """Participants, dropouts, bytes and train loss are metric series indexed by round."""
    # Arrange
    coordinator = _coordinator(ws, {"a": ShiftClient(1.0), "b": CrashingClient()})
    run_id = coordinator.start(ws.project.id, INITIAL)

    # Act
    coordinator.run(run_id)

    # Assert
    participants = ws.metadata.get_metric_history(run_id, "participants")
    assert [(p.step, p.value) for p in participants] == [(1, 1.0), (2, 1.0)]
    assert [p.value for p in ws.metadata.get_metric_history(run_id, "dropouts")] == [1.0, 1.0]
    assert ws.metadata.get_metric_history(run_id, "bytes_up")[0].value == 16.0


def test_failed_client_is_dropped_with_its_reason(ws: Workspace) -> None:
    """A client that raises is recorded as failed with the error, and the round completes."""
    # Arrange
    coordinator = _coordinator(ws, {"a": ShiftClient(1.0), "z": CrashingClient()}, num_rounds=1)
    run_id = coordinator.start(ws.project.id, INITIAL)

    # Act
    final = coordinator.run(run_id)

    # Assert
    rows = dict((c.client_id, c) for _, c in ws.metadata.list_fl_client_rounds(run_id, round_num=1))
    assert rows["z"].status == "failed"
    assert "disk full" in (rows["z"].reason or "")
    np.testing.assert_array_equal(final["w"], np.ones(3, dtype=np.float32))


def _bad(kind: str) -> Callable[[FitIns], FitRes]:
    def make(ins: FitIns) -> FitRes:
        params = OrderedDict((k, v.copy()) for k, v in ins.parameters.items())
        if kind == "nan":
            params["w"][0] = np.nan
        elif kind == "shape":
            params["w"] = np.zeros(4, dtype=np.float32)
        elif kind == "dtype":
            params["w"] = params["w"].astype(np.float64)
        elif kind == "names":
            params["extra"] = np.zeros(1, dtype=np.float32)
        elif kind == "norm":
            params["w"] = params["w"] + 1000
        rnd = ins.round_num + 1 if kind == "round" else ins.round_num
        examples = 0 if kind == "examples" else 10
        return FitRes(params, examples, {}, round_num=rnd)

    return make


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        pytest.param("nan", "NaN", id="nan"),
        pytest.param("shape", "shape", id="shape"),
        pytest.param("dtype", "dtype", id="dtype"),
        pytest.param("names", "names", id="names"),
        pytest.param("norm", "norm", id="norm"),
        pytest.param("round", "round", id="wrong-round"),
        pytest.param("examples", "num_examples", id="zero-examples"),
    ],
)
def test_malformed_update_is_rejected_and_never_reaches_the_model(
    ws: Workspace, kind: str, reason: str
) -> None:
    """A bad update is rejected with a logged reason; the model equals the honest average."""
    # Arrange
    coordinator = _coordinator(
        ws,
        {"a": ShiftClient(1.0), "evil": BrokenClient(_bad(kind))},
        num_rounds=1,
        max_update_norm=100.0,
    )
    run_id = coordinator.start(ws.project.id, INITIAL)

    # Act
    final = coordinator.run(run_id)

    # Assert
    rows = dict((c.client_id, c) for _, c in ws.metadata.list_fl_client_rounds(run_id, round_num=1))
    assert rows["evil"].status == "rejected"
    assert reason in (rows["evil"].reason or "")
    np.testing.assert_array_equal(final["w"], np.ones(3, dtype=np.float32))


def test_check_update_accepts_a_good_update() -> None:
    """A well-formed update of the right round passes every check."""
    # Arrange
    result = FitRes(OrderedDict((k, v + 1) for k, v in INITIAL.items()), 5, round_num=3)

    # Act
    reason = check_update(result, global_params=INITIAL, round_num=3, max_update_norm=10.0)

    # Assert
    assert reason is None


def test_round_with_too_few_clients_is_skipped_and_model_unchanged(ws: Workspace) -> None:
    """Below min_clients the round is recorded as skipped and the model does not move."""
    # Arrange
    coordinator = _coordinator(
        ws, {"a": ShiftClient(1.0), "z": CrashingClient()}, num_rounds=1, min_clients=2
    )
    run_id = coordinator.start(ws.project.id, INITIAL)

    # Act
    final = coordinator.run(run_id)

    # Assert
    assert ws.metadata.list_fl_rounds(run_id)[-1].status == "skipped"
    np.testing.assert_array_equal(final["w"], INITIAL["w"])


def test_too_many_skipped_rounds_fail_the_run(ws: Workspace) -> None:
    """More consecutive skipped rounds than allowed raise FederationError and mark the run failed."""
    # Arrange
    coordinator = _coordinator(
        ws, {"z": CrashingClient()}, num_rounds=5, min_clients=1, max_skipped_rounds=1
    )
    run_id = coordinator.start(ws.project.id, INITIAL)

    # Act / Assert
    with pytest.raises(FederationError, match=r"consecutive rounds") as info:
        coordinator.run(run_id)
    assert info.value.field == "federated.min_clients"
    assert ws.metadata.get_run(run_id).status == "failed"


def test_over_selection_uses_only_the_needed_updates(ws: Workspace) -> None:
    """With over-selection the first clients_per_round successes are used; the rest are unused."""
    # Arrange
    clients = {f"c{i}": ShiftClient(float(i)) for i in range(6)}
    coordinator = _coordinator(ws, clients, num_rounds=1, clients_per_round=2, over_selection=1.0)
    run_id = coordinator.start(ws.project.id, INITIAL)

    # Act
    coordinator.run(run_id)

    # Assert
    rows = [c for _, c in ws.metadata.list_fl_client_rounds(run_id, round_num=1)]
    assert len(rows) == 4
    assert sum(1 for c in rows if c.status == "ok") == 2


def test_interrupted_run_resumes_to_the_same_model(ws: Workspace) -> None:
    """A coordinator stopped after round 2 and restarted ends with the uninterrupted model."""

    # Arrange
    def clients() -> dict[str, object]:
        return {f"c{i}": ShiftClient(0.1 * (i + 1), 10 + i) for i in range(5)}

    reference = _coordinator(ws, clients(), num_rounds=4, clients_per_round=3)
    expected = reference.run(reference.start(ws.project.id, INITIAL))

    def stop_after_two(report: RoundReport) -> None:
        if report.round_num == 2:
            raise KeyboardInterrupt

    first = _coordinator(ws, clients(), num_rounds=4, clients_per_round=3)
    first.on_round = stop_after_two
    run_id = first.start(ws.project.id, INITIAL)
    with pytest.raises(KeyboardInterrupt):
        first.run(run_id)

    # Act
    final = _coordinator(ws, clients(), num_rounds=4, clients_per_round=3).run(run_id)

    # Assert
    assert [r.round for r in ws.metadata.list_fl_rounds(run_id)] == [0, 1, 2, 3, 4]
    for name in expected:
        assert np.array_equal(final[name], expected[name])


def test_resume_with_another_config_is_refused(ws: Workspace) -> None:
    """Resuming a run with different federated settings raises Conflict."""
    # Arrange
    run_id = _coordinator(ws, {"a": ShiftClient(1.0)}, num_rounds=1).start(ws.project.id, INITIAL)

    # Act / Assert
    with pytest.raises(Conflict, match=r"another federated") as info:
        _coordinator(ws, {"a": ShiftClient(1.0)}, num_rounds=3).run(run_id)
    assert info.value.field == "config"


def test_each_round_is_an_audit_event(ws: Workspace) -> None:
    """Every completed round appends a federated.round_completed event; the chain verifies."""
    # Arrange
    coordinator = _coordinator(ws, {"a": ShiftClient(1.0)})
    run_id = coordinator.start(ws.project.id, INITIAL)

    # Act
    coordinator.run(run_id)

    # Assert
    events = ws.metadata.list_events(kind="federated.*")
    assert [e.subject for e in events] == [f"run:{run_id}/round:{r}" for r in (0, 1, 2)]
    assert ws.metadata.verify_audit().ok


def test_a_nan_training_loss_does_not_fail_the_round(ws: Workspace) -> None:
    """A diverging client reports loss NaN: the round completes without a train_loss."""

    # Arrange
    def diverged(ins: FitIns) -> FitRes:
        return FitRes(ins.parameters, 10, {"loss": float("nan")}, round_num=ins.round_num)

    coordinator = _coordinator(ws, {"a": ShiftClient(0.1), "b": BrokenClient(diverged)})

    # Act
    run_id = coordinator.start(ws.project.id, INITIAL)
    coordinator.run(run_id)

    # Assert
    rounds = ws.metadata.list_fl_rounds(run_id)
    assert [r.status for r in rounds[1:]] == ["completed", "completed"]
    assert "train_loss" not in rounds[-1].metrics
