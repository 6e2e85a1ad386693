"""Checkpoints: safetensors with the position in a JSON tensor, one run artifact per step."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _ddp import config_for

from fedloop.core import IntegrityError, InvalidInput, RunId, encode_parameters
from fedloop.distributed import (
    CHECKPOINT_PREFIX,
    Checkpoint,
    decode_checkpoint,
    encode_checkpoint,
    find_checkpoint,
    list_checkpoints,
    save_checkpoint,
)
from fedloop.store import Workspace, open_workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """Return an empty project."""
    with open_workspace(config_for(tmp_path)) as ws:
        yield ws


def _checkpoint(step: int, *, epoch: int = 0, pos: int = 0) -> Checkpoint:
    weights = OrderedDict([("0.weight", np.full((2, 3), step, dtype=np.float32))])
    optimizer = OrderedDict([("state.0.exp_avg", np.ones((2, 3), dtype=np.float32))])
    return Checkpoint(
        step=step,
        epoch=epoch,
        step_in_epoch=pos,
        world_size=2,
        weights=weights,
        optimizer=optimizer,
        metrics={"train_loss": 0.25},
    )


def _run(ws: Workspace) -> RunId:
    return ws.metadata.create_run(ws.project.id, name="ddp", kind="data-parallel").id


def test_checkpoint_round_trips_bit_for_bit() -> None:
    """Weights, optimizer state, position and metrics survive encode/decode."""
    # Arrange
    original = _checkpoint(40, epoch=1, pos=7)

    # Act
    back = decode_checkpoint(encode_checkpoint(original))

    # Assert
    assert (back.step, back.epoch, back.step_in_epoch, back.world_size) == (40, 1, 7, 2)
    assert back.metrics == {"train_loss": 0.25}
    assert list(back.weights) == ["0.weight"]
    np.testing.assert_array_equal(back.weights["0.weight"], original.weights["0.weight"])
    np.testing.assert_array_equal(
        back.optimizer["state.0.exp_avg"], original.optimizer["state.0.exp_avg"]
    )


def test_plain_tensors_are_not_a_checkpoint() -> None:
    """Safetensors without the position tensor are refused with a typed error."""
    # Arrange
    data = encode_parameters(OrderedDict([("w", np.zeros(3, dtype=np.float32))]))

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"not a fedloop data-parallel checkpoint"):
        decode_checkpoint(data)


def test_latest_checkpoint_is_the_highest_step(workspace: Workspace) -> None:
    """Checkpoints are run artifacts named by step; the latest by step is the one resumed."""
    # Arrange
    run_id = _run(workspace)
    for step in (0, 20, 10):
        save_checkpoint(workspace.metadata, workspace.artifacts, run_id, _checkpoint(step))
    workspace.metadata.record_artifact(run_id, "data/train", digest="a" * 64, size_bytes=1)

    # Act
    found = find_checkpoint(workspace.metadata, workspace.artifacts, run_id)
    listed = list_checkpoints(workspace.metadata, run_id)

    # Assert
    assert found is not None
    assert found.step == 20
    assert [step for step, _ in listed] == [0, 10, 20]
    assert listed[-1][1].name == f"{CHECKPOINT_PREFIX}0000000020"


def test_a_run_without_checkpoints_has_none(workspace: Workspace) -> None:
    """find_checkpoint returns None for a fresh run."""
    # Act / Assert
    assert find_checkpoint(workspace.metadata, workspace.artifacts, _run(workspace)) is None


def test_a_checkpoint_record_pointing_at_other_bytes_is_an_integrity_error(
    workspace: Workspace,
) -> None:
    """A record whose bytes are no checkpoint (or of another step) raises IntegrityError."""
    # Arrange
    run_id = _run(workspace)
    plain = workspace.artifacts.put_bytes(encode_parameters({"w": np.zeros(2, np.float32)}))
    workspace.metadata.record_artifact(
        run_id, f"{CHECKPOINT_PREFIX}0000000005", digest=plain.digest, size_bytes=plain.size_bytes
    )

    # Act / Assert
    with pytest.raises(IntegrityError, match=r"cannot be read"):
        find_checkpoint(workspace.metadata, workspace.artifacts, run_id)


def test_a_checkpoint_under_the_wrong_step_is_an_integrity_error(workspace: Workspace) -> None:
    """A record named step 9 holding step 3 raises IntegrityError."""
    # Arrange
    run_id = _run(workspace)
    ref = workspace.artifacts.put_bytes(encode_checkpoint(_checkpoint(3)))
    workspace.metadata.record_artifact(
        run_id, f"{CHECKPOINT_PREFIX}0000000009", digest=ref.digest, size_bytes=ref.size_bytes
    )

    # Act / Assert
    with pytest.raises(IntegrityError, match=r"holds step 3"):
        find_checkpoint(workspace.metadata, workspace.artifacts, run_id)
