"""Model adapters, local train/evaluate loops, metrics and data profiles (torch loads only with its adapter)."""

from __future__ import annotations

import typing as _typing

from fedloop.core import lazy_exports as _lazy_exports
from fedloop.learn.adapters import ModelAdapter, StepCallback
from fedloop.learn.metrics import binary_metrics
from fedloop.learn.partition import (
    dirichlet_partition,
    iid_partition,
    partition_summary,
    quantity_skew_partition,
)
from fedloop.learn.profiles import (
    CategoricalSummary,
    ColumnSummary,
    DataProfile,
    NumericSummary,
    columns_from_tensors,
    decode_profile,
    edges_from_sketches,
    encode_profile,
    merge_profiles,
    profile_columns,
    profile_from_arrays,
    profile_like,
    profile_to_arrays,
    quantile_sketch,
)

if _typing.TYPE_CHECKING:
    from fedloop.learn.adapters.sklearn_linear import SklearnLinearAdapter
    from fedloop.learn.adapters.torch import TorchAdapter, mlp
    from fedloop.learn.adapters.torch_mlp import mlp_adapter

__all__ = [
    "CategoricalSummary",
    "ColumnSummary",
    "DataProfile",
    "ModelAdapter",
    "NumericSummary",
    "SklearnLinearAdapter",
    "StepCallback",
    "TorchAdapter",
    "binary_metrics",
    "columns_from_tensors",
    "decode_profile",
    "dirichlet_partition",
    "edges_from_sketches",
    "encode_profile",
    "iid_partition",
    "merge_profiles",
    "mlp",
    "mlp_adapter",
    "partition_summary",
    "profile_columns",
    "profile_from_arrays",
    "profile_like",
    "profile_to_arrays",
    "quantile_sketch",
    "quantity_skew_partition",
]

# Adapters import their frameworks (torch: ~1.5 s, scikit-learn: ~1 s) only when first used.
_LAZY = {
    "TorchAdapter": "fedloop.learn.adapters.torch",
    "mlp": "fedloop.learn.adapters.torch",
    "mlp_adapter": "fedloop.learn.adapters.torch_mlp",
    "SklearnLinearAdapter": "fedloop.learn.adapters.sklearn_linear",
}


__getattr__ = _lazy_exports(__name__, _LAZY)
