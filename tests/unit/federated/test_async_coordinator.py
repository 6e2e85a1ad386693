"""The asynchronous coordinator: staleness, server steps as rounds, failures and resume."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedloop.core import (
    FederatedConfig,
    FederationError,
    FedloopWarning,
    InvalidInput,
    Parameters,
    RoundTimeout,
    resolve,
)
from fedloop.federated.coordinator import (
    AsyncCoordinator,
    Coordinator,
    RoundReport,
    asynchronous,
    concurrent_fit,
)
from fedloop.federated.messages import FitIns, FitOutcome, FitRes
from fedloop.federated.strategies import FedAvg, FedBuff
from fedloop.federated.transports import InProcessTransport, Transport
from fedloop.store import Workspace, open_workspace

INITIAL: Parameters = OrderedDict(w=np.zeros(3, dtype=np.float32), b=np.zeros(1, dtype=np.float32))


class ShiftClient:
    """Moves every weight by its own offset (after ``delay_s`` seconds of "training")."""

    def __init__(self, offset: float, *, delay_s: float = 0.0) -> None:
        self.offset = offset
        self.delay_s = delay_s
        self.calls = 0

    def fit(self, ins: FitIns) -> FitRes:
        self.calls += 1
        time.sleep(self.delay_s)
        params = OrderedDict(
            (k, (v + self.offset).astype(v.dtype)) for k, v in ins.parameters.items()
        )
        return FitRes(params, 10, {"loss": abs(self.offset)}, round_num=ins.round_num)


class CrashingClient:
    """Fails every time."""

    def fit(self, ins: FitIns) -> FitRes:
        raise RuntimeError("disk full")


class HangingClient:
    """Does not answer until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def fit(self, ins: FitIns) -> FitRes:
        self.calls += 1
        self.release.wait(timeout=10)
        raise RuntimeError("released")


class ScriptedTransport:
    """Clients that finish in virtual time, so the coordinator sees answers in a fixed order.

    A fit sent at virtual time ``t`` finishes at ``t + durations[client]``. A fit returns only
    once ``in_flight`` fits are out and it is the first of them to finish; the coordinator
    sends the next task before the next one may finish, so the run is the same every time.
    """

    concurrent_fit = True

    def __init__(
        self, clients: Mapping[str, Any], durations: Mapping[str, float], *, in_flight: int
    ) -> None:
        self.clients = dict(clients)
        self.durations = dict(durations)
        self.in_flight = in_flight
        self.now = 0.0
        self.log: list[tuple[float, str, int]] = []
        self._cond = threading.Condition()
        self._waiting: list[tuple[float, int]] = []
        self._seq = itertools.count()
        self._closed = False

    def list_clients(self) -> Sequence[str]:
        return sorted(self.clients)

    def fit(
        self,
        round_num: int,
        instructions: Mapping[str, FitIns],
        *,
        timeout_s: float,
        enough: int | None = None,
    ) -> list[FitOutcome]:
        ((client_id, ins),) = instructions.items()
        with self._cond:
            key = (self.now + self.durations[client_id], next(self._seq))
            heapq.heappush(self._waiting, key)
            self._cond.notify_all()
            while not self._closed and not (
                len(self._waiting) >= self.in_flight and self._waiting[0] == key
            ):
                self._cond.wait()
            if self._closed:
                return [FitOutcome(client_id, None, "transport closed")]
            heapq.heappop(self._waiting)
            self.now = key[0]
            self.log.append((self.now, client_id, round_num))
            try:
                result = self.clients[client_id].fit(ins)
            except RuntimeError as err:
                return [FitOutcome(client_id, None, str(err))]
        return [FitOutcome(client_id, result, bytes_up=16, bytes_down=16)]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class OneAtATimeTransport(InProcessTransport):
    """An in-process transport that declares it cannot serve fits concurrently."""

    concurrent_fit = False


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = open_workspace(
        resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    )
    yield workspace
    workspace.close()


@pytest.fixture
def scripted() -> Iterator[list[ScriptedTransport]]:
    made: list[ScriptedTransport] = []
    yield made
    for transport in made:
        transport.close()


def _a_fast_b_slow(made: list[ScriptedTransport]) -> ScriptedTransport:
    """Return a transport where a (+1) answers every 1.0 time units and b (+4) after 3.5."""
    transport = ScriptedTransport(
        {"a": ShiftClient(1.0), "b": ShiftClient(4.0)}, {"a": 1.0, "b": 3.5}, in_flight=2
    )
    made.append(transport)
    return transport


def _coordinator(
    ws: Workspace,
    transport: Transport,
    strategy: Any,
    *,
    cls: type[Coordinator] | type[AsyncCoordinator] = AsyncCoordinator,
    **cfg: Any,
) -> Coordinator | AsyncCoordinator:
    config = FederatedConfig(**{"num_rounds": 4, "clients_per_round": 2, **cfg})
    return cls(transport, strategy, config=config, metadata=ws.metadata, artifacts=ws.artifacts)


def _rows(ws: Workspace, run_id: Any, round_num: int) -> dict[str, Any]:
    return {
        c.client_id: c for _, c in ws.metadata.list_fl_client_rounds(run_id, round_num=round_num)
    }


@pytest.mark.parametrize(
    ("kwargs", "weight"),
    [
        pytest.param({}, 0.5, id="polynomial-1/sqrt(1+3)"),
        pytest.param({"staleness_exponent": 1.0}, 0.25, id="polynomial-1/(1+3)"),
        pytest.param({"staleness": "constant"}, 1.0, id="constant"),
        pytest.param(
            {"staleness": "hinge", "staleness_slope": 1.0, "staleness_cutoff": 1},
            1 / 3,
            id="hinge-1/(1*(3-1)+1)",
        ),
    ],
)
def test_slow_client_is_weighted_by_its_staleness(
    ws: Workspace, scripted: list[ScriptedTransport], kwargs: dict[str, Any], weight: float
) -> None:
    """Client b trains from x0 while a makes three steps; b's delta is weighted for staleness 3."""
    # Arrange
    coordinator = _coordinator(ws, _a_fast_b_slow(scripted), FedBuff(1, **kwargs))
    run_id = coordinator.start(ws.project.id, INITIAL)

    # Act
    final = coordinator.run(run_id)

    # Assert
    # a: x1 = 1, x2 = 2, x3 = 3 (fresh each time); b: delta 4 from x0, three steps old.
    np.testing.assert_allclose(final["w"], np.full(3, 3.0 + 4.0 * weight), rtol=1e-6)
    assert [r.round for r in ws.metadata.list_fl_rounds(run_id)] == [0, 1, 2, 3, 4]
    assert [sorted(_rows(ws, run_id, r)) for r in (1, 2, 3, 4)] == [["a"], ["a"], ["a"], ["b"]]
    assert _rows(ws, run_id, 4)["b"].metrics["staleness"] == 3.0
    assert ws.metadata.list_fl_rounds(run_id)[-1].metrics["staleness_max"] == 3.0
    assert ws.metadata.get_run(run_id).status == "finished"


def test_buffered_updates_are_averaged_over_the_buffer(
    ws: Workspace, scripted: list[ScriptedTransport]
) -> None:
    """With K = 2 a step averages two weighted deltas, each measured from its own base."""
    # Arrange
    transport = ScriptedTransport(
        {"a": ShiftClient(1.0), "b": ShiftClient(3.0)}, {"a": 1.0, "b": 2.5}, in_flight=2
    )
    scripted.append(transport)
    coordinator = _coordinator(ws, transport, FedBuff(2, staleness_exponent=1.0), num_rounds=2)
    run_id = coordinator.start(ws.project.id, INITIAL)

    # Act
    final = coordinator.run(run_id)

    # Assert
    # t=1, t=2: a twice from x0 (delta 1 each) -> x1 = 0 + (1 + 1) / 2 = 1
    # t=2.5: b from x0, one step old: delta 3, weight 1/2; t=3: a from x1, delta 1
    # -> x2 = 1 + (1.5 + 1) / 2 = 2.25
    np.testing.assert_array_equal(final["w"], np.full(3, 2.25, dtype=np.float32))
    step1, step2 = _rows(ws, run_id, 1), _rows(ws, run_id, 2)
    assert list(step1) == ["a"]
    assert step1["a"].metrics["updates"] == 2.0
    assert step1["a"].num_examples == 20
    assert {c: r.metrics["staleness"] for c, r in step2.items()} == {"a": 0.0, "b": 1.0}
    metrics = ws.metadata.list_fl_rounds(run_id)[2].metrics
    assert (metrics["participants"], metrics["staleness_mean"]) == (2.0, 0.5)


def test_tasks_carry_unique_numbers_and_each_starts_from_the_newest_model(
    ws: Workspace, scripted: list[ScriptedTransport]
) -> None:
    """Every fit is one client with its own task number; a is re-sent as soon as it answers."""
    # Arrange
    transport = _a_fast_b_slow(scripted)
    coordinator = _coordinator(ws, transport, FedBuff(1))

    # Act
    coordinator.run(coordinator.start(ws.project.id, INITIAL))

    # Assert
    assert [(t, c) for t, c, _ in transport.log] == [(1.0, "a"), (2.0, "a"), (3.0, "a"), (3.5, "b")]
    numbers = [n for _, _, n in transport.log]
    assert len(set(numbers)) == len(numbers)


def test_coordinator_runs_an_asynchronous_strategy_asynchronously(
    ws: Workspace, scripted: list[ScriptedTransport]
) -> None:
    """Coordinator.run hands FedBuff to the asynchronous loop: the slow update is stale."""
    # Arrange
    coordinator = _coordinator(ws, _a_fast_b_slow(scripted), FedBuff(1), cls=Coordinator)

    # Act
    final = coordinator.run(coordinator.start(ws.project.id, INITIAL))

    # Assert
    np.testing.assert_allclose(final["w"], np.full(3, 5.0))


def test_transport_that_serves_one_fit_at_a_time_falls_back_to_rounds(ws: Workspace) -> None:
    """Without concurrent fits, Coordinator warns and runs synchronous rounds (staleness 0)."""
    # Arrange
    transport = OneAtATimeTransport({"a": ShiftClient(1.0), "b": ShiftClient(3.0)})
    coordinator = _coordinator(ws, transport, FedBuff(2), cls=Coordinator, num_rounds=2)
    run_id = coordinator.start(ws.project.id, INITIAL)

    # Act
    with pytest.warns(FedloopWarning, match=r"synchronous rounds"):
        final = coordinator.run(run_id)

    # Assert
    np.testing.assert_array_equal(final["w"], np.full(3, 4.0, dtype=np.float32))
    assert "staleness_max" not in ws.metadata.list_fl_rounds(run_id)[-1].metrics


def test_async_coordinator_refuses_a_one_fit_transport(ws: Workspace) -> None:
    """AsyncCoordinator itself refuses a transport that declares concurrent_fit = False."""
    # Arrange
    coordinator = _coordinator(ws, OneAtATimeTransport({"a": ShiftClient(1.0)}), FedBuff(1))
    run_id = coordinator.start(ws.project.id, INITIAL)

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"several clients") as info:
        coordinator.run(run_id)
    assert info.value.field == "transport"


def test_async_coordinator_refuses_a_synchronous_strategy(ws: Workspace) -> None:
    """A synchronous rule such as FedAvg cannot be fed one update at a time."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=r"asynchronous strategy") as info:
        _coordinator(ws, InProcessTransport({"a": ShiftClient(1.0)}), FedAvg())
    assert info.value.field == "strategy"


def test_update_older_than_max_staleness_is_rejected_before_the_strategy(
    ws: Workspace, scripted: list[ScriptedTransport]
) -> None:
    """b, three steps old with max_staleness 1, is rejected with a reason and no warning."""
    # Arrange
    coordinator = _coordinator(ws, _a_fast_b_slow(scripted), FedBuff(1, max_staleness=1))
    run_id = coordinator.start(ws.project.id, INITIAL)

    # Act
    final = coordinator.run(run_id)

    # Assert
    np.testing.assert_array_equal(final["w"], np.full(3, 4.0, dtype=np.float32))
    rows = _rows(ws, run_id, 4)
    assert (rows["a"].status, rows["b"].status) == ("ok", "rejected")
    assert "max_staleness is 1" in (rows["b"].reason or "")
    assert ws.metadata.list_fl_rounds(run_id)[-1].metrics["dropouts"] == 1.0


def test_killed_run_resumes_from_the_last_step(
    ws: Workspace, scripted: list[ScriptedTransport]
) -> None:
    """A coordinator that dies after step 2 is replaced; the run ends with 4 valid steps."""
    # Arrange
    first = _coordinator(ws, _a_fast_b_slow(scripted), FedBuff(1))

    def crash_after_two(report: RoundReport) -> None:
        if report.round_num == 2:
            raise RuntimeError("coordinator killed")

    first.on_round = crash_after_two
    run_id = first.start(ws.project.id, INITIAL)
    with pytest.raises(RuntimeError, match=r"killed"):
        first.run(run_id)
    assert ws.metadata.get_run(run_id).status == "failed"

    # Act
    final = _coordinator(ws, _a_fast_b_slow(scripted), FedBuff(1)).run(run_id)

    # Assert
    # Resumed from x2 = 2 with FedBuff's state; b's task was lost, a makes steps 3 and 4.
    np.testing.assert_array_equal(final["w"], np.full(3, 4.0, dtype=np.float32))
    assert [r.round for r in ws.metadata.list_fl_rounds(run_id)] == [0, 1, 2, 3, 4]
    assert ws.metadata.get_run(run_id).status == "finished"
    assert ws.metadata.list_events(kind="federated.*")[-1].subject == f"run:{run_id}/round:4"


def test_in_process_clients_train_concurrently_and_steps_are_recorded(ws: Workspace) -> None:
    """Over real threads every step holds K updates and some updates are stale."""
    # Arrange
    clients = {f"c{i}": ShiftClient(0.01 * (i + 1), delay_s=0.002 * (i + 1)) for i in range(6)}
    reports: list[RoundReport] = []
    coordinator = _coordinator(
        ws, InProcessTransport(clients), FedBuff(2), num_rounds=6, clients_per_round=4
    )
    coordinator.on_round = reports.append
    run_id = coordinator.start(ws.project.id, INITIAL)

    # Act
    coordinator.run(run_id)

    # Assert
    rounds = ws.metadata.list_fl_rounds(run_id)
    assert [r.round for r in rounds] == list(range(7))
    assert all(r.metrics["participants"] == 2.0 for r in rounds[1:])
    assert [r.round_num for r in reports] == list(range(1, 7))
    assert max(r.metrics["staleness_max"] for r in rounds[1:]) >= 1.0


def test_first_fit_runs_alone_on_an_undeclared_transport(ws: Workspace) -> None:
    """A transport that does not declare concurrent_fit gets its first fit alone, then more."""

    # Arrange
    class Probe(InProcessTransport):
        def __init__(self, clients: Mapping[str, Any]) -> None:
            super().__init__(clients)
            self.lock = threading.Lock()
            self.active = 0
            self.seen: list[int] = []

        def fit(self, *args: Any, **kwargs: Any) -> list[FitOutcome]:
            with self.lock:
                self.active += 1
                self.seen.append(self.active)
            try:
                return super().fit(*args, **kwargs)
            finally:
                with self.lock:
                    self.active -= 1

    transport = Probe({c: ShiftClient(1.0, delay_s=0.05) for c in ("a", "b", "c")})
    coordinator = _coordinator(ws, transport, FedBuff(2), num_rounds=3)

    # Act
    coordinator.run(coordinator.start(ws.project.id, INITIAL))

    # Assert
    assert transport.seen[:2] == [1, 1]
    assert max(transport.seen) == 2


def test_unusable_answers_in_a_row_fail_the_run(ws: Workspace) -> None:
    """(max_skipped_rounds + 1) * concurrency failures in a row raise FederationError."""
    # Arrange
    transport = InProcessTransport({"y": CrashingClient(), "z": CrashingClient()})
    coordinator = _coordinator(ws, transport, FedBuff(1), max_skipped_rounds=1)
    run_id = coordinator.start(ws.project.id, INITIAL)

    # Act / Assert
    with pytest.raises(FederationError, match=r"4 client answers in a row") as info:
        coordinator.run(run_id)
    assert info.value.field == "federated.max_skipped_rounds"
    assert ws.metadata.get_run(run_id).status == "failed"


def test_no_available_client_times_out(ws: Workspace) -> None:
    """With every client offline the run fails after round_timeout_s with RoundTimeout."""
    # Arrange
    transport = InProcessTransport({"a": ShiftClient(1.0)})
    transport.offline.add("a")
    coordinator = _coordinator(ws, transport, FedBuff(1), round_timeout_s=0.2)
    run_id = coordinator.start(ws.project.id, INITIAL)

    # Act / Assert
    with pytest.raises(RoundTimeout, match=r"no client could be sent a task") as info:
        coordinator.run(run_id)
    assert info.value.field == "federated.round_timeout_s"


def test_client_past_its_deadline_is_timed_out_and_not_resent(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that never answers times out, frees its slot and gets no task while stuck."""
    # Arrange
    monkeypatch.setattr(asynchronous, "_GRACE_S", 0.0)
    hanging = HangingClient()
    transport = InProcessTransport({"a": ShiftClient(1.0, delay_s=0.02), "h": hanging})
    coordinator = _coordinator(ws, transport, FedBuff(1), num_rounds=20, round_timeout_s=0.15)
    run_id = coordinator.start(ws.project.id, INITIAL)

    # Act
    try:
        coordinator.run(run_id)
    finally:
        hanging.release.set()

    # Assert
    rows = [c for _, c in ws.metadata.list_fl_client_rounds(run_id) if c.client_id == "h"]
    assert [(r.status, "round_timeout_s" in (r.reason or "")) for r in rows] == [("timeout", True)]
    assert hanging.calls == 1


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        pytest.param(True, True, id="declared-true"),
        pytest.param(False, False, id="declared-false"),
        pytest.param(None, None, id="undeclared"),
    ],
)
def test_concurrent_fit_reads_the_declaration(declared: bool | None, expected: bool | None) -> None:
    """concurrent_fit returns what a transport declares, None when it says nothing."""
    # Arrange
    transport = InProcessTransport({})
    if declared is not None:
        transport.concurrent_fit = declared  # type: ignore[attr-defined]

    # Act / Assert
    assert concurrent_fit(transport) is expected


def test_http_transport_declares_one_fit_at_a_time() -> None:
    """The HTTP transport serves one round at a time, so it is not run concurrently."""
    # Arrange
    from fedloop.federated.transports import HttpTransport

    # Act / Assert
    assert HttpTransport.concurrent_fit is False
