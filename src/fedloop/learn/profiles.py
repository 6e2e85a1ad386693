"""Mergeable data profiles (binned counts and moments, no rows kept); import them all from here."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from fedloop.core import InvalidInput
from fedloop.learn._profile_base import (
    ROWS_PER_BIN,
    CategoricalSummary,
    ColumnSummary,
    DataProfile,
    NumericSummary,
    check_columns,
    check_int,
    numeric_values,
)
from fedloop.learn._profile_codec import (
    decode_profile,
    encode_profile,
    profile_from_arrays,
    profile_to_arrays,
)
from fedloop.learn._sketches import edges_from_sketches, quantile_sketch

__all__ = [
    "CategoricalSummary",
    "ColumnSummary",
    "DataProfile",
    "NumericSummary",
    "columns_from_tensors",
    "decode_profile",
    "edges_from_sketches",
    "encode_profile",
    "merge_profiles",
    "profile_columns",
    "profile_from_arrays",
    "profile_like",
    "profile_to_arrays",
    "quantile_sketch",
]

_Floats = npt.NDArray[np.float64]
_Ints = npt.NDArray[np.int64]

#: Lookup cells per bin of the fast binning path (see :func:`_bin_counts`).
_CELLS_PER_BIN = 16
#: Correction steps after the lookup beyond which plain ``np.searchsorted`` is faster.
_MAX_CORRECTIONS = 6


def profile_columns(
    columns: Mapping[str, npt.ArrayLike],
    *,
    num_bins: int = 100,
    edges: Mapping[str, npt.ArrayLike] | None = None,
    categorical: Collection[str] = (),
    sample_size: int = 0,
    seed: int = 0,
) -> DataProfile:
    """Summarise a data set column by column: the reference profile of a model version.

    Numeric bins are cut at the data's quantiles ``k / num_bins``; repeated quantiles collapse,
    so a column with few distinct values gets fewer bins, and a small data set gets at most
    one bin per ten rows (never fewer than two bins while it has a finite value).

    Parameters
    ----------
    columns : Mapping[str, array-like]
        Column name -> 1-D values, all of one length.
    num_bins : int, default 100
        Bins per numeric column at most (>= 2).
    edges : Mapping[str, array-like] or None, default None
        Interior edges to use instead of quantiles (strictly increasing, finite), e.g. from
        :func:`edges_from_sketches`; a numeric column not listed gets quantile edges.
    categorical : Collection[str], default ()
        Columns counted per value (compared as ``str(value)``) instead of binned.
    sample_size : int, default 0
        Rows of the numeric columns kept as a uniform sample (0: none).
    seed : int, default 0
        Seed of the sample.

    Returns
    -------
    DataProfile
        NaN and infinite values are counted as ``missing``; in the sample they are NaN.

    Raises
    ------
    InvalidInput
        When a column is not 1-D, lengths differ, a non-numeric column is not listed in
        ``categorical``, or an argument is out of range.

    Example
    -------
    >>> profile = profile_columns({"amount": np.arange(1000.0)}, num_bins=10)
    >>> profile.columns["amount"].counts.tolist()
    [100, 100, 100, 100, 100, 100, 100, 100, 100, 100]
    """
    check_int("num_bins", num_bins, minimum=2)
    check_int("sample_size", sample_size, minimum=0)
    arrays, num_rows = check_columns(columns, list(columns))
    kinds = set(categorical) if not isinstance(categorical, str) else {categorical}
    for name in sorted(kinds - set(arrays)):
        raise InvalidInput(
            f"`categorical` names column {name!r}, which is not among the columns.",
            field="categorical",
            value=name,
            hint=f"Choose from {sorted(arrays)}.",
        )
    given = _check_edges(edges, arrays, kinds)
    summaries: dict[str, ColumnSummary] = {}
    numeric: list[_Floats] = []
    scratch = _Scratch(num_rows)
    for name, values in arrays.items():
        if name in kinds:
            summaries[name] = _categorical_summary(values)
            continue
        x = numeric_values(name, values)
        cut = given.get(name)
        if cut is None:
            finite = x[np.isfinite(x)]
            cut = _quantile_edges(finite, num_bins)
        summaries[name] = _numeric_summary(x, cut, scratch)
        numeric.append(x)
    sample = _sample_rows(numeric, num_rows, sample_size, seed)
    return DataProfile(columns=summaries, num_rows=num_rows, sample=sample)


def profile_like(
    reference: DataProfile,
    columns: Mapping[str, npt.ArrayLike],
    *,
    sample_size: int | None = None,
    seed: int = 0,
) -> DataProfile:
    """Profile new data on a reference's bins, so that the two compare (and merge) bin by bin.

    Parameters
    ----------
    reference : DataProfile
        The stored profile; its numeric edges and column kinds are reused.
    columns : Mapping[str, array-like]
        Column name -> 1-D values; every reference column is needed, extra ones are ignored.
    sample_size : int or None, default None
        Rows kept as a sample; None keeps as many as the reference's sample (none without one).
    seed : int, default 0
        Seed of the sample.

    Returns
    -------
    DataProfile
        Columns in the reference's order; categorical columns list the categories seen here.

    Raises
    ------
    InvalidInput
        When a reference column is missing (``field="columns.<name>"``), not 1-D, of another
        length or, for a numeric column, not numeric.
    """
    if not isinstance(reference, DataProfile):
        raise InvalidInput(
            f"`reference` must be a DataProfile; got {type(reference).__name__}.",
            field="reference",
        )
    if sample_size is None:
        sample_size = 0 if reference.sample is None else int(reference.sample.shape[0])
    check_int("sample_size", sample_size, minimum=0)
    arrays, num_rows = check_columns(columns, list(reference.columns))
    summaries: dict[str, ColumnSummary] = {}
    numeric: list[_Floats] = []
    scratch = _Scratch(num_rows)
    for name, ref in reference.columns.items():
        if isinstance(ref, CategoricalSummary):
            summaries[name] = _categorical_summary(arrays[name])
            continue
        x = numeric_values(name, arrays[name])
        summaries[name] = _numeric_summary(x, ref.edges, scratch)
        numeric.append(x)
    sample = _sample_rows(numeric, num_rows, sample_size, seed)
    return DataProfile(columns=summaries, num_rows=num_rows, sample=sample)


def merge_profiles(profiles: Sequence[DataProfile], *, seed: int = 0) -> DataProfile:
    """Merge profiles of disjoint parts of a data set into the profile of the whole.

    Counts add up, moments combine exactly (Chan et al.'s parallel variance) and categories
    are united. Samples merge so that each part contributes in proportion to its rows (a
    multivariate hypergeometric split, as a uniform sample of the whole would), keeping as
    many rows as the largest sample.

    Parameters
    ----------
    profiles : Sequence[DataProfile]
        At least one profile, all with the same columns, kinds and numeric edges.
    seed : int, default 0
        Seed of the merged sample.

    Returns
    -------
    DataProfile
        Columns in the first profile's order; ``sample`` is None when any part has none.

    Raises
    ------
    InvalidInput
        When the list is empty, or columns, kinds, edges or sample widths differ (the
        field names the column).

    Example
    -------
    >>> parts = [profile_columns({"x": np.arange(n, dtype=float)}, edges={"x": [9.5]}) for n in (10, 20)]
    >>> merge_profiles(parts).columns["x"].counts.tolist()
    [20, 10]
    """
    if isinstance(profiles, DataProfile) or not isinstance(profiles, Sequence) or not profiles:
        raise InvalidInput(
            "`profiles` must be a non-empty sequence of DataProfile.",
            field="profiles",
            hint="Pass a list such as [profile_a, profile_b].",
        )
    first = profiles[0]
    for i, profile in enumerate(profiles):
        if not isinstance(profile, DataProfile):
            raise InvalidInput(
                f"`profiles[{i}]` must be a DataProfile; got {type(profile).__name__}.",
                field=f"profiles[{i}]",
            )
        if set(profile.columns) != set(first.columns):
            differ = sorted(set(profile.columns) ^ set(first.columns))
            raise InvalidInput(
                f"`profiles[{i}]` and `profiles[0]` have different columns: {differ}.",
                field=f"columns.{differ[0]}",
                hint="Profile every part with the same columns (profile_like on one reference).",
            )
    merged: dict[str, ColumnSummary] = {}
    for name, head in first.columns.items():
        parts = [profile.columns[name] for profile in profiles]
        if isinstance(head, NumericSummary):
            merged[name] = _merge_numeric(name, parts)
        else:
            merged[name] = _merge_categorical(name, parts)
    num_rows = sum(int(profile.num_rows) for profile in profiles)
    sample = _merge_samples(profiles, seed)
    return DataProfile(columns=merged, num_rows=num_rows, sample=sample)


def columns_from_tensors(
    tensors: Mapping[str, npt.ArrayLike],
) -> dict[str, npt.NDArray[np.generic]]:
    """Turn a model's input or output tensors into named columns for profiling.

    Parameters
    ----------
    tensors : Mapping[str, array-like]
        Tensor name -> array with one row per example: shape ``(n,)`` becomes column
        ``name``, ``(n, 1)`` column ``name`` and ``(n, d)`` columns ``name[0]``...``name[d-1]``.

    Returns
    -------
    dict[str, ndarray]
        Column name -> contiguous 1-D array, in tensor order.

    Raises
    ------
    InvalidInput
        When a tensor has another rank (``field="tensors.<name>"``), the row counts differ,
        or two columns would get the same name.

    Example
    -------
    >>> sorted(columns_from_tensors({"x": np.zeros((4, 2)), "p": np.zeros(4)}))
    ['p', 'x[0]', 'x[1]']
    """
    if not isinstance(tensors, Mapping):
        raise InvalidInput(
            f"`tensors` must be a mapping of name -> array; got {type(tensors).__name__}.",
            field="tensors",
        )
    columns: dict[str, npt.NDArray[np.generic]] = {}
    rows: dict[str, int] = {}
    for name, value in tensors.items():
        array = np.asarray(value)
        if array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1):
            parts = {name: array.reshape(-1)}
        elif array.ndim == 2:
            # one transposed copy makes every column contiguous: strided column views
            # make profiling twice as slow (each pass drags the whole matrix through cache)
            by_column = np.ascontiguousarray(array.T)
            parts = {f"{name}[{j}]": by_column[j] for j in range(array.shape[1])}
        else:
            raise InvalidInput(
                f"tensor {name!r} has shape {array.shape}; only (n,) and (n, d) become columns.",
                field=f"tensors.{name}",
                hint="Flatten or pool higher-rank tensors (e.g. images) into features first.",
            )
        rows[name] = array.shape[0]
        for column, values in parts.items():
            if column in columns:
                raise InvalidInput(
                    f"two tensors give column {column!r}.",
                    field=f"tensors.{name}",
                    hint="Rename one of the tensors.",
                )
            columns[column] = values
    if len(set(rows.values())) > 1:
        raise InvalidInput(
            f"tensors differ in rows: {rows}.",
            field="tensors",
            hint="Pass tensors of one batch.",
        )
    return columns


def _check_edges(
    edges: Mapping[str, npt.ArrayLike] | None,
    arrays: Mapping[str, object],
    categorical: Collection[str],
) -> dict[str, _Floats]:
    """Validate given edges: numeric columns only, finite and strictly increasing."""
    if edges is None:
        return {}
    if not isinstance(edges, Mapping):
        raise InvalidInput(
            f"`edges` must be a mapping of column -> 1-D edges; got {type(edges).__name__}.",
            field="edges",
        )
    checked: dict[str, _Floats] = {}
    for name, values in edges.items():
        field = f"edges.{name}"
        if name not in arrays or name in categorical:
            raise InvalidInput(
                f"`edges` names {name!r}, which is not a numeric column.",
                field=field,
                hint="Give edges only for the numeric columns being profiled.",
            )
        checked[name] = _as_edges(values, field)
    return checked


def _as_edges(values: npt.ArrayLike, field: str) -> _Floats:
    """Return ``values`` as strictly increasing finite float64 edges, or raise naming ``field``."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InvalidInput(f"`{field}` is not numeric: {err}.", field=field) from err
    if array.ndim != 1 or not np.isfinite(array).all() or (np.diff(array) <= 0).any():
        raise InvalidInput(
            f"`{field}` must be a 1-D array of finite, strictly increasing values.",
            field=field,
            hint="Use edges from a stored profile or from edges_from_sketches.",
        )
    return array


def _quantile_edges(finite: _Floats, num_bins: int) -> _Floats:
    """Interior edges at the quantiles ``k / bins``, de-duplicated, about ten rows per bin."""
    if finite.size == 0:
        return np.empty(0, dtype=np.float64)
    bins = min(num_bins, max(2, finite.size // ROWS_PER_BIN))
    # data values as edges (not interpolations between them): a column with few distinct
    # values gets exactly one edge per value, and bin i holds (q_{i-1}, q_i]
    cut = np.quantile(finite, np.arange(1, bins) / bins, method="inverted_cdf")
    return np.unique(np.asarray(cut, dtype=np.float64))


class _Scratch:
    """Work arrays shared by the columns of one call.

    Fresh temporaries of a column's size cost page faults on every allocation (about as
    much as the arithmetic itself), so the numeric paths write into these instead.
    """

    def __init__(self, rows: int) -> None:
        self.floats = np.empty(rows, dtype=np.float64)
        self.cells = np.empty(rows, dtype=np.intp)
        self.bins = np.empty(rows, dtype=np.intp)
        self.flags = np.empty(rows, dtype=np.bool_)


def _numeric_summary(x: _Floats, edges: _Floats, scratch: _Scratch) -> NumericSummary:
    finite = np.isfinite(x, out=scratch.flags[: x.size])
    values = x if finite.all() else x[finite]
    count = int(values.size)
    if count:
        with np.errstate(over="ignore"):  # values beyond ~1e154: m2 is honestly inf
            mean = float(values.mean())
            if not math.isfinite(mean):  # the sum overflowed, the mean cannot
                mean = float(np.divide(values, count, out=scratch.floats[:count]).sum())
            # not `deviation @ deviation`: BLAS threads contend on a busy host (8 ms vs 0.1 ms)
            deviation = np.subtract(values, mean, out=scratch.floats[:count])
            m2 = float(np.square(deviation, out=deviation).sum())
        minimum, maximum = float(values.min()), float(values.max())
    else:
        mean, m2, minimum, maximum = 0.0, 0.0, math.inf, -math.inf
    return NumericSummary(
        edges=edges,
        counts=_bin_counts(edges, values, scratch),
        count=count,
        missing=int(x.size) - count,
        mean=mean,
        m2=m2,
        minimum=minimum,
        maximum=maximum,
    )


def _bin_counts(edges: _Floats, values: _Floats, scratch: _Scratch) -> _Ints:
    """Count finite ``values`` per bin, ``bin = np.searchsorted(edges, v, side="left")``.

    ``np.searchsorted`` costs about 40 ns a value (a branchy binary search), so it is only
    the fallback: a uniform grid of cells over ``[edges[0], edges[-1]]`` gives each value a
    starting bin that is never too high (the count of edges below the previous cell), and a
    few vectorised ``x > edges[bin]`` steps finish the job. The grid costs
    ``16 x bins`` searches, far fewer than the rows.
    """
    edges = np.asarray(edges, dtype=np.float64)
    size = edges.size + 1
    start, steps = _cell_starts(edges, values.size)
    if start is None:
        bins = np.searchsorted(edges, values, side="left")
        return np.bincount(bins, minlength=size).astype(np.int64, copy=False)
    n, cells = values.size, start.size
    low, scale = float(edges[0]), cells / (float(edges[-1]) - float(edges[0]))
    position = scratch.floats[:n]
    with np.errstate(over="ignore", invalid="ignore"):
        np.subtract(values, low, out=position)
        np.multiply(position, scale, out=position)
    np.clip(position, 0, cells - 1, out=position)
    cell = scratch.cells[:n]
    np.copyto(cell, position, casting="unsafe")  # truncation: the floor of a value >= 0
    bins = np.take(start, cell, out=scratch.bins[:n], mode="clip")
    padded = np.append(edges, math.inf)
    above = scratch.flags[:n]
    for _ in range(steps):
        np.greater(values, np.take(padded, bins, out=position, mode="clip"), out=above)
        np.add(bins, above, out=bins)
    return np.bincount(bins, minlength=size).astype(np.int64, copy=False)


def _cell_starts(edges: _Floats, rows: int) -> tuple[npt.NDArray[np.intp] | None, int]:
    """Return each grid cell's starting bin and the correction steps, or None to search."""
    size = edges.size + 1
    if edges.size < 2 or rows < 4 * _CELLS_PER_BIN * size:
        return None, 0
    cells = _CELLS_PER_BIN * size
    low, high = float(edges[0]), float(edges[-1])
    width = (high - low) / cells
    if width < 1e3 * np.spacing(max(abs(low), abs(high))) or not math.isfinite(
        cells / (high - low)
    ):
        return None, 0  # cells narrower than the float spacing would not be ordered, or the
        # span is so small (subnormal) that the grid's scale overflows
    below = np.searchsorted(edges, low + width * np.arange(-1, cells + 2), side="left")
    start = below[:-3]  # edges below the lower bound of the previous cell: never too many
    steps = int(max((below[3:] - start).max(), edges.size - start[-1]))
    return (start, steps) if steps <= _MAX_CORRECTIONS else (None, 0)


def _categorical_summary(values: npt.NDArray[np.generic]) -> CategoricalSummary:
    if values.dtype.kind == "f":
        missing = np.isnan(values)
    elif values.dtype.kind == "O":
        missing = np.asarray(values == None) | np.asarray(values != values)  # noqa: E711
    else:
        missing = np.zeros(values.shape, dtype=bool)
    present = values[~missing] if missing.any() else values
    keys = present if present.dtype.kind == "U" else present.astype(str)
    categories, counts = np.unique(keys, return_counts=True)
    return CategoricalSummary(
        categories=tuple(str(c) for c in categories),
        counts=counts.astype(np.int64),
        missing=int(missing.sum()),
    )


def _sample_rows(
    numeric: Sequence[_Floats], num_rows: int, sample_size: int, seed: int
) -> _Floats | None:
    """Return a uniform sample (without replacement) of rows of the numeric columns, or None."""
    if sample_size == 0 or not numeric:
        return None
    take = min(sample_size, num_rows)
    rows = np.sort(np.random.default_rng(seed).choice(num_rows, size=take, replace=False))
    sample = np.empty((take, len(numeric)), dtype=np.float64)
    for j, column in enumerate(numeric):
        sample[:, j] = column[rows]
    sample[~np.isfinite(sample)] = np.nan
    return sample


def _merge_numeric(name: str, parts: Sequence[ColumnSummary]) -> NumericSummary:
    first = parts[0]
    assert isinstance(first, NumericSummary)  # the caller dispatched on it
    counts = np.zeros_like(first.counts, dtype=np.int64)
    count, missing, mean, m2 = 0, 0, 0.0, 0.0
    minimum, maximum = math.inf, -math.inf
    for i, part in enumerate(parts):
        if not isinstance(part, NumericSummary):
            raise _kind_mismatch(name, i)
        if not np.array_equal(part.edges, first.edges):
            raise InvalidInput(
                f"column {name!r} was binned on other edges in profiles[{i}] than in profiles[0].",
                field=f"columns.{name}.edges",
                hint="Profile every part on the same edges: profile_like(reference, ...) or "
                "profile_columns(..., edges=edges_from_sketches(...)).",
            )
        counts += part.counts
        missing += int(part.missing)
        if part.count == 0:
            continue
        # Chan, Golub and LeVeque (1979): exact pairwise update of mean and M2
        total = count + int(part.count)
        delta = float(part.mean) - mean
        mean += delta * (part.count / total)
        m2 += float(part.m2) + delta * delta * (count * part.count / total)
        count = total
        minimum, maximum = min(minimum, float(part.minimum)), max(maximum, float(part.maximum))
    return NumericSummary(
        edges=first.edges,
        counts=counts,
        count=count,
        missing=missing,
        mean=mean,
        m2=m2,
        minimum=minimum,
        maximum=maximum,
    )


def _merge_categorical(name: str, parts: Sequence[ColumnSummary]) -> CategoricalSummary:
    totals: dict[str, int] = {}
    missing = 0
    for i, part in enumerate(parts):
        if not isinstance(part, CategoricalSummary):
            raise _kind_mismatch(name, i)
        for category, n in zip(part.categories, part.counts.tolist(), strict=True):
            totals[category] = totals.get(category, 0) + int(n)
        missing += int(part.missing)
    categories = tuple(sorted(totals))
    counts = np.array([totals[c] for c in categories], dtype=np.int64)
    return CategoricalSummary(categories=categories, counts=counts, missing=missing)


def _kind_mismatch(name: str, index: int) -> InvalidInput:
    return InvalidInput(
        f"column {name!r} is numeric in one profile and categorical in another "
        f"(profiles[0] vs profiles[{index}]).",
        field=f"columns.{name}",
        hint="Profile every part with the same `categorical=` columns.",
    )


def _merge_samples(profiles: Sequence[DataProfile], seed: int) -> _Floats | None:
    """Draw a uniform sample of the union from the parts' uniform samples.

    How many rows each part gives is multivariate hypergeometric in the parts' row counts
    (exactly what a uniform sample of the union would hold); a part whose sample is too
    small gives all it has and the others make up the rest.
    """
    samples = [profile.sample for profile in profiles]
    if any(sample is None for sample in samples):
        return None
    checked = [s for s in samples if s is not None]
    width = checked[0].shape[1] if checked[0].ndim == 2 else -1
    for i, sample in enumerate(checked):
        if sample.ndim != 2 or sample.shape[1] != width:
            raise InvalidInput(
                f"`profiles[{i}].sample` has shape {sample.shape}; profiles[0] has "
                f"{checked[0].shape} (one column per numeric column).",
                field=f"profiles[{i}].sample",
            )
    have = np.array([s.shape[0] for s in checked], dtype=np.int64)
    take = int(min(have.max(), have.sum()))
    rng = np.random.default_rng(seed)
    rows = np.array([max(int(p.num_rows), int(k)) for p, k in zip(profiles, have, strict=True)])
    share = np.minimum(rng.multivariate_hypergeometric(rows, take), have)
    short = take - int(share.sum())
    if short:
        share += rng.multivariate_hypergeometric(have - share, short)
    picked = [
        sample[np.sort(rng.choice(sample.shape[0], size=int(n), replace=False))]
        for sample, n in zip(checked, share, strict=True)
    ]
    return np.concatenate(picked, axis=0).astype(np.float64, copy=False)
