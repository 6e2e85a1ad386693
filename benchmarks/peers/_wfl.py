"""The W-FL workload shared by every worker (numpy here; torch and sklearn only inside functions).

Every peer runs in its own virtual environment, so this module imports nothing of fedloop. The
orchestrator (``benchmarks/w_fl.py``) writes the data and the client split once per scale to an
``.npz`` file; each worker loads it, so all systems train on byte-identical silos.

The same seeds drive every system: the global model starts from ``torch.manual_seed(0)``; client
sampling, per-client shuffling seeds and FedAvg weighting follow fedloop's documented rules
(``select_clients`` and ``client_seed``), re-implemented here in plain numpy so the plain loop
(the limit) and Flower's ClientApp train exactly what fedloop's clients train.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

SEED = 0
LR = 0.05
BATCH = 64
ALPHA = 0.5
# (clients, clients per round, rounds): the three W-FL scales.
SCALES: dict[int, tuple[int, int]] = {10: (10, 20), 100: (10, 10), 1000: (10, 10)}


def client_name(index: int) -> str:
    """Return the id of client ``index`` (zero-padded, so sorting by name sorts by index)."""
    return f"c{index:04d}"


def dirichlet_split(y: npt.NDArray[np.int64], k: int) -> list[npt.NDArray[np.int64]]:
    """Split rows over ``k`` clients: per class, Dirichlet(0.5) proportions, numpy seed 0.

    Clients left without a row get one row of the largest client, so every client can train.
    """
    np.random.seed(SEED)
    parts: list[list[int]] = [[] for _ in range(k)]
    for label in np.unique(y):
        rows = np.where(y == label)[0]
        np.random.shuffle(rows)
        p = np.random.dirichlet([ALPHA] * k)
        cuts = (np.cumsum(p) * len(rows)).astype(int)[:-1]
        for i, chunk in enumerate(np.split(rows, cuts)):
            parts[i].extend(chunk.tolist())
    out = [np.array(sorted(p), dtype=np.int64) for p in parts]
    for i in [i for i, p in enumerate(out) if len(p) == 0]:
        donor = max(range(k), key=lambda j: len(out[j]))
        out[i], out[donor] = out[donor][-1:], out[donor][:-1]
    return out


def write_data(path: Path, data: Any, k: int) -> None:
    """Write the standardized split and the client partition of one scale."""
    parts = dirichlet_split(data.y_train, k)
    np.savez(
        path,
        x_train=data.x_train,
        y_train=data.y_train,
        x_test=data.x_test,
        y_test=data.y_test,
        offsets=np.cumsum([0] + [len(p) for p in parts]),
        index=np.concatenate(parts),
    )


class Data:
    """The arrays of one scale, loaded from the orchestrator's ``.npz`` file."""

    def __init__(self, path: str | Path) -> None:
        with np.load(path) as z:
            self.x_train = z["x_train"]
            self.y_train = z["y_train"]
            self.x_test = z["x_test"]
            self.y_test = z["y_test"]
            self.offsets = z["offsets"]
            self.index = z["index"]

    @property
    def num_clients(self) -> int:
        """Return K."""
        return len(self.offsets) - 1

    def client_rows(self, i: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Return client ``i``'s features and labels."""
        idx = self.index[self.offsets[i] : self.offsets[i + 1]]
        return self.x_train[idx], self.y_train[idx]


def select(num_clients: int, per_round: int, round_num: int) -> list[int]:
    """Pick the round's clients: fedloop's ``select_clients`` rule over sorted ids."""
    rng = np.random.default_rng([SEED, round_num])
    count = min(per_round, num_clients)
    return sorted(int(i) for i in rng.choice(num_clients, size=count, replace=False))


def client_seed(round_num: int, index: int) -> int:
    """Return the shuffling seed of a client in a round: fedloop's ``client_seed`` rule."""
    entropy = [SEED, round_num, *client_name(index).encode()]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def make_model() -> Any:
    """Return the W-FL MLP 30-64-32-1 with ``torch.manual_seed(0)`` initialization."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    return nn.Sequential(
        nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 1)
    )


def train_local(
    model: Any, x: npt.NDArray[np.float32], y: npt.NDArray[np.int64], seed: int
) -> float:
    """Train one local epoch in place (SGD lr 0.05, batch 64); return the mean loss."""
    import torch
    from torch import nn

    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    yt = torch.from_numpy(np.asarray(y, dtype=np.float32))
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    order = torch.randperm(xt.shape[0], generator=gen)
    total = 0.0
    for start in range(0, xt.shape[0], BATCH):
        idx = order[start : start + BATCH]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xt[idx]).reshape(-1), yt[idx])
        loss.backward()
        opt.step()
        total += float(loss.detach()) * idx.shape[0]
    return total / max(xt.shape[0], 1)


def test_auc(model: Any, x: npt.NDArray[np.float32], y: npt.NDArray[np.int64]) -> float:
    """Return the test ROC-AUC of a torch model."""
    import torch
    from sklearn.metrics import roc_auc_score

    model.eval()
    with torch.no_grad():
        scores = torch.sigmoid(model(torch.from_numpy(x))).reshape(-1).numpy()
    return float(roc_auc_score(y, scores))


def fedavg(
    states: list[dict[str, npt.NDArray[np.float32]]], weights: list[int]
) -> dict[str, npt.NDArray[np.float32]]:
    """Average state dicts weighted by example count (float64 sums, cast back)."""
    total = float(sum(weights))
    out = {}
    for name, first in states[0].items():
        acc = np.zeros(first.shape, dtype=np.float64)
        for state, w in zip(states, weights, strict=True):
            acc += state[name].astype(np.float64) * (w / total)
        out[name] = acc.astype(first.dtype)
    return out


def parse_args(description: str) -> argparse.Namespace:
    """Parse the command line every worker takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", type=Path, required=True, help=".npz written by the orchestrator")
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("--per-round", type=int, required=True, help="clients sampled per round")
    p.add_argument("--out", type=Path, required=True, help="JSON result file")
    p.add_argument("--workdir", type=Path, required=True, help="scratch folder")
    p.add_argument("--option", action="append", default=[], help="peer-specific key=value")
    return p.parse_args()


class Marks:
    """Wall-clock marks: ready (first round about to start) and the end of every round."""

    def __init__(self) -> None:
        self.launch = float(os.environ.get("WFL_T0", time.time()))
        self.times: list[float] = []
        self.auc: list[float] = []

    def ready(self) -> None:
        """Mark the moment the first round starts."""
        self.times = [time.time()]

    def round_done(self, auc: float) -> None:
        """Mark the end of a round (after its evaluation)."""
        self.times.append(time.time())
        self.auc.append(float(auc))

    def write(self, path: Path, **extra: Any) -> None:
        """Write the result JSON."""
        rounds = [b - a for a, b in zip(self.times, self.times[1:], strict=False)]
        path.write_text(
            json.dumps(
                {
                    "launch": self.launch,
                    "ready_s": self.times[0] - self.launch,
                    "round_s": rounds,
                    "auc": self.auc,
                    "final_auc": self.auc[-1] if self.auc else None,
                    **extra,
                },
                indent=2,
            )
        )
