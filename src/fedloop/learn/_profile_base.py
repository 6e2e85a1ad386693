"""The profile data model (column summaries) and the checks every profile builder shares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from fedloop.core import InvalidInput

__all__ = ["CategoricalSummary", "ColumnSummary", "DataProfile", "NumericSummary"]

#: Rows per bin below which edges are coarsened (about ten rows per bin).
ROWS_PER_BIN = 10


@dataclass(frozen=True, eq=False)
class NumericSummary:
    """One numeric column: counts on fixed bins plus exact moments.

    Bins are defined by interior ``edges`` (strictly increasing, ``B - 1`` values for ``B``
    bins). Bin ``i`` holds the values ``v`` with ``edges[i-1] < v <= edges[i]``, which is
    ``np.searchsorted(edges, v, side="left")``; the first bin is unbounded below and the last
    unbounded above, so no finite value ever falls outside.

    Attributes
    ----------
    edges : ndarray of float64, shape (B - 1,)
        Interior bin edges.
    counts : ndarray of int64, shape (B,)
        Finite values per bin.
    count : int
        Finite values in total (``counts.sum()``).
    missing : int
        NaN and infinite values (not in ``counts``).
    mean : float
        Mean of the finite values (0.0 when ``count`` is 0).
    m2 : float
        Sum of squared deviations from the mean (variance = ``m2 / count``).
    minimum, maximum : float
        Smallest and largest finite value (``inf`` / ``-inf`` when ``count`` is 0).
    """

    edges: npt.NDArray[np.float64]
    counts: npt.NDArray[np.int64]
    count: int
    missing: int
    mean: float
    m2: float
    minimum: float
    maximum: float
    kind: Literal["numeric"] = "numeric"


@dataclass(frozen=True, eq=False)
class CategoricalSummary:
    """One categorical column: counts per category (values compared as strings).

    Attributes
    ----------
    categories : tuple of str
        Observed categories, sorted.
    counts : ndarray of int64, shape (len(categories),)
        Rows per category.
    missing : int
        Missing values (None, NaN).
    """

    categories: tuple[str, ...]
    counts: npt.NDArray[np.int64]
    missing: int
    kind: Literal["categorical"] = "categorical"


ColumnSummary = NumericSummary | CategoricalSummary


@dataclass(frozen=True, eq=False)
class DataProfile:
    """Summaries of a data set's columns; two profiles on the same bins merge exactly.

    Attributes
    ----------
    columns : Mapping[str, NumericSummary | CategoricalSummary]
        Column name -> summary, in column order.
    num_rows : int
        Rows summarised.
    sample : ndarray of float64 or None
        An optional uniform sample of rows (reservoir) of the numeric columns, in their order,
        for multivariate tests; None where raw rows may not be kept (a federated model's
        reference is merged from client summaries and has none).
    """

    columns: Mapping[str, ColumnSummary]
    num_rows: int
    sample: npt.NDArray[np.float64] | None = None


def check_int(name: str, value: object, *, minimum: int) -> None:
    """Raise InvalidInput naming ``name`` unless ``value`` is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidInput(
            f"`{name}` must be an integer >= {minimum}; got {value!r}.", field=name, value=value
        )


def check_columns(
    columns: Mapping[str, npt.ArrayLike], names: Sequence[str]
) -> tuple[dict[str, npt.NDArray[np.generic]], int]:
    """Return the named columns as 1-D arrays of one length, and that length."""
    if not isinstance(columns, Mapping):
        raise InvalidInput(
            f"`columns` must be a mapping of name -> 1-D array; got {type(columns).__name__}.",
            field="columns",
            hint="Pass a dict such as {'amount': amounts, 'country': countries}.",
        )
    if not names:
        raise InvalidInput("`columns` is empty.", field="columns", hint="Pass at least one column.")
    arrays: dict[str, npt.NDArray[np.generic]] = {}
    for name in names:
        if not isinstance(name, str) or not name:
            raise InvalidInput(
                f"column names must be non-empty strings; got {name!r}.", field="columns"
            )
        if name not in columns:
            raise InvalidInput(
                f"column {name!r} is missing; got columns {sorted(map(str, columns))}.",
                field=f"columns.{name}",
                hint="Pass every column of the reference profile (extra columns are ignored).",
            )
        try:
            array = np.asarray(columns[name])
        except (TypeError, ValueError) as err:
            raise InvalidInput(
                f"column {name!r} is not an array: {err}.", field=f"columns.{name}"
            ) from err
        if array.ndim != 1:
            raise InvalidInput(
                f"column {name!r} must be 1-D; got shape {array.shape}.",
                field=f"columns.{name}",
                hint="Split a 2-D tensor into columns first (columns_from_tensors).",
            )
        arrays[name] = array
    lengths = {name: array.shape[0] for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise InvalidInput(
            f"columns differ in length: {lengths}.",
            field="columns",
            hint="Every column holds one value per row.",
        )
    return arrays, next(iter(lengths.values()))


def numeric_values(name: str, values: npt.NDArray[np.generic]) -> npt.NDArray[np.float64]:
    """Return a numeric column as float64, or raise InvalidInput naming the column."""
    if values.dtype.kind not in "biuf":
        raise InvalidInput(
            f"column {name!r} has dtype {values.dtype}; a numeric column needs bool, integer "
            "or float values.",
            field=f"columns.{name}",
            hint="List it in `categorical=` to count its values instead.",
        )
    return np.asarray(values, dtype=np.float64)
