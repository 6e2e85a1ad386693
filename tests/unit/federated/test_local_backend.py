"""The process-pool simulation backend: virtual clients in worker processes, no pickle."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fedloop.core import FederatedConfig, InvalidInput, StoreUnavailable, resolve
from fedloop.federated.coordinator import Coordinator
from fedloop.federated.messages import FitIns
from fedloop.federated.simulation import LocalBackend
from fedloop.federated.strategies import FedAvg
from fedloop.learn import TorchAdapter, mlp
from fedloop.store import Workspace, open_workspace

FACTORY = "fedloop.scenarios.fraud.federated:make_client"
SPEC = {"rows": 3000, "num_clients": 4, "partition": "iid", "alpha": 1.0, "seed": 0}
CLIENTS = [f"bank-{i:03d}" for i in range(4)]


@pytest.fixture(scope="module")
def backend() -> Iterator[LocalBackend]:
    pool = LocalBackend(FACTORY, CLIENTS, num_workers=2, kwargs=SPEC)
    yield pool
    pool.close()


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = open_workspace(
        resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    )
    yield workspace
    workspace.close()


def _initial() -> dict[str, np.ndarray]:
    return TorchAdapter(lambda: mlp(30), num_features=30, seed=0).get_parameters()


def test_backend_hosts_many_clients_on_few_workers(backend: LocalBackend) -> None:
    """Four virtual clients share two worker processes."""
    # Act
    pids = backend.worker_pids()

    # Assert
    assert backend.num_workers == 2
    assert len(set(pids)) == 2
    assert list(backend.list_clients()) == CLIENTS


def test_fit_returns_one_outcome_per_client_with_byte_counts(backend: LocalBackend) -> None:
    """Each instructed client answers with trained weights; bytes both ways are counted."""
    # Arrange
    params = _initial()
    instructions = {c: FitIns(1, params, {"local_epochs": 1}) for c in CLIENTS[:3]}

    # Act
    outcomes = backend.fit(1, instructions, timeout_s=120)

    # Assert
    assert sorted(o.client_id for o in outcomes) == CLIENTS[:3]
    assert all(o.result is not None and o.result.num_examples > 0 for o in outcomes)
    assert all(o.bytes_up > 0 and o.bytes_down > 0 for o in outcomes)


def test_pool_run_matches_in_process_run(backend: LocalBackend, ws: Workspace) -> None:
    """The same seeds give the same model whether clients train in workers or in-process."""
    # Arrange
    from fedloop.federated.transports import InProcessTransport
    from fedloop.scenarios.fraud.federated import make_client

    config = FederatedConfig(num_rounds=2, seed=0)
    local = Coordinator(
        backend, FedAvg(), config=config, metadata=ws.metadata, artifacts=ws.artifacts
    )
    inproc = Coordinator(
        InProcessTransport({c: make_client(c, **SPEC) for c in CLIENTS}),  # type: ignore[arg-type]
        FedAvg(),
        config=config,
        metadata=ws.metadata,
        artifacts=ws.artifacts,
    )

    # Act
    a = local.run(local.start(ws.project.id, _initial()))
    b = inproc.run(inproc.start(ws.project.id, _initial()))

    # Assert
    for name in a:
        assert np.array_equal(a[name], b[name])


def test_killed_worker_is_restarted_for_the_next_round(backend: LocalBackend) -> None:
    """A worker killed with SIGKILL between rounds is replaced and its clients still answer."""
    # Arrange
    params = _initial()
    victim = backend.worker_pids()[0]
    assert victim is not None
    os.kill(victim, signal.SIGKILL)

    # Act
    outcomes = backend.fit(1, {c: FitIns(1, params, {}) for c in CLIENTS}, timeout_s=120)

    # Assert
    assert all(o.result is not None for o in outcomes)
    assert backend.worker_pids()[0] not in (None, victim)


def test_bad_factory_path_is_refused() -> None:
    """A factory that is not 'module:function' is refused before any process starts."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=r"module:function") as info:
        LocalBackend("not-a-path", CLIENTS)
    assert info.value.field == "factory"


def test_worker_that_cannot_import_its_factory_fails_the_first_fit() -> None:
    """Workers start in the background; one that cannot import the factory fails the first fit."""
    # Arrange: construction returns at once (workers import in the background)
    pool = LocalBackend("fedloop_no_such_module_xyz:make_client", CLIENTS, num_workers=1)
    params = TorchAdapter(lambda: mlp(30), num_features=30).get_parameters()
    try:
        # Act / Assert
        with pytest.raises(StoreUnavailable, match="exited while starting") as info:
            pool.fit(1, {c: FitIns(1, params, {}) for c in CLIENTS}, timeout_s=60)
        assert info.value.field == "factory"
        assert "fresh Python process" in (info.value.hint or "")
    finally:
        pool.close()
