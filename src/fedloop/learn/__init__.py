"""Model adapters, local train/evaluate loops and metrics (torch loads only with its adapter)."""

from __future__ import annotations

import typing as _typing

from fedloop.learn.adapters import ModelAdapter, StepCallback
from fedloop.learn.adapters.sklearn_linear import SklearnLinearAdapter
from fedloop.learn.metrics import binary_metrics
from fedloop.learn.partition import (
    dirichlet_partition,
    iid_partition,
    partition_summary,
    quantity_skew_partition,
)

if _typing.TYPE_CHECKING:
    from fedloop.learn.adapters.torch import TorchAdapter, mlp

__all__ = [
    "ModelAdapter",
    "SklearnLinearAdapter",
    "StepCallback",
    "TorchAdapter",
    "binary_metrics",
    "dirichlet_partition",
    "iid_partition",
    "mlp",
    "partition_summary",
    "quantity_skew_partition",
]

_LAZY = {"TorchAdapter", "mlp"}


def __getattr__(name: str) -> _typing.Any:
    if name in _LAZY:
        from fedloop.learn.adapters import torch as _torch_adapter

        return getattr(_torch_adapter, name)
    raise AttributeError(f"module 'fedloop.learn' has no attribute {name!r}")
