"""Model adapters, local train/evaluate loops and metrics (torch loads only with its adapter)."""

from __future__ import annotations

import typing as _typing

from fedloop.learn.adapters import ModelAdapter, StepCallback
from fedloop.learn.metrics import binary_metrics

if _typing.TYPE_CHECKING:
    from fedloop.learn.adapters.torch import TorchAdapter, mlp

__all__ = ["ModelAdapter", "StepCallback", "TorchAdapter", "binary_metrics", "mlp"]

_LAZY = {"TorchAdapter", "mlp"}


def __getattr__(name: str) -> _typing.Any:
    if name in _LAZY:
        from fedloop.learn.adapters import torch as _torch_adapter

        return getattr(_torch_adapter, name)
    raise AttributeError(f"module 'fedloop.learn' has no attribute {name!r}")
