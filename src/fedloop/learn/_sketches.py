"""Federated bin edges in two phases: clients' quantile sketches, merged on the server."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from fedloop.core import InvalidInput
from fedloop.learn._profile_base import ROWS_PER_BIN, check_columns, check_int, numeric_values

__all__ = ["edges_from_sketches", "quantile_sketch"]

_Floats = npt.NDArray[np.float64]


def quantile_sketch(
    columns: Mapping[str, npt.ArrayLike], *, num_points: int = 256
) -> dict[str, _Floats]:
    """Summarise numeric columns as mergeable quantile sketches: phase one of federated edges.

    A client sends, per column, ``[n, q_0, ..., q_{P-1}]`` (float64): its number of finite
    values and the values at the evenly spaced probabilities ``j / (P - 1)`` (so ``q_0`` and
    ``q_{P-1}`` are its minimum and maximum). No row leaves the client, but a column with
    fewer than ``P`` values is revealed by its quantiles: choose ``num_points`` accordingly.

    Parameters
    ----------
    columns : Mapping[str, array-like]
        Numeric column name -> 1-D values (NaN and infinite values are ignored).
    num_points : int, default 256
        Quantiles per column (>= 2).

    Returns
    -------
    dict[str, ndarray of float64, shape (num_points + 1,)]
        Column name -> sketch; a name -> array mapping that travels as tensors. A column with
        no finite value sends ``n = 0`` and zeros.

    Raises
    ------
    InvalidInput
        When a column is not 1-D and numeric or lengths differ.
    """
    check_int("num_points", num_points, minimum=2)
    arrays, _ = check_columns(columns, list(columns))
    sketches: dict[str, _Floats] = {}
    for name, values in arrays.items():
        x = numeric_values(name, values)
        finite = x[np.isfinite(x)]
        sketch = np.zeros(num_points + 1, dtype=np.float64)
        sketch[0] = finite.size
        if finite.size:
            sketch[1:] = np.quantile(finite, np.linspace(0.0, 1.0, num_points))
        sketches[name] = sketch
    return sketches


def edges_from_sketches(
    sketches: Sequence[Mapping[str, npt.ArrayLike]], *, num_bins: int = 100
) -> dict[str, _Floats]:
    """Merge clients' quantile sketches into common bin edges: phase two of federated edges.

    Each client's CDF is taken as piecewise linear through its quantiles (with jumps where
    quantiles repeat); their mixture, weighted by ``n``, is inverted at ``k / num_bins``.
    That CDF is within ``1 / (P - 1)`` of the clients' empirical CDF, so an edge lies within
    that much probability of the pooled data's quantile. Each client then profiles its rows
    with ``profile_columns(local, edges=edges)`` and the server calls :func:`merge_profiles`.

    Parameters
    ----------
    sketches : Sequence[Mapping[str, array-like]]
        What :func:`quantile_sketch` returned on each client, all with the same columns.
    num_bins : int, default 100
        Bins per column at most (>= 2; also at most one bin per ten rows in all).

    Returns
    -------
    dict[str, ndarray of float64]
        Column name -> strictly increasing interior edges (empty when no client had a value).

    Raises
    ------
    InvalidInput
        When the list is empty, columns differ, or a sketch is malformed (the field names the
        sketch and column).
    """
    check_int("num_bins", num_bins, minimum=2)
    if isinstance(sketches, Mapping) or not isinstance(sketches, Sequence) or not sketches:
        raise InvalidInput(
            "`sketches` must be a non-empty sequence of quantile sketches.",
            field="sketches",
            hint="Collect quantile_sketch(local_columns) from every client into a list.",
        )
    names = _sketch_names(sketches)
    edges: dict[str, _Floats] = {}
    for name in names:
        parts = [
            _check_sketch(sketch[name], f"sketches[{i}].{name}")
            for i, sketch in enumerate(sketches)
        ]
        edges[name] = _mixture_edges([p for p in parts if p[0] > 0], num_bins)
    return edges


def _sketch_names(sketches: Sequence[Mapping[str, npt.ArrayLike]]) -> list[str]:
    """Return the column names every sketch shares, or raise naming the first that differs."""
    for i, sketch in enumerate(sketches):
        if not isinstance(sketch, Mapping) or not sketch:
            raise InvalidInput(
                f"`sketches[{i}]` must be a non-empty mapping of column -> sketch.",
                field=f"sketches[{i}]",
            )
    names = list(sketches[0])
    for i, sketch in enumerate(sketches):
        if set(sketch) != set(names):
            differ = sorted(map(str, set(sketch) ^ set(names)))
            raise InvalidInput(
                f"`sketches[{i}]` and `sketches[0]` sketch different columns: {differ}.",
                field=f"sketches[{i}].{differ[0]}",
                hint="Every client must sketch the same columns.",
            )
    return names


def _check_sketch(values: npt.ArrayLike, field: str) -> tuple[float, _Floats]:
    """Return a sketch's ``(n, quantiles)`` after checking it could come from quantile_sketch."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InvalidInput(f"`{field}` is not numeric: {err}.", field=field) from err
    hint = "Send the arrays quantile_sketch returned, unchanged."
    if array.ndim != 1 or array.size < 3 or not np.isfinite(array).all():
        raise InvalidInput(
            f"`{field}` must be a finite 1-D array [n, q_0, ..., q_P-1] with P >= 2; got "
            f"shape {array.shape}.",
            field=field,
            hint=hint,
        )
    n, points = float(array[0]), array[1:]
    if n < 0 or n != math.floor(n) or (n > 0 and (np.diff(points) < 0).any()):
        raise InvalidInput(
            f"`{field}` must start with a count n >= 0 followed by non-decreasing quantiles.",
            field=field,
            hint=hint,
        )
    return n, points


def _mixture_edges(parts: Sequence[tuple[float, _Floats]], num_bins: int) -> _Floats:
    """Invert the n-weighted mixture of the parts' piecewise-linear CDFs at ``k / bins``."""
    if not parts:
        return np.empty(0, dtype=np.float64)
    total = sum(n for n, _ in parts)
    bins = min(num_bins, max(2, int(total) // ROWS_PER_BIN))
    knots = np.unique(np.concatenate([points for _, points in parts]))
    left = np.zeros(knots.size)  # mixture CDF just below each knot
    right = np.zeros(knots.size)  # mixture CDF at each knot
    for n, points in parts:
        left += n * _sketch_cdf(points, knots, side="left")
        right += n * _sketch_cdf(points, knots, side="right")
    left /= total
    right /= total
    targets = np.arange(1, bins) / bins
    m = np.minimum(np.searchsorted(right, targets, side="left"), knots.size - 1)
    previous = np.maximum(m - 1, 0)
    rise = left[m] - right[previous]
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(rise > 0, (targets - right[previous]) / rise, 1.0)
    along = knots[previous] + np.clip(fraction, 0.0, 1.0) * (knots[m] - knots[previous])
    # a target inside the jump at knots[m] (a repeated quantile: an atom) lands on the atom
    cut = np.where(left[m] < targets, knots[m], along)
    return np.unique(cut)


def _sketch_cdf(points: _Floats, x: _Floats, *, side: Literal["left", "right"]) -> _Floats:
    """One client's CDF through ``(points[j], j / (P - 1))`` at ``x``; left or right limit."""
    last = points.size - 1
    j = np.searchsorted(points, x, side=side) - 1  # last point < x (left) or <= x (right)
    lower = np.clip(j, 0, last - 1)
    span = points[lower + 1] - points[lower]
    with np.errstate(divide="ignore", invalid="ignore"):
        within = np.where(span > 0, (x - points[lower]) / span, 0.0)
    cdf = (lower + np.clip(within, 0.0, 1.0)) / last
    return np.where(j < 0, 0.0, np.where(j >= last, 1.0, cdf))
