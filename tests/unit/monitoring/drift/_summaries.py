"""Test helpers: column summaries and profiles built from numpy arrays."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from fedloop.learn.profiles import (
    CategoricalSummary,
    DataProfile,
    NumericSummary,
    profile_columns,
    profile_like,
)

Array = npt.NDArray[np.float64]


def numeric(values: npt.ArrayLike, edges: npt.ArrayLike) -> NumericSummary:
    """Return the summary of ``values`` on the interior ``edges``."""
    summary = profile_columns({"x": np.asarray(values, dtype=np.float64)}, edges={"x": edges})
    column = summary.columns["x"]
    assert isinstance(column, NumericSummary)
    return column


def numeric_pair(
    reference: npt.ArrayLike, current: npt.ArrayLike, *, num_bins: int = 100
) -> tuple[NumericSummary, NumericSummary]:
    """Return a reference summary on its quantile edges and the current one on the same edges."""
    ref = profile_columns({"x": np.asarray(reference, dtype=np.float64)}, num_bins=num_bins)
    cur = profile_like(ref, {"x": np.asarray(current, dtype=np.float64)})
    a, b = ref.columns["x"], cur.columns["x"]
    assert isinstance(a, NumericSummary)
    assert isinstance(b, NumericSummary)
    return a, b


def categorical(values: Sequence[object]) -> CategoricalSummary:
    """Return the per-category counts of ``values``."""
    summary = profile_columns({"c": np.asarray(values, dtype=object)}, categorical=["c"])
    column = summary.columns["c"]
    assert isinstance(column, CategoricalSummary)
    return column


def profiles(
    reference: Mapping[str, npt.ArrayLike],
    current: Mapping[str, npt.ArrayLike],
    *,
    categorical: Collection[str] = (),
    sample_size: int = 0,
) -> tuple[DataProfile, DataProfile]:
    """Return a reference profile and a current profile on its edges."""
    ref = profile_columns(reference, categorical=categorical, sample_size=sample_size)
    return ref, profile_like(ref, current, sample_size=sample_size)


def gaussian_columns(rows: int, num_features: int, rng: np.random.Generator) -> dict[str, Array]:
    """Return ``num_features`` independent standard normal columns named f0, f1, ..."""
    data = rng.standard_normal((num_features, rows))
    return {f"f{j}": data[j] for j in range(num_features)}
