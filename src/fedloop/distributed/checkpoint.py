"""Checkpoints of a data-parallel run: safetensors in the artifact store, one run artifact each."""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from fedloop.core import (
    IntegrityError,
    InvalidInput,
    Parameters,
    RunId,
    decode_parameters,
    encode_parameters,
)
from fedloop.store import ArtifactStore, SqlMetadataStore, StoredArtifact

__all__ = [
    "CHECKPOINT_PREFIX",
    "Checkpoint",
    "decode_checkpoint",
    "encode_checkpoint",
    "find_checkpoint",
    "list_checkpoints",
    "save_checkpoint",
]

#: Run artifacts named ``checkpoint/step-<10 digits>`` are the run's checkpoints.
CHECKPOINT_PREFIX = "checkpoint/step-"
_NAME = re.compile(r"^checkpoint/step-(\d{10})$")
_FORMAT = 1
_META = "meta.json"


@dataclass(frozen=True)
class Checkpoint:
    """Everything a restarted group needs to continue exactly where rank 0 saved.

    The data order needs no RNG state: each epoch's order is the distributed sampler's
    permutation seeded by ``(seed, epoch)``, so ``epoch`` and ``step_in_epoch`` fix it.

    Attributes
    ----------
    step : int
        Optimizer steps done since the run started (over every attempt).
    epoch : int
        Epoch of the next step (``epochs`` when training is done).
    step_in_epoch : int
        Steps of ``epoch`` already done.
    world_size : int
        Ranks that trained up to here (a group of another size maps the position over).
    weights : Parameters
        The model's state dict.
    optimizer : Parameters
        The optimizer's state (empty for plain SGD).
    metrics : dict[str, float]
        Rank 0's training metrics at this point (``train_loss``).
    """

    step: int
    epoch: int
    step_in_epoch: int
    world_size: int
    weights: Parameters
    optimizer: Parameters = field(default_factory=OrderedDict)
    metrics: dict[str, float] = field(default_factory=dict)


def encode_checkpoint(checkpoint: Checkpoint) -> bytes:
    """Serialize a checkpoint to safetensors bytes (position and metrics in a JSON tensor).

    Parameters
    ----------
    checkpoint : Checkpoint
        The state.

    Returns
    -------
    bytes
        A safetensors image: ``model.*``, ``optim.*`` and ``meta.json`` (uint8).
    """
    meta = {
        "format": _FORMAT,
        "step": checkpoint.step,
        "epoch": checkpoint.epoch,
        "step_in_epoch": checkpoint.step_in_epoch,
        "world_size": checkpoint.world_size,
        "metrics": checkpoint.metrics,
    }
    tensors: Parameters = OrderedDict()
    tensors[_META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    for name, array in checkpoint.weights.items():
        tensors[f"model.{name}"] = array
    for name, array in checkpoint.optimizer.items():
        tensors[f"optim.{name}"] = array
    return encode_parameters(tensors)


def decode_checkpoint(data: bytes) -> Checkpoint:
    """Parse what :func:`encode_checkpoint` wrote.

    Raises
    ------
    InvalidInput
        When the bytes are not a checkpoint of this format.
    """
    tensors = decode_parameters(data, field="checkpoint")
    raw = tensors.pop(_META, None)
    try:
        meta = json.loads(bytes(raw)) if raw is not None else None
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise ValueError("no meta.json of format 1")
        position = {k: int(meta[k]) for k in ("step", "epoch", "step_in_epoch", "world_size")}
        metrics = {str(k): float(v) for k, v in dict(meta.get("metrics", {})).items()}
    except (ValueError, TypeError, KeyError) as err:
        raise InvalidInput(
            f"`checkpoint` is not a fedloop data-parallel checkpoint: {err}.", field="checkpoint"
        ) from err
    weights: Parameters = OrderedDict()
    optimizer: Parameters = OrderedDict()
    for name, array in tensors.items():
        if name.startswith("model."):
            weights[name.removeprefix("model.")] = array
        elif name.startswith("optim."):
            optimizer[name.removeprefix("optim.")] = array
    return Checkpoint(weights=weights, optimizer=optimizer, metrics=metrics, **position)


def save_checkpoint(
    metadata: SqlMetadataStore, artifacts: ArtifactStore, run_id: RunId, checkpoint: Checkpoint
) -> StoredArtifact:
    """Store a checkpoint's bytes, then record it on the run (a crash between leaves no record).

    Parameters
    ----------
    metadata : SqlMetadataStore
        Where the run lives.
    artifacts : ArtifactStore
        Where the bytes go (content-addressed, written atomically).
    run_id : RunId
        The data-parallel run.
    checkpoint : Checkpoint
        The state.

    Returns
    -------
    StoredArtifact
        The record ``checkpoint/step-<step>``.
    """
    ref = artifacts.put_bytes(encode_checkpoint(checkpoint))
    return metadata.record_artifact(
        run_id,
        f"{CHECKPOINT_PREFIX}{checkpoint.step:010d}",
        digest=ref.digest,
        size_bytes=ref.size_bytes,
        media_type="application/vnd.fedloop.checkpoint+safetensors",
    )


def list_checkpoints(metadata: SqlMetadataStore, run_id: RunId) -> list[tuple[int, StoredArtifact]]:
    """Return the run's checkpoint records as ``(step, record)``, by step.

    Parameters
    ----------
    metadata : SqlMetadataStore
        Where the run lives.
    run_id : RunId
        The run.

    Returns
    -------
    list of (int, StoredArtifact)
        Oldest step first.
    """
    found = []
    for record in metadata.list_artifacts(run_id):
        match = _NAME.match(record.name)
        if match:
            found.append((int(match.group(1)), record))
    return sorted(found, key=lambda pair: (pair[0], pair[1].created_at))


def find_checkpoint(
    metadata: SqlMetadataStore, artifacts: ArtifactStore, run_id: RunId
) -> Checkpoint | None:
    """Return the run's latest checkpoint, or None when it has none.

    Raises
    ------
    IntegrityError
        When the latest checkpoint's bytes are not a checkpoint (``ArtifactCorrupt`` and
        ``ArtifactMissing`` come from the artifact store).
    """
    found = list_checkpoints(metadata, run_id)
    if not found:
        return None
    step, record = found[-1]
    try:
        checkpoint = decode_checkpoint(artifacts.get_bytes(record.digest))
    except InvalidInput as err:
        raise IntegrityError(
            f"checkpoint {record.name} of run {run_id} cannot be read: {err.message}",
            field="checkpoint",
            value=record.digest,
        ) from err
    if checkpoint.step != step:
        raise IntegrityError(
            f"checkpoint {record.name} of run {run_id} holds step {checkpoint.step}.",
            field="checkpoint",
            value=record.digest,
        )
    return checkpoint
