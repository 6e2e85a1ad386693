"""The Ray simulation backend: one actor per CPU hosting many virtual clients, no pickled arrays."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedloop.core import FederatedConfig, InvalidInput, MissingExtraError, Parameters, resolve
from fedloop.federated.coordinator import Coordinator
from fedloop.federated.messages import FitIns, FitOutcome, FitRes
from fedloop.federated.strategies import FedAvg
from fedloop.store import Workspace, open_workspace

pytestmark = pytest.mark.ray

HERE = Path(__file__).resolve().parent
# The actors import this module by name: the module Ray session puts HERE on their PYTHONPATH.
FACTORY = f"{__name__}:make_shift_client"
CLIENTS = [f"c-{i:03d}" for i in range(4)]
BROKEN = "x-broken"
INITIAL: Parameters = OrderedDict(w=np.zeros(3, dtype=np.float32), b=np.zeros(1, dtype=np.float32))
HALF_CPU = {"num_cpus": 0.5}  # two backends share the 2-CPU session

FRAUD_FACTORY = "fedloop.scenarios.fraud.federated:make_client"
FRAUD_SPEC = {"rows": 3000, "num_clients": 4, "partition": "iid", "alpha": 1.0, "seed": 0}
BANKS = [f"bank-{i:03d}" for i in range(4)]


class ShiftClient:
    """Moves every weight by ``offset``; sleeps as the round's config says; reports its pid."""

    def __init__(self, client_id: str, offset: float) -> None:
        self.client_id = client_id
        self.offset = offset
        self.calls = 0

    def fit(self, ins: FitIns) -> FitRes:
        self.calls += 1
        time.sleep(float(dict(ins.config.get("sleep_s", {})).get(self.client_id, 0.0)))
        params = OrderedDict(
            (k, (v + self.offset).astype(v.dtype)) for k, v in ins.parameters.items()
        )
        metrics = {"pid": float(os.getpid()), "calls": float(self.calls)}
        return FitRes(params, 10, metrics, round_num=ins.round_num)


def make_shift_client(client_id: str, *, offset: float = 1.0) -> ShiftClient:
    """Build the test's client; raise for the client that has no data."""
    if client_id == BROKEN:
        raise ValueError(f"no data for {client_id}")
    return ShiftClient(client_id, offset)


@pytest.fixture(scope="module")
def backend() -> Iterator[Any]:
    """Yield a backend that starts (and at the end stops) the module's 2-CPU local Ray."""
    ray = pytest.importorskip("ray")
    from fedloop.federated.simulation import RayBackend

    if ray.is_initialized():
        pytest.skip("another Ray session is already running in this process")
    pool = RayBackend(
        FACTORY,
        [*CLIENTS, BROKEN],
        num_actors=2,
        kwargs={"offset": 1.0},
        actor_options=HALF_CPU,
        init_options={"num_cpus": 2, "runtime_env": {"env_vars": {"PYTHONPATH": str(HERE)}}},
    )
    yield pool
    pool.close()


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = open_workspace(
        resolve({"project": {"dir": str(tmp_path / ".fedloop")}}, {}, {}).config
    )
    yield workspace
    workspace.close()


def _fit(
    pool: Any,
    clients: Sequence[str] = CLIENTS,
    *,
    config: Mapping[str, Any] | None = None,
    timeout_s: float = 60,
    enough: int | None = None,
) -> dict[str, FitOutcome]:
    instructions = {c: FitIns(1, INITIAL, dict(config or {})) for c in clients}
    outcomes = pool.fit(1, instructions, timeout_s=timeout_s, enough=enough)
    assert sorted(o.client_id for o in outcomes) == sorted(clients)
    return {o.client_id: o for o in outcomes}


def _pid(outcome: FitOutcome) -> float:
    assert outcome.result is not None, outcome.error
    return outcome.result.metrics["pid"]


def _wait_until_dead(ray: Any, actor: Any) -> None:
    """Return once the killed actor refuses calls (ray.kill is asynchronous)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            ray.get(actor.ping.remote(), timeout=10)
        except ray.exceptions.RayActorError:
            return
        time.sleep(0.05)
    pytest.fail("the killed actor still answers")


def test_actors_host_many_clients_with_a_fixed_placement(backend: Any) -> None:
    """Four clients share two actors (client i on actor i % 2) and are kept between rounds."""
    # Act
    first = _fit(backend)
    second = _fit(backend)

    # Assert
    assert backend.num_actors == 2
    assert backend.owns_ray
    assert list(backend.list_clients()) == [*CLIENTS, BROKEN]
    assert _pid(first["c-000"]) == _pid(first["c-002"]) != _pid(first["c-001"])
    assert _pid(first["c-001"]) == _pid(first["c-003"])
    assert all(o.result is not None and o.result.metrics["calls"] == 2 for o in second.values())


def test_fit_returns_trained_weights_with_byte_counts(backend: Any) -> None:
    """Each client answers with its decoded update; bytes both ways are counted."""
    # Act
    outcomes = _fit(backend)

    # Assert
    for outcome in outcomes.values():
        assert outcome.result is not None
        np.testing.assert_array_equal(outcome.result.parameters["w"], np.ones(3, np.float32))
        assert outcome.result.round_num == 1
        assert outcome.bytes_up > 0
        assert outcome.bytes_down > 0


def test_factory_that_raises_fails_only_its_client(backend: Any) -> None:
    """A client whose factory raises is a failed outcome with the error; the others train."""
    # Act
    outcomes = _fit(backend, [*CLIENTS, BROKEN])

    # Assert
    assert outcomes[BROKEN].result is None
    assert not outcomes[BROKEN].timed_out
    assert "ValueError: no data for x-broken" in (outcomes[BROKEN].error or "")
    assert all(outcomes[c].result is not None for c in CLIENTS)


def test_clients_past_the_deadline_time_out(backend: Any) -> None:
    """A stuck client and the one queued behind it time out; its actor is killed and replaced."""
    # Arrange
    stuck = backend.actor_handles()[1]

    # Act
    started = time.monotonic()
    outcomes = _fit(backend, config={"sleep_s": {"c-001": 30.0}}, timeout_s=2.0)
    elapsed = time.monotonic() - started
    after = _fit(backend)

    # Assert
    assert elapsed < 10
    assert [c for c, o in sorted(outcomes.items()) if o.timed_out] == ["c-001", "c-003"]
    assert "deadline" in (outcomes["c-001"].error or "")
    assert outcomes["c-000"].result is not None
    assert outcomes["c-002"].result is not None
    assert all(o.result is not None for o in after.values())
    assert backend.actor_handles()[1] is not stuck


def test_enough_answers_end_the_round_without_killing_actors(backend: Any) -> None:
    """Once `enough` clients succeeded the rest are reported not needed; no actor is killed."""
    # Arrange
    _fit(backend)  # both actors up
    handles = backend.actor_handles()

    # Act
    outcomes = _fit(backend, config={"sleep_s": {"c-001": 1.5}}, enough=2)
    after = _fit(backend)

    # Assert
    assert outcomes["c-000"].result is not None
    assert outcomes["c-002"].result is not None
    assert outcomes["c-001"].timed_out
    assert "not needed" in (outcomes["c-001"].error or "")
    assert backend.actor_handles() == handles
    assert all(o.result is not None for o in after.values())


def test_actor_killed_between_rounds_is_replaced_transparently(backend: Any) -> None:
    """An actor killed with ray.kill between rounds is replaced and its clients still answer."""
    # Arrange
    ray = pytest.importorskip("ray")
    before = _fit(backend)
    victim = backend.actor_handles()[0]
    ray.kill(victim)
    _wait_until_dead(ray, victim)

    # Act
    outcomes = _fit(backend)

    # Assert
    assert all(o.result is not None for o in outcomes.values())
    assert _pid(outcomes["c-000"]) != _pid(before["c-000"])


def test_actor_killed_mid_round_fails_its_clients_then_recovers(backend: Any) -> None:
    """Killing an actor mid-round fails its clients; the round completes and the next works."""
    # Arrange
    ray = pytest.importorskip("ray")
    _fit(backend)  # both actors up and answering
    victim = backend.actor_handles()[0]
    timer = threading.Timer(0.5, ray.kill, args=(victim,))
    sleepy = {"sleep_s": dict.fromkeys(CLIENTS, 1.5)}  # the kill lands during c-000

    # Act
    timer.start()
    outcomes = _fit(backend, config=sleepy)
    timer.join()
    after = _fit(backend)

    # Assert
    for client_id in ("c-000", "c-002"):
        assert outcomes[client_id].result is None
        assert not outcomes[client_id].timed_out
        assert "died during the round" in (outcomes[client_id].error or "")
    assert outcomes["c-001"].result is not None
    assert outcomes["c-003"].result is not None
    assert all(o.result is not None for o in after.values())


def test_ray_run_matches_in_process_run(backend: Any, ws: Workspace) -> None:
    """The same seeds give the same model, bit for bit, in Ray actors or in this process."""
    # Arrange
    from fedloop.federated.simulation import RayBackend
    from fedloop.federated.transports import InProcessTransport
    from fedloop.learn import TorchAdapter, mlp
    from fedloop.scenarios.fraud.federated import make_client

    initial = TorchAdapter(lambda: mlp(30), num_features=30, seed=0).get_parameters()
    config = FederatedConfig(num_rounds=2, seed=0)
    with RayBackend(
        FRAUD_FACTORY, BANKS, num_actors=2, kwargs=FRAUD_SPEC, actor_options=HALF_CPU
    ) as pool:
        on_ray = Coordinator(
            pool, FedAvg(), config=config, metadata=ws.metadata, artifacts=ws.artifacts
        )
        in_process = Coordinator(
            InProcessTransport({c: make_client(c, **FRAUD_SPEC) for c in BANKS}),  # type: ignore[arg-type]
            FedAvg(),
            config=config,
            metadata=ws.metadata,
            artifacts=ws.artifacts,
        )

        # Act
        run_id = on_ray.start(ws.project.id, initial)
        a = on_ray.run(run_id)
        b = in_process.run(in_process.start(ws.project.id, initial))

    # Assert
    assert not pool.owns_ray
    assert list(a) == list(b)
    for name in a:
        assert np.array_equal(a[name], b[name])
    rows = ws.metadata.list_fl_client_rounds(run_id, round_num=2)
    assert {c.status for _, c in rows} == {"ok"}


def test_secure_rounds_on_ray_match_plain_fedavg(backend: Any, ws: Workspace) -> None:
    """Secure aggregation's per-client stage messages reach each client on its actor."""
    # Arrange
    config = FederatedConfig(
        num_rounds=1,
        secure_aggregation={"enabled": True},  # type: ignore[arg-type]
    )
    coordinator = Coordinator(
        backend, FedAvg(), config=config, metadata=ws.metadata, artifacts=ws.artifacts
    )

    # Act
    final = coordinator.run(coordinator.start(ws.project.id, INITIAL))

    # Assert: every ShiftClient moves every weight by 1.0 (the broken client is left out)
    for name, value in INITIAL.items():
        np.testing.assert_allclose(final[name], value + 1.0, atol=1e-6, rtol=0)


def test_factory_the_actors_cannot_import_is_refused(backend: Any) -> None:
    """A factory module missing in the actors raises InvalidInput naming the factory."""
    # Arrange
    from fedloop.federated.simulation import RayBackend

    pool = RayBackend("no_such_module:make", CLIENTS, num_actors=1, actor_options=HALF_CPU)

    # Act / Assert
    with pool, pytest.raises(InvalidInput, match=r"no_such_module") as info:
        _fit(pool)
    assert info.value.field == "factory"


def test_more_actors_than_cpus_is_refused(backend: Any) -> None:
    """Asking for more one-CPU actors than the cluster has CPUs raises InvalidInput."""
    # Arrange
    from fedloop.federated.simulation import RayBackend

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"2 CPUs") as info:
        RayBackend(FACTORY, [f"c-{i}" for i in range(8)], num_actors=8)
    assert info.value.field == "num_actors"


def test_unknown_client_in_a_round_is_refused(backend: Any) -> None:
    """Instructions for a client the backend does not host raise InvalidInput."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=r"nobody") as info:
        backend.fit(1, {"nobody": FitIns(1, INITIAL, {})}, timeout_s=10)
    assert info.value.field == "instructions"


@pytest.mark.parametrize(
    ("factory", "clients", "num_actors", "field"),
    [
        pytest.param("not-a-path", CLIENTS, None, "factory", id="factory-path"),
        pytest.param(FACTORY, [], None, "client_ids", id="no-clients"),
        pytest.param(FACTORY, CLIENTS, 0, "num_actors", id="zero-actors"),
    ],
)
def test_bad_arguments_are_refused_before_ray_is_touched(
    factory: str, clients: list[str], num_actors: int | None, field: str
) -> None:
    """A malformed factory path, no clients or zero actors raise InvalidInput on the field."""
    # Arrange
    from fedloop.federated.simulation import RayBackend

    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        RayBackend(factory, clients, num_actors=num_actors)
    assert info.value.field == field


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Ray the backend raises MissingExtraError with the pip command."""
    # Arrange
    from fedloop.federated.simulation import RayBackend

    monkeypatch.setitem(sys.modules, "ray", None)

    # Act / Assert
    with pytest.raises(MissingExtraError, match=r"Ray simulation") as info:
        RayBackend(FACTORY, CLIENTS)
    assert 'pip install "fedloop[ray]"' in (info.value.hint or "")


def test_simulation_package_does_not_import_ray() -> None:
    """Importing the simulation package and naming RayBackend leaves Ray unimported."""
    # Arrange
    code = (
        "import sys\n"
        "from fedloop.federated.simulation import RayBackend, LocalBackend\n"
        "print('ray' in sys.modules)\n"
    )

    # Act
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )

    # Assert
    assert result.stdout.strip() == "False"
