"""The worker's own checks: the adapter factory, its command line and a resized group's position."""

from __future__ import annotations

from collections import OrderedDict

import pytest
from _ddp import ADAPTER, KWARGS

from fedloop.core import InvalidInput
from fedloop.distributed import Checkpoint, build_adapter
from fedloop.distributed.worker import _position, main


def test_build_adapter_imports_the_factory_by_name() -> None:
    """A dotted factory with JSON kwargs gives a seeded TorchAdapter of the right width."""
    # Act
    adapter = build_adapter(ADAPTER, KWARGS, num_features=6)

    # Assert
    assert adapter.num_features == 6
    assert adapter.batch_size == 32


@pytest.mark.parametrize(
    ("path", "num_features", "field", "match"),
    [
        pytest.param("no_such_pkg_here:make", None, "adapter", r"cannot be imported", id="module"),
        pytest.param("fedloop.learn:nope", None, "adapter", r"cannot be imported", id="name"),
        pytest.param("fedloop.learn:mlp", None, "adapter", r"not a TorchAdapter", id="type"),
        pytest.param(ADAPTER, 7, "data.x", r"takes 6 features but the data has 7", id="width"),
    ],
)
def test_build_adapter_refuses_what_cannot_train_the_data(
    path: str, num_features: int | None, field: str, match: str
) -> None:
    """An unimportable factory, one that is no TorchAdapter, or a width mismatch: InvalidInput."""
    # Arrange: fedloop.learn:mlp takes in_features, so pass that for the type case
    kwargs = {"in_features": 6} if path.endswith(":mlp") else KWARGS

    # Act / Assert
    with pytest.raises(InvalidInput, match=match) as caught:
        build_adapter(path, kwargs, num_features=num_features)
    assert caught.value.field == field


def test_worker_command_line_needs_one_job_file(capsys: pytest.CaptureFixture[str]) -> None:
    """Started without a job file, the worker prints its usage and exits 2."""
    # Act
    code = main([])

    # Assert
    assert code == 2
    assert "usage: python -m fedloop.distributed JOB.json" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("saved_world", "world", "expected"),
    [
        pytest.param(2, 2, (30, 1, 5), id="same-size"),
        pytest.param(2, 1, (30, 1, 10), id="shrunk"),
        pytest.param(1, 4, (30, 1, 1), id="grown"),
    ],
)
def test_a_resized_group_resumes_at_the_same_rows(
    saved_world: int, world: int, expected: tuple[int, int, int]
) -> None:
    """The position in an epoch is kept in rows: steps scale with the old over the new size."""
    # Arrange
    checkpoint = Checkpoint(
        step=30, epoch=1, step_in_epoch=5, world_size=saved_world, weights=OrderedDict()
    )

    # Act / Assert
    assert _position(checkpoint, world, per_epoch=40) == expected
    assert _position(None, world, per_epoch=40) == (0, 0, 0)
