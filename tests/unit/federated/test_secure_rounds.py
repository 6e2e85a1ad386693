"""Secure aggregation in the rounds: exact sums, dropouts at every stage, what the coordinator sees."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedloop.core import ConfigError, FederatedConfig, Parameters, resolve
from fedloop.federated.coordinator import Coordinator
from fedloop.federated.coordinator.secure import secure_threshold
from fedloop.federated.messages import FitIns, FitOutcome, FitRes
from fedloop.federated.secagg.codec import MASKED_KEY
from fedloop.federated.secagg.participant import answer_secure_task, update_vector
from fedloop.federated.strategies import DPFedAvg, FedAdam, FedAvg, Krum, Strategy
from fedloop.federated.transports import InProcessTransport
from fedloop.store import Workspace, open_workspace

INITIAL: Parameters = OrderedDict(
    w=np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3),
    b=np.zeros(2, dtype=np.float32),
    steps=np.array([4], dtype=np.int64),
)
TOL = 1e-5


class StepClient:
    """Moves each float weight by its own offset (a different one per tensor element)."""

    def __init__(self, offset: float, examples: int) -> None:
        self.offset = offset
        self.examples = examples

    def fit(self, ins: FitIns) -> FitRes:
        out = OrderedDict()
        for name, value in ins.parameters.items():
            if value.dtype.kind == "f":
                ramp = np.arange(value.size, dtype=np.float64).reshape(value.shape) / 10
                out[name] = (value + self.offset * (1 + ramp)).astype(value.dtype)
            else:
                out[name] = value + 1
        return FitRes(out, self.examples, {"loss": self.offset}, round_num=ins.round_num)


def _clients(count: int = 5) -> dict[str, StepClient]:
    return {f"c{i}": StepClient(0.1 * (i + 1) * (-1) ** i, 10 * (i + 1)) for i in range(count)}


class StageDrops(InProcessTransport):
    """In-process clients, but some clients vanish at a chosen stage; every outcome is kept."""

    def __init__(self, clients: Mapping[str, Any], drops: Mapping[str, str] | None = None) -> None:
        super().__init__(dict(clients))
        self.drops = dict(drops or {})
        self.seen: list[tuple[str, FitOutcome]] = []

    def fit(
        self,
        round_num: int,
        instructions: Mapping[str, FitIns],
        *,
        timeout_s: float,
        enough: int | None = None,
    ) -> list[FitOutcome]:
        stage = "plain"
        keep: dict[str, FitIns] = {}
        vanished: list[FitOutcome] = []
        for client_id, ins in instructions.items():
            secagg = ins.config.get("secagg")
            stage = secagg["stage"] if isinstance(secagg, dict) else "plain"
            if self.drops.get(client_id) == stage:
                vanished.append(FitOutcome(client_id, None, "gone", timed_out=True))
            else:
                keep[client_id] = ins
        outcomes = super().fit(round_num, keep, timeout_s=timeout_s, enough=enough) + vanished
        self.seen.extend((stage, o) for o in outcomes)
        return outcomes


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = open_workspace(
        resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    )
    yield workspace
    workspace.close()


def _run(
    ws: Workspace,
    transport: Any,
    strategy: Strategy,
    *,
    secure: bool,
    **cfg: Any,
) -> tuple[Parameters, str]:
    config = FederatedConfig(
        **{"num_rounds": 2, "secure_aggregation": {"enabled": secure}, **cfg}  # type: ignore[arg-type]
    )
    coordinator = Coordinator(
        transport, strategy, config=config, metadata=ws.metadata, artifacts=ws.artifacts
    )
    run_id = coordinator.start(ws.project.id, INITIAL)
    return coordinator.run(run_id), str(run_id)


def _assert_close(a: Parameters, b: Parameters) -> None:
    assert list(a) == list(b)
    for name in a:
        assert a[name].dtype == b[name].dtype
        np.testing.assert_allclose(a[name], b[name], atol=TOL, rtol=0)


# -- exact sums ------------------------------------------------------------------------------
@pytest.mark.parametrize("dropped", [0, 1, 2])
@pytest.mark.parametrize("stage", ["share", "mask"])
def test_secure_fedavg_equals_plain_fedavg_of_the_survivors(
    ws: Workspace, dropped: int, stage: str
) -> None:
    """With 0, 1 or 2 clients gone after sharing keys, the model is FedAvg of the others."""
    # Arrange
    clients = _clients(5)
    gone = {f"c{i}": stage for i in range(dropped)}
    survivors = {c: v for c, v in clients.items() if c not in gone}

    # Act
    secure, run_id = _run(ws, StageDrops(clients, gone), FedAvg(), secure=True)
    plain, _ = _run(ws, InProcessTransport(survivors), FedAvg(), secure=False)  # type: ignore[arg-type]

    # Assert
    _assert_close(secure, plain)
    rows = ws.metadata.list_fl_client_rounds(run_id, round_num=2)  # type: ignore[arg-type]
    status = {r.client_id: r.status for _, r in rows}
    assert {c for c, s in status.items() if s == "ok"} == set(survivors)
    for client_id in gone:
        reason = next(r.reason for _, r in rows if r.client_id == client_id)
        assert status[client_id] == "timeout"
        assert f"stage {stage}" in str(reason)
    metrics = ws.metadata.list_fl_rounds(run_id)[-1].metrics  # type: ignore[arg-type]
    assert metrics["participants"] == len(survivors)
    assert metrics["secagg_survivors"] == len(survivors)
    assert metrics["dropouts"] == dropped


def test_a_client_gone_at_unmask_is_still_in_the_sum(ws: Workspace) -> None:
    """A client whose masked update arrived stays in the sum if it misses the unmask stage."""
    # Arrange
    clients = _clients(5)

    # Act
    secure, run_id = _run(ws, StageDrops(clients, {"c4": "unmask"}), FedAvg(), secure=True)
    plain, _ = _run(ws, InProcessTransport(clients), FedAvg(), secure=False)  # type: ignore[arg-type]

    # Assert
    _assert_close(secure, plain)
    rows = ws.metadata.list_fl_client_rounds(run_id, round_num=1)  # type: ignore[arg-type]
    assert {r.status for _, r in rows} == {"ok"}


def test_a_client_gone_before_advertising_is_simply_not_in_the_round(ws: Workspace) -> None:
    """A client that fails to train is out before keys are shared; the others aggregate."""
    # Arrange
    clients = _clients(4)
    others = {c: v for c, v in clients.items() if c != "c1"}

    # Act
    secure, _ = _run(ws, StageDrops(clients, {"c1": "train"}), FedAvg(), secure=True)
    plain, _ = _run(ws, InProcessTransport(others), FedAvg(), secure=False)  # type: ignore[arg-type]

    # Assert
    _assert_close(secure, plain)


def test_too_many_dropouts_skip_the_round_and_keep_the_model(ws: Workspace) -> None:
    """Fewer survivors than the threshold: no sum, the round is skipped with the reason."""
    # Arrange: 5 clients, threshold 3; three vanish at the mask stage
    gone = {"c0": "mask", "c1": "mask", "c2": "mask"}

    # Act
    final, run_id = _run(ws, StageDrops(_clients(5), gone), FedAvg(), secure=True, num_rounds=1)

    # Assert
    _assert_close(final, INITIAL)
    rounds = ws.metadata.list_fl_rounds(run_id)  # type: ignore[arg-type]
    assert rounds[-1].status == "skipped"
    rows = ws.metadata.list_fl_client_rounds(run_id, round_num=1)  # type: ignore[arg-type]
    assert not [r for _, r in rows if r.status == "ok"]
    assert any("threshold" in str(r.reason) for _, r in rows if r.status == "unused")


@pytest.mark.parametrize(
    "make",
    [
        lambda: FedAdam(eta=0.1),
        lambda: DPFedAvg(noise_multiplier=0.5, clip_norm=0.3, seed=7),
        lambda: DPFedAvg(
            noise_multiplier=0.2,
            clip_norm=0.3,
            adaptive_clipping=True,
            expected_clients_per_round=5,
            seed=7,
        ),
    ],
    ids=["fedadam", "dpfedavg", "dpfedavg-adaptive"],
)
def test_secure_rules_match_their_plain_versions(ws: Workspace, make: Any) -> None:
    """FedAdam and DP-FedAvg (clients clip before masking) give the plain result from sums."""
    # Arrange
    clients = _clients(5)

    # Act
    secure, secure_run = _run(ws, InProcessTransport(clients), make(), secure=True)  # type: ignore[arg-type]
    plain, plain_run = _run(ws, InProcessTransport(clients), make(), secure=False)  # type: ignore[arg-type]

    # Assert
    _assert_close(secure, plain)
    a = ws.metadata.list_fl_rounds(secure_run)[-1].metrics  # type: ignore[arg-type]
    b = ws.metadata.list_fl_rounds(plain_run)[-1].metrics  # type: ignore[arg-type]
    assert a["train_loss"] == pytest.approx(b["train_loss"])
    for key in ("dp_epsilon", "dp_clip_norm"):
        if key in b:
            assert a[key] == pytest.approx(b[key])


# -- what the coordinator sees ---------------------------------------------------------------
def test_the_coordinator_never_receives_an_update_or_an_example_count(ws: Workspace) -> None:
    """Only keys, sealed shares, masked vectors and mask shares reach the coordinator."""
    # Arrange
    clients = _clients(4)
    transport = StageDrops(clients)

    # Act
    _run(ws, transport, FedAvg(), secure=True, num_rounds=1)

    # Assert
    stages = {stage for stage, _ in transport.seen}
    assert stages == {"train", "share", "mask", "unmask"}
    for stage, outcome in transport.seen:
        assert outcome.result is not None
        assert outcome.result.num_examples == 0
        assert not outcome.result.metrics
        names = set(outcome.result.parameters)
        assert names.isdisjoint(INITIAL), f"{stage} answer carries model tensors"
        if stage == "mask":
            masked = outcome.result.parameters[MASKED_KEY].astype(np.float64)
            plain = update_vector(
                clients[outcome.client_id].fit(FitIns(1, INITIAL)).parameters,
                INITIAL,
                weight=float(clients[outcome.client_id].examples),
                clip_norm=None,
                loss=clients[outcome.client_id].offset,
                examples=clients[outcome.client_id].examples,
            )
            encoded = np.rint(plain * 2.0**20)
            assert not np.isin(encoded, masked).any()
            assert abs(np.corrcoef(masked, plain)[0, 1]) < 0.9


def test_rules_that_need_each_update_are_refused_with_secure_aggregation(ws: Workspace) -> None:
    """Krum needs individual updates: the coordinator refuses it, naming the setting."""
    with pytest.raises(ConfigError) as info:
        _run(ws, InProcessTransport(_clients(3)), Krum(num_byzantine=0), secure=True)  # type: ignore[arg-type]
    assert info.value.field == "federated.secure_aggregation.enabled"


def test_update_norm_check_and_secure_aggregation_cannot_be_combined() -> None:
    """max_update_norm would need each update; the config says so and how to bound updates."""
    with pytest.raises(ConfigError) as info:
        resolve(
            {"federated": {"max_update_norm": 1.0, "secure_aggregation": {"enabled": True}}},
            {},
            {},
        )
    assert "federated" in str(info.value.field)
    assert "clip_norm" in info.value.message


def test_an_update_beyond_the_fixed_point_range_leaves_the_round(ws: Workspace) -> None:
    """A client whose weighted update would be clipped drops out with that reason."""
    # Arrange
    clients = _clients(4)
    clients["c3"] = StepClient(1e9, 10)

    # Act
    _, run_id = _run(ws, InProcessTransport(clients), FedAvg(), secure=True, num_rounds=1)  # type: ignore[arg-type]

    # Assert
    rows = ws.metadata.list_fl_client_rounds(run_id, round_num=1)  # type: ignore[arg-type]
    reason = next(r.reason for _, r in rows if r.client_id == "c3")
    assert "secure_aggregation" in str(reason) or "range" in str(reason)


def test_a_stage_for_a_session_the_client_does_not_hold_is_refused() -> None:
    """A share task for an unknown session fails clearly instead of leaking or crashing."""
    ins = FitIns(
        1,
        OrderedDict(),
        {"task": "secagg", "secagg": {"stage": "share", "session": "nope", "client_id": "zz"}},
    )
    with pytest.raises(Exception, match="holds no secure-aggregation session"):
        answer_secure_task(StepClient(0.1, 1).fit, ins)


def test_threshold_is_a_majority_of_the_share_group() -> None:
    """floor(0.5 n) + 1 of the roster, or of a SecAgg+ neighbourhood; never below 2."""
    assert secure_threshold(0.5, 5, None) == 3
    assert secure_threshold(0.5, 2, None) == 2
    assert secure_threshold(0.5, 100, 8) == 5
    assert secure_threshold(0.0, 10, None) == 2


def test_secagg_plus_neighbourhoods_give_the_same_sum(ws: Workspace) -> None:
    """With 4 neighbours out of 9 clients the sum is still exact, with one dropout."""
    # Arrange
    clients = _clients(9)
    survivors = {c: v for c, v in clients.items() if c != "c5"}

    # Act
    secure, _ = _run(
        ws,
        StageDrops(clients, {"c5": "mask"}),
        FedAvg(),
        secure=True,
        secure_aggregation={"enabled": True, "neighbours": 4},
    )
    plain, _ = _run(ws, InProcessTransport(survivors), FedAvg(), secure=False)  # type: ignore[arg-type]

    # Assert
    _assert_close(secure, plain)
