"""Checks every client update must pass before it may reach the model."""

from __future__ import annotations

import math

import numpy as np

from fedloop.core import Parameters
from fedloop.federated.messages import FitRes

__all__ = ["check_update"]


def check_update(
    result: FitRes,
    *,
    global_params: Parameters,
    round_num: int,
    max_update_norm: float | None = None,
) -> str | None:
    """Return why an update must be rejected, or None when it is acceptable.

    Rejected: a wrong round id, a non-positive or non-integer example count, missing or extra
    tensors, a wrong shape or dtype, NaN or infinite values, and (with ``max_update_norm``) a
    change to the global model whose L2 norm exceeds the bound.

    Parameters
    ----------
    result : FitRes
        The client's answer.
    global_params : Parameters
        The model the client was sent.
    round_num : int
        The round the client was asked for.
    max_update_norm : float or None
        Bound on ``||client - global||_2`` over all tensors.

    Returns
    -------
    str or None
        A one-line reason, naming the tensor where there is one.
    """
    if result.round_num != round_num:
        return f"update is for round {result.round_num}, not round {round_num}"
    if (
        isinstance(result.num_examples, bool)
        or not isinstance(result.num_examples, int)
        or result.num_examples <= 0
    ):
        return f"num_examples must be a positive integer; got {result.num_examples!r}"
    params = result.parameters
    if list(params) != list(global_params):
        missing = sorted(set(global_params) - set(params))
        extra = sorted(set(params) - set(global_params))
        if missing or extra:
            return f"tensor names differ from the model (missing {missing[:3]}, unexpected {extra[:3]})"
        return "tensors are not in the model's order"
    squared = 0.0
    for name, reference in global_params.items():
        array = params[name]
        if not isinstance(array, np.ndarray):
            return f"tensor {name!r} is not an array"
        if array.shape != reference.shape:
            return f"tensor {name!r} has shape {array.shape}; the model has {reference.shape}"
        if array.dtype != reference.dtype:
            return f"tensor {name!r} has dtype {array.dtype}; the model has {reference.dtype}"
        if array.dtype.kind == "f":
            if not np.isfinite(array).all():
                return f"tensor {name!r} contains NaN or infinite values"
            if max_update_norm is not None:
                diff = array.astype(np.float64) - reference.astype(np.float64)
                squared += float(np.dot(diff.ravel(), diff.ravel()))
    if max_update_norm is not None and math.sqrt(squared) > max_update_norm:
        return f"update norm {math.sqrt(squared):.4g} exceeds the bound {max_update_norm:.4g}"
    return None
