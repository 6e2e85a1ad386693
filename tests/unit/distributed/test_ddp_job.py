"""The job spec and the checks made before any worker starts: worker count and rendezvous."""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

import pytest
from _ddp import ADAPTER, KWARGS

from fedloop.core import DistributedConfig, InvalidInput, RendezvousError
from fedloop.distributed import JobSpec, check_workers, rendezvous_endpoint, steps_per_epoch


def _job(**changes: object) -> JobSpec:
    values: dict[str, object] = {
        "run_id": "r" * 32,
        "store_url": "sqlite:///x.db",
        "artifacts_url": "/tmp/artifacts",
        "adapter": ADAPTER,
        "adapter_kwargs": KWARGS,
        "data_digest": "0" * 64,
        "num_rows": 100,
        "num_features": 6,
        "batch_size": 32,
        "epochs": 2,
        "checkpoint_every_steps": 10,
    }
    return JobSpec.model_validate(values | changes)


def test_job_spec_round_trips_through_a_private_json_file(tmp_path: Path) -> None:
    """A written spec reads back equal, and only its owner can read it (it may hold a password)."""
    # Arrange
    job = _job()

    # Act
    path = job.write(tmp_path / "jobs" / "job.json")

    # Assert
    assert JobSpec.read(path) == job
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_reading_a_bad_job_file_is_a_typed_error(tmp_path: Path) -> None:
    """A job file that is not a spec raises InvalidInput naming the job."""
    # Arrange
    path = tmp_path / "job.json"
    path.write_text('{"run_id": 1}', encoding="utf-8")

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"cannot read the job spec") as caught:
        JobSpec.read(path)
    assert caught.value.field == "job"


@pytest.mark.parametrize(
    ("rows", "world", "batch", "steps"),
    [
        pytest.param(100, 1, 32, 4, id="one-rank"),
        pytest.param(100, 2, 32, 2, id="two-ranks"),
        pytest.param(101, 2, 51, 1, id="padded-shard"),
        pytest.param(160_000, 2, 64, 1250, id="w-ddp"),
    ],
)
def test_steps_per_epoch_counts_each_ranks_padded_shard(
    rows: int, world: int, batch: int, steps: int
) -> None:
    """Every rank gets ceil(rows / world) rows, so every rank takes the same number of steps."""
    # Act / Assert
    assert steps_per_epoch(rows, world, batch) == steps


@pytest.mark.parametrize(
    ("workers", "rows", "backend", "gpus", "match"),
    [
        pytest.param(0, 10, "gloo", 0, r"must be an int in \[1, 1024\]", id="zero"),
        pytest.param(True, 10, "gloo", 0, r"must be an int", id="bool"),
        pytest.param(2000, 10_000, "gloo", 0, r"must be an int in", id="too-many"),
        pytest.param(11, 10, "gloo", 0, r"only 10 rows", id="more-than-rows"),
        pytest.param(2, 10, "nccl", 1, r"one GPU per worker and 1 are visible", id="gpus"),
    ],
)
def test_bad_worker_counts_are_refused(
    workers: int, rows: int, backend: str, gpus: int, match: str
) -> None:
    """A worker count that cannot train raises InvalidInput naming distributed.workers."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=match) as caught:
        check_workers(workers, num_rows=rows, backend=backend, gpus=gpus)
    assert caught.value.field == "distributed.workers"


def test_a_good_worker_count_passes() -> None:
    """Two CPU workers for a thousand rows are fine."""
    # Act / Assert
    check_workers(2, num_rows=1_000, backend="gloo")


def test_local_rendezvous_with_port_zero_gets_a_free_port() -> None:
    """127.0.0.1:0 becomes a free port of this machine, which hosts the rendezvous."""
    # Act
    endpoint, local = rendezvous_endpoint(DistributedConfig())

    # Assert
    host, port = endpoint.rsplit(":", 1)
    assert (host, local) == ("127.0.0.1", True)
    assert 0 < int(port) < 65_536


def test_reachable_remote_rendezvous_is_used_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    """An endpoint on another host that accepts connections is joined as given."""
    # Arrange: a listener stands in for the first node's store; loopback poses as remote
    import fedloop.distributed.job as job_module

    monkeypatch.setattr(job_module, "_is_local", lambda host: False)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        config = DistributedConfig(rendezvous=f"127.0.0.1:{port}")

        # Act
        endpoint, local = rendezvous_endpoint(config)

    # Assert
    assert (endpoint, local) == (f"127.0.0.1:{port}", False)


def test_unreachable_rendezvous_fails_within_its_timeout() -> None:
    """A remote endpoint nobody serves raises RendezvousError, field and hint, within the timeout."""
    # Arrange: TEST-NET-1 (RFC 5737) is never this machine and never routed
    config = DistributedConfig(rendezvous="192.0.2.1:29400", rendezvous_timeout_s=1.0)
    started = time.monotonic()

    # Act / Assert
    with pytest.raises(RendezvousError, match=r"cannot be reached") as caught:
        rendezvous_endpoint(config)
    assert time.monotonic() - started < 5
    assert caught.value.field == "distributed.rendezvous"
    assert caught.value.hint is not None
    assert "127.0.0.1:0" in caught.value.hint


def test_remote_rendezvous_needs_a_port() -> None:
    """Port 0 cannot be picked on another host."""
    # Act / Assert
    with pytest.raises(RendezvousError, match=r"on another host") as caught:
        rendezvous_endpoint(DistributedConfig(rendezvous="192.0.2.1:0"))
    assert caught.value.field == "distributed.rendezvous"


def test_unknown_host_is_unreachable() -> None:
    """A name that does not resolve is an unreachable rendezvous, not a crash."""
    # Act / Assert
    with pytest.raises(RendezvousError):
        rendezvous_endpoint(
            DistributedConfig(rendezvous="no-such-host.invalid:29400", rendezvous_timeout_s=1.0)
        )
