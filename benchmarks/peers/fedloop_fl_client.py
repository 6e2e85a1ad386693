"""The W-FL client factory for fedloop's simulation workers (kept light: no coordinator imports)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _wfl

from fedloop.federated.client import AdapterClient
from fedloop.learn.adapters.torch import TorchAdapter

_DATA: dict[str, _wfl.Data] = {}


def adapter(seed: int) -> TorchAdapter:
    """Return the W-FL MLP behind fedloop's torch adapter (SGD lr 0.05, batch 64)."""
    return TorchAdapter(
        _wfl.make_model, num_features=30, lr=_wfl.LR, batch_size=_wfl.BATCH, seed=seed
    )


def load(data: str) -> _wfl.Data:
    """Return the split, loaded once per process (the coordinator and in-process clients share it)."""
    if data not in _DATA:
        _DATA[data] = _wfl.Data(data)
    return _DATA[data]


def make_client(client_id: str, *, data: str) -> AdapterClient:
    """Build one virtual client from its rows of the shared split."""
    x, y = load(data).client_rows(int(client_id[1:]))
    return AdapterClient(client_id, adapter, x, y, seed=_wfl.SEED)
