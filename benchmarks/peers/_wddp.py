"""The W-DDP workload shared by the orchestrator and both peers (numpy here; torch inside functions).

The orchestrator (``benchmarks/w_ddp.py``) writes the fraudlike split once to an ``.npz``; the
plain torchrun script and fedloop's driver train on it with the same seeds, so they train the
same model on the same batches: the W-FL MLP 30-64-32-1 from ``torch.manual_seed(0)``, SGD lr
0.05, batch 64 per worker, a ``DistributedSampler`` seeded 0 over the whole train split.

Both report through the same files in their work folder: rank 0 rewrites a 24-byte step file
(step, epoch, unix time) after every step and each rank writes ``rank-<r>.pid``, so the
orchestrator can kill worker 1 at the same point of either run.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

SEED = 0
LR = 0.05
BATCH = 64
HIDDEN = (64, 32)
STEP_RECORD = struct.Struct("<qqd")  # fedloop's step file uses the same layout


def write_data(path: Path, data: Any) -> None:
    """Write the standardized W-DDP split (fraudlike, 80/20)."""
    np.savez(
        path,
        x_train=data.x_train,
        y_train=data.y_train,
        x_test=data.x_test,
        y_test=data.y_test,
    )


def load(path: str | Path) -> dict[str, npt.NDArray[Any]]:
    """Load the arrays the orchestrator wrote."""
    with np.load(path) as z:
        return {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}


def steps_per_epoch(rows: int, world: int) -> int:
    """Return the steps of one epoch: each rank gets ceil(rows / world) rows (the sampler pads)."""
    return math.ceil(math.ceil(rows / world) / BATCH)


def read_step(path: Path) -> tuple[int, int, float] | None:
    """Return (step, epoch, unix time) from a step file, or None before the first step."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if len(data) < STEP_RECORD.size:
        return None
    step, epoch, when = STEP_RECORD.unpack_from(data)
    return int(step), int(epoch), float(when)


def auc(scores: npt.NDArray[Any], labels: npt.NDArray[Any]) -> float:
    """Return the ROC-AUC of scores."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def throughput(samples: list[tuple[float, int]], rows_per_step: int, until: float | None) -> float:
    """Rows per second between the first and the last progress sample (before ``until``)."""
    usable = [(t, s) for t, s in samples if s > 0 and (until is None or t <= until)]
    if len(usable) < 2 or usable[-1][0] <= usable[0][0]:
        return float("nan")
    (t0, s0), (t1, s1) = usable[0], usable[-1]
    return (s1 - s0) * rows_per_step / (t1 - t0)
