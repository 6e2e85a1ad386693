"""Secure aggregation over real transports: the process pool and HTTP/2 on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from _http_federation import PARAMS, AddClient, Harness
from fedloop.core import FederatedConfig, Parameters, resolve
from fedloop.federated.coordinator import Coordinator
from fedloop.federated.simulation import LocalBackend
from fedloop.federated.strategies import FedAvg
from fedloop.federated.transports import InProcessTransport
from fedloop.learn import TorchAdapter, mlp
from fedloop.store import Workspace, open_workspace

FACTORY = "fedloop.scenarios.fraud.federated:make_client"
SPEC = {"rows": 3000, "num_clients": 4, "partition": "iid", "alpha": 1.0, "seed": 0}
CLIENTS = [f"bank-{i:03d}" for i in range(4)]


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = open_workspace(
        resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    )
    yield workspace
    workspace.close()


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()
    assert not h.errors, h.errors


def _run(
    ws: Workspace,
    transport: object,
    initial: Parameters,
    *,
    secure: bool,
    stage_timeout_s: float = 30.0,
) -> Parameters:
    config = FederatedConfig(
        num_rounds=2,
        round_timeout_s=60.0,
        secure_aggregation={"enabled": secure, "stage_timeout_s": stage_timeout_s},  # type: ignore[arg-type]
    )
    coordinator = Coordinator(
        transport,  # type: ignore[arg-type]
        FedAvg(),
        config=config,
        metadata=ws.metadata,
        artifacts=ws.artifacts,
    )
    return coordinator.run(coordinator.start(ws.project.id, initial))


def test_secure_rounds_over_the_process_pool_match_plain_fedavg(ws: Workspace) -> None:
    """Torch clients in two worker processes: the secure model equals plain FedAvg's."""
    # Arrange
    from fedloop.scenarios.fraud.federated import make_client

    initial = TorchAdapter(lambda: mlp(30), num_features=30, seed=0).get_parameters()
    pool = LocalBackend(FACTORY, CLIENTS, num_workers=2, kwargs=SPEC)

    # Act
    try:
        secure = _run(ws, pool, initial, secure=True)
    finally:
        pool.close()
    plain = _run(
        ws, InProcessTransport({c: make_client(c, **SPEC) for c in CLIENTS}), initial, secure=False
    )

    # Assert
    for name in initial:
        np.testing.assert_allclose(secure[name], plain[name], atol=1e-6, rtol=0)
    run = ws.metadata.search_runs(ws.project.id, order_by="created_at")[0]
    rows = ws.metadata.list_fl_client_rounds(run.id, round_num=2)
    assert {r.status for _, r in rows} == {"ok"}
    assert all(r.num_examples is None for _, r in rows)  # sizes stay inside the sum


def test_secure_rounds_over_http_match_plain_fedavg(harness: Harness, ws: Workspace) -> None:
    """Three HTTP clients on loopback; one leaves after training: the others' sum is exact."""
    # Arrange: c2 answers one task (round 1's training) and exits, so it drops out after
    # advertising its keys, and is gone for round 2
    clients = {f"c{i}": AddClient(0.1 * (i + 1), examples=10 * (i + 1)) for i in range(3)}
    transport = harness.serve(heartbeat_timeout_s=2.0)
    for client_id, client in clients.items():
        harness.client(transport, client_id, client, max_rounds=1 if client_id == "c2" else None)
    transport.wait_for_clients(3, timeout_s=10)
    stayed = {c: v for c, v in clients.items() if c != "c2"}

    # Act
    secure = _run(ws, transport, PARAMS, secure=True, stage_timeout_s=5.0)
    plain = _run(ws, InProcessTransport(stayed), PARAMS, secure=False)  # type: ignore[arg-type]

    # Assert
    for name in PARAMS:
        np.testing.assert_allclose(secure[name], plain[name], atol=1e-6, rtol=0)
    run = ws.metadata.search_runs(ws.project.id, order_by="created_at")[0]
    rows = dict((r.client_id, r) for _, r in ws.metadata.list_fl_client_rounds(run.id, round_num=1))
    assert rows["c0"].status == rows["c1"].status == "ok"
    assert rows["c2"].status == "timeout"
    assert "stage share" in str(rows["c2"].reason)
    submitted = [r for r in harness.reports if r.status == "submitted"]
    assert len(submitted) == 2 * 4 * 2 + 1  # two clients x four stages x two rounds, + c2's one


def test_per_client_settings_travel_in_frames_of_their_own(ws: Workspace) -> None:
    """Settings too big to send every client's in one frame header still reach each client."""
    # Arrange: each client gets ~400 KiB of settings; all four in one header would pass 1 MiB
    from fedloop.federated.messages import FitIns

    pool = LocalBackend(FACTORY, CLIENTS, num_workers=1, kwargs=SPEC)
    initial = TorchAdapter(lambda: mlp(30), num_features=30, seed=0).get_parameters()
    instructions = {
        c: FitIns(1, initial, {"local_epochs": 1, "note": c * (400_000 // len(c))}) for c in CLIENTS
    }

    # Act
    try:
        outcomes = pool.fit(1, instructions, timeout_s=60)
    finally:
        pool.close()

    # Assert
    assert sorted(o.client_id for o in outcomes) == CLIENTS
    assert all(o.result is not None for o in outcomes), [o.error for o in outcomes]
