"""A silo's local training data: numeric tables from CSV or Parquet files into arrays."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fedloop.core import InvalidInput, NotFound, require

__all__ = ["load_table"]

Table = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]


def load_table(path: str | Path, *, label: str, features: Sequence[str] | None = None) -> Table:
    """Load a numeric table: the feature columns as float32 rows and the label as int64.

    CSV files need a header row and a comma delimiter; Parquet needs the ``parquet`` extra
    (pyarrow). Every feature value must be a finite number and every label an integer.

    Parameters
    ----------
    path : str or Path
        A ``.csv`` or ``.parquet`` file.
    label : str
        The label column (e.g. ``is_fraud``).
    features : sequence of str or None
        Feature columns, in model order; default: every other column, in file order.

    Returns
    -------
    tuple of (ndarray, ndarray)
        ``x`` (rows x features, float32) and ``y`` (rows, int64).

    Raises
    ------
    InvalidInput
        Naming the file and, where there is one, the row and column of the first bad value.
    NotFound
        When the file does not exist.
    MissingExtraError
        For Parquet without pyarrow.

    Example
    -------
    >>> x, y = load_table("bank-a.csv", label="is_fraud")  # doctest: +SKIP
    """
    file = Path(path)
    if not file.is_file():
        raise NotFound(f"data file {file} does not exist.", field="data", value=str(file))
    suffix = file.suffix.lower()
    if suffix == ".csv":
        header, x, y = _read_csv(file, label)
    elif suffix in (".parquet", ".pq"):
        header, x, y = _read_parquet(file, label)
    else:
        raise InvalidInput(
            f"data file {file} has an unknown type {suffix or '(none)'!r}.",
            field="data",
            hint="Use a .csv file with a header row or a .parquet file.",
        )
    others = [c for c in header if c != label]
    columns = others if features is None else list(features)
    unknown = [c for c in columns if c not in others]
    if unknown:
        raise InvalidInput(
            f"{file}: feature columns {unknown} are not in the file (or are the label).",
            field="features",
        )
    x = x[:, [others.index(c) for c in columns]]
    if len(y) == 0 or not columns:
        raise InvalidInput(f"{file} has no data rows or no feature columns.", field="data")
    return np.ascontiguousarray(x, dtype=np.float32), y


def _label_position(file: Path, header: list[str], label: str) -> int:
    if label not in header:
        raise InvalidInput(
            f"{file}: no label column {label!r}; the columns are {header[:20]}.",
            field="label",
            value=label,
            hint="Pass --label with the name of the column that holds the class.",
        )
    if len(set(header)) != len(header):
        dupes = sorted({c for c in header if header.count(c) > 1})
        raise InvalidInput(f"{file}: duplicate column names {dupes}.", field="data")
    return header.index(label)


def _to_labels(
    file: Path, values: npt.NDArray[np.float64], label: str, first_row: int
) -> npt.NDArray[np.int64]:
    where = "line" if first_row == 2 else "row"
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        row = int(np.argmax(bad))
        raise InvalidInput(
            f"{file}, {where} {row + first_row}, column {label!r}: labels must be integers; "
            f"got {values[row]!r}.",
            field="label",
        )
    return values.astype(np.int64)


def _read_csv(
    file: Path, label: str
) -> tuple[list[str], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    with file.open(newline="", encoding="utf-8") as handle:
        header = [c.strip() for c in next(csv.reader(handle), [])]
        if not header or not any(header):
            raise InvalidInput(f"{file} is empty or has no header row.", field="data")
        target = _label_position(file, header, label)
        text = handle.read()
    if not text.strip():
        raise InvalidInput(f"{file} has a header but no data rows.", field="data")
    try:  # the fast path; on any problem, the slow path finds and names the bad cell
        table = np.loadtxt(io.StringIO(text), delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError:
        table = _parse_rows(file, header, text)
    if table.size and table.shape[1] != len(header):
        table = _parse_rows(file, header, text)
    _check_finite(file, header, table, label, first_row=2)
    y = _to_labels(file, table[:, target], label, first_row=2)
    return header, np.delete(table, target, axis=1), y


def _parse_rows(file: Path, header: list[str], text: str) -> npt.NDArray[np.float64]:
    rows: list[list[float]] = []
    for line, row in enumerate(csv.reader(io.StringIO(text)), start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise InvalidInput(
                f"{file}, line {line}: {len(row)} values for {len(header)} columns.", field="data"
            )
        parsed = []
        for column, cell in zip(header, row, strict=True):
            try:
                parsed.append(float(cell))
            except ValueError:
                raise InvalidInput(
                    f"{file}, line {line}, column {column!r}: not a number: {cell!r}.",
                    field="data",
                    hint="Every column must be numeric; encode categories as numbers first.",
                ) from None
        rows.append(parsed)
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(header))


def _check_finite(
    file: Path, header: list[str], table: npt.NDArray[np.float64], label: str, *, first_row: int
) -> None:
    where = "line" if first_row == 2 else "row"
    bad = ~np.isfinite(table)
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        raise InvalidInput(
            f"{file}, {where} {row + first_row}, column {header[col]!r}: missing or non-finite "
            f"value {table[row, col]!r}.",
            field="label" if header[col] == label else "data",
            hint="Impute or drop missing values before training.",
        )


def _read_parquet(
    file: Path, label: str
) -> tuple[list[str], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    pq: Any = require("parquet", feature="Parquet files", module="pyarrow.parquet")
    try:
        table = pq.read_table(file)
    except (OSError, ValueError) as err:
        raise InvalidInput(f"{file} is not a readable Parquet file: {err}.", field="data") from err
    header = [str(c) for c in table.column_names]
    target = _label_position(file, header, label)
    columns = []
    for name in header:
        column = table.column(name)
        kind = str(column.type)
        if not (kind.startswith(("int", "uint", "float", "double", "halffloat")) or kind == "bool"):
            raise InvalidInput(
                f"{file}, column {name!r}: type {kind} is not numeric.",
                field="data",
                hint="Every column must be numeric; encode categories as numbers first.",
            )
        if column.null_count:
            rows = column.is_null().to_numpy(zero_copy_only=False)
            raise InvalidInput(
                f"{file}, row {int(np.argmax(rows)) + 1}, column {name!r}: missing value.",
                field="label" if name == label else "data",
                hint="Impute or drop missing values before training.",
            )
        columns.append(np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64))
    matrix = np.column_stack(columns) if columns else np.empty((0, 0))
    _check_finite(file, header, matrix, label, first_row=1)
    y = _to_labels(file, matrix[:, target], label, first_row=1)
    return header, np.delete(matrix, target, axis=1), y
