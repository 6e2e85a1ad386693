"""Profiles as tensors (numeric, for the federated transport) and as bytes (any, for the store)."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from typing import Any, TypeGuard

import numpy as np
import numpy.typing as npt

from fedloop.core import InvalidInput, decode_parameters, encode_parameters
from fedloop.learn._profile_base import (
    CategoricalSummary,
    ColumnSummary,
    DataProfile,
    NumericSummary,
)

__all__ = ["decode_profile", "encode_profile", "profile_from_arrays", "profile_to_arrays"]

#: ``format`` of the JSON part of :func:`encode_profile`'s payload.
_FORMAT = "fedloop.profile/1"
#: Layout of a numeric column's ``<name>/stats`` tensor.
_STATS = ("count", "missing", "mean", "m2", "minimum", "maximum")
_PARTS = ("edges", "counts", "stats")
#: Counts above this are not exact in float64 (the stats tensor holds them).
_MAX_COUNT = 2**53


def profile_to_arrays(profile: DataProfile) -> dict[str, npt.NDArray[np.generic]]:
    """Flatten a numeric profile into tensors, e.g. for a client's reply over the transport.

    The layout is ``num_rows`` (int64, shape (1,)) and per column ``<name>/edges`` (float64),
    ``<name>/counts`` (int64) and ``<name>/stats`` (float64 ``[count, missing, mean, m2,
    minimum, maximum]``). The sample is never included: raw rows do not leave a silo.

    Parameters
    ----------
    profile : DataProfile
        A profile whose columns are all numeric.

    Returns
    -------
    dict[str, ndarray]
        Tensors in column order; :func:`profile_from_arrays` reverses it.

    Raises
    ------
    InvalidInput
        When a column is categorical (``field="columns.<name>"``).
    """
    _check_profile(profile)
    arrays: dict[str, npt.NDArray[np.generic]] = {
        "num_rows": np.array([profile.num_rows], dtype=np.int64)
    }
    for name, summary in profile.columns.items():
        if not isinstance(summary, NumericSummary):
            raise InvalidInput(
                f"column {name!r} is categorical; profile_to_arrays carries numeric columns only.",
                field=f"columns.{name}",
                hint="Use encode_profile for profiles with categorical columns.",
            )
        arrays.update(_numeric_arrays(name, summary))
    return arrays


def profile_from_arrays(
    arrays: Mapping[str, npt.NDArray[np.generic]], *, field: str = "profile"
) -> DataProfile:
    """Rebuild a numeric profile from :func:`profile_to_arrays` tensors, checking everything.

    Parameters
    ----------
    arrays : Mapping[str, ndarray]
        Tensors as received (untrusted).
    field : str, default "profile"
        Prefix of the field named in errors.

    Returns
    -------
    DataProfile
        Columns in the order of the tensors; no sample.

    Raises
    ------
    InvalidInput
        When a tensor is missing, unexpected, of the wrong dtype or shape, or the counts and
        statistics disagree (the field names the tensor, e.g. ``profile.age/counts``).
    """
    if not isinstance(arrays, Mapping):
        raise InvalidInput(
            f"`{field}` must be a mapping of name -> ndarray; got {type(arrays).__name__}.",
            field=field,
        )
    num_rows = _read_num_rows(arrays.get("num_rows"), f"{field}.num_rows")
    grouped: dict[str, dict[str, object]] = {}
    for key, value in arrays.items():
        if key == "num_rows":
            continue
        name, _, part = str(key).rpartition("/")
        if not name or part not in _PARTS:
            raise InvalidInput(
                f"unexpected tensor {key!r} in `{field}`; expected num_rows and "
                "<column>/edges, <column>/counts, <column>/stats.",
                field=f"{field}.{key}",
                hint="Send the arrays profile_to_arrays returned, unchanged.",
            )
        grouped.setdefault(name, {})[part] = value
    if not grouped:
        raise InvalidInput(f"`{field}` holds no column.", field=field)
    columns: dict[str, ColumnSummary] = {
        name: _read_numeric(name, parts, num_rows, field) for name, parts in grouped.items()
    }
    return DataProfile(columns=columns, num_rows=num_rows)


def encode_profile(profile: DataProfile) -> bytes:
    """Serialize a profile for the artifact store: safetensors plus a small JSON part.

    The tensors are those of :func:`profile_to_arrays` for numeric columns,
    ``<name>/counts`` for categorical ones, ``sample`` when there is one, and ``meta``: UTF-8
    JSON (uint8) with the format, ``num_rows`` and each column's kind (and, when
    categorical, its categories and missing count). Nothing is pickled.

    Parameters
    ----------
    profile : DataProfile
        Any profile.

    Returns
    -------
    bytes
        A safetensors image; :func:`decode_profile` reverses it.

    Raises
    ------
    InvalidInput
        When ``profile`` is not a DataProfile.
    """
    _check_profile(profile)
    described: list[dict[str, Any]] = []
    tensors: dict[str, npt.NDArray[np.generic]] = {}
    for name, summary in profile.columns.items():
        if isinstance(summary, NumericSummary):
            described.append({"name": name, "kind": "numeric"})
            tensors.update(_numeric_arrays(name, summary))
        else:
            described.append(
                {
                    "name": name,
                    "kind": "categorical",
                    "categories": list(summary.categories),
                    "missing": int(summary.missing),
                }
            )
            tensors[f"{name}/counts"] = np.asarray(summary.counts, dtype=np.int64)
    if profile.sample is not None:
        tensors["sample"] = np.asarray(profile.sample, dtype=np.float64)
    meta = {"format": _FORMAT, "num_rows": int(profile.num_rows), "columns": described}
    text = json.dumps(meta, ensure_ascii=False).encode("utf-8")
    return encode_parameters({"meta": np.frombuffer(text, dtype=np.uint8), **tensors})


def decode_profile(data: bytes) -> DataProfile:
    """Parse :func:`encode_profile` bytes (untrusted) back into a profile.

    Parameters
    ----------
    data : bytes
        The stored payload.

    Returns
    -------
    DataProfile
        Equal, field by field, to the encoded profile.

    Raises
    ------
    InvalidInput
        When the bytes are not such a payload; the field names the offending part
        (``profile``, ``profile.meta``, ``profile.<column>/counts``, ``profile.sample``...).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInput(
            f"`profile` must be bytes; got {type(data).__name__}.",
            field="profile",
            hint="Pass what encode_profile returned.",
        )
    tensors = decode_parameters(bytes(data), field="profile")
    meta = _read_meta(tensors.get("meta"))
    num_rows: int = meta["num_rows"]
    expected = {"meta", "sample"}
    columns: dict[str, ColumnSummary] = {}
    for entry in meta["columns"]:
        name = entry["name"]
        if entry["kind"] == "numeric":
            parts = {part: tensors.get(f"{name}/{part}") for part in _PARTS}
            columns[name] = _read_numeric(name, parts, num_rows, "profile")
            expected.update(f"{name}/{part}" for part in _PARTS)
        else:
            columns[name] = _read_categorical(name, entry, tensors.get(f"{name}/counts"), num_rows)
            expected.add(f"{name}/counts")
    for key in tensors:
        if key not in expected:
            raise InvalidInput(
                f"unexpected tensor {key!r} in the profile payload.",
                field=f"profile.{key}",
                hint="Decode only what encode_profile wrote.",
            )
    numeric = sum(isinstance(s, NumericSummary) for s in columns.values())
    sample = _read_sample(tensors.get("sample"), numeric, num_rows)
    return DataProfile(columns=columns, num_rows=num_rows, sample=sample)


def _check_profile(profile: object) -> None:
    if not isinstance(profile, DataProfile):
        raise InvalidInput(
            f"`profile` must be a DataProfile; got {type(profile).__name__}.", field="profile"
        )


def _numeric_arrays(name: str, summary: NumericSummary) -> dict[str, npt.NDArray[np.generic]]:
    stats = [summary.count, summary.missing, summary.mean, summary.m2]
    return {
        f"{name}/edges": np.asarray(summary.edges, dtype=np.float64),
        f"{name}/counts": np.asarray(summary.counts, dtype=np.int64),
        f"{name}/stats": np.array([*stats, summary.minimum, summary.maximum], dtype=np.float64),
    }


def _invalid(field: str, what: str) -> InvalidInput:
    return InvalidInput(
        f"`{field}` {what}.",
        field=field,
        hint="The profile payload is damaged or was not written by fedloop; re-create it.",
    )


def _tensor(value: object, field: str, kinds: str, ndim: int) -> npt.NDArray[np.generic]:
    """Return ``value`` if it is an ndarray of one of the dtype ``kinds`` and ``ndim``."""
    if value is None:
        raise _invalid(field, "is missing")
    if not isinstance(value, np.ndarray) or value.dtype.kind not in kinds or value.ndim != ndim:
        got = f"{value.dtype}{value.shape}" if isinstance(value, np.ndarray) else type(value)
        raise _invalid(field, f"must be a {ndim}-D array of kind {kinds!r}; got {got}")
    return value


def _read_num_rows(value: object, field: str) -> int:
    array = _tensor(value, field, "iu", 1)
    if array.shape != (1,) or not 0 <= int(array[0]) <= _MAX_COUNT:
        raise _invalid(field, f"must hold one row count in [0, 2**53]; got {array.tolist()}")
    return int(array[0])


def _read_counts(value: object, field: str, size: int, num_rows: int) -> npt.NDArray[np.int64]:
    counts = _tensor(value, field, "iu", 1)
    if counts.shape != (size,):
        raise _invalid(field, f"must have {size} entries; got {counts.shape[0]}")
    if size and (int(counts.min()) < 0 or int(counts.max()) > num_rows):
        raise _invalid(field, f"must hold counts in [0, {num_rows}]")
    return counts.astype(np.int64)


def _read_numeric(
    name: str, parts: Mapping[str, object], num_rows: int, field: str
) -> NumericSummary:
    where = f"{field}.{name}"
    edges = _tensor(parts.get("edges"), f"{where}/edges", "f", 1).astype(np.float64)
    if not np.isfinite(edges).all() or (np.diff(edges) <= 0).any():
        raise _invalid(f"{where}/edges", "must be finite and strictly increasing")
    counts = _read_counts(parts.get("counts"), f"{where}/counts", edges.size + 1, num_rows)
    stats = _tensor(parts.get("stats"), f"{where}/stats", "f", 1).astype(np.float64)
    if stats.shape != (len(_STATS),):
        raise _invalid(f"{where}/stats", f"must hold {list(_STATS)}; got shape {stats.shape}")
    count, missing, mean, m2, minimum, maximum = stats.tolist()
    if not all(0 <= c <= _MAX_COUNT and c == math.floor(c) for c in (count, missing)):
        raise _invalid(f"{where}/stats", "must hold whole, non-negative count and missing")
    if count != sum(counts.tolist()) or count + missing != num_rows:
        raise _invalid(
            f"{where}/stats", "count must equal the counts' sum and, with missing, the rows"
        )
    bounded = math.isfinite(minimum) and math.isfinite(maximum) and minimum <= maximum
    empty = minimum == math.inf and maximum == -math.inf and mean == 0 and m2 == 0
    # m2 may be inf (not NaN): the squares of values beyond ~1e154 overflow
    if not (math.isfinite(mean) and m2 >= 0 and (bounded if count else empty)):
        raise _invalid(f"{where}/stats", "holds a non-finite or inconsistent mean, m2, min or max")
    return NumericSummary(
        edges=edges,
        counts=counts,
        count=int(count),
        missing=int(missing),
        mean=mean,
        m2=m2,
        minimum=minimum,
        maximum=maximum,
    )


def _read_meta(value: object) -> dict[str, Any]:
    """Parse and check the JSON part: format, num_rows and the column list."""
    array = _tensor(value, "profile.meta", "u", 1)
    try:
        meta = json.loads(array.astype(np.uint8).tobytes().decode("utf-8"))
    except (ValueError, RecursionError) as err:
        raise _invalid("profile.meta", f"is not UTF-8 JSON ({err})") from err
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise _invalid("profile.meta", f"must be a JSON object with format {_FORMAT!r}")
    num_rows = meta.get("num_rows")
    if not _is_count(num_rows):
        raise _invalid("profile.meta.num_rows", f"must be a count in [0, 2**53]; got {num_rows!r}")
    columns = meta.get("columns")
    if not isinstance(columns, list) or not columns:
        raise _invalid("profile.meta.columns", "must be a non-empty list")
    seen: set[str] = set()
    for i, entry in enumerate(columns):
        where = f"profile.meta.columns[{i}]"
        if not isinstance(entry, dict) or entry.get("kind") not in ("numeric", "categorical"):
            raise _invalid(where, "must be an object with kind numeric or categorical")
        name = entry.get("name")
        if not isinstance(name, str) or not name or name in seen:
            raise _invalid(f"{where}.name", f"must be a new, non-empty string; got {name!r}")
        seen.add(name)
    return meta


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_COUNT


def _read_categorical(
    name: str, entry: Mapping[str, Any], value: object, num_rows: int
) -> CategoricalSummary:
    categories, missing = entry.get("categories"), entry.get("missing")
    if (
        not isinstance(categories, list)
        or not all(isinstance(c, str) for c in categories)
        or any(a >= b for a, b in itertools.pairwise(categories))
    ):
        raise _invalid(f"profile.meta.{name}.categories", "must be sorted, distinct strings")
    if not _is_count(missing):
        raise _invalid(f"profile.meta.{name}.missing", f"must be a count; got {missing!r}")
    counts = _read_counts(value, f"profile.{name}/counts", len(categories), num_rows)
    if sum(counts.tolist()) + missing != num_rows:
        raise _invalid(f"profile.{name}/counts", "with missing, must add up to num_rows")
    return CategoricalSummary(categories=tuple(categories), counts=counts, missing=missing)


def _read_sample(value: object, numeric: int, num_rows: int) -> npt.NDArray[np.float64] | None:
    if value is None:
        return None
    sample = _tensor(value, "profile.sample", "f", 2).astype(np.float64)
    if sample.shape[1] != numeric or numeric == 0 or sample.shape[0] > num_rows:
        raise _invalid(
            "profile.sample",
            f"must have at most {num_rows} rows and {numeric} columns; got {sample.shape}",
        )
    return sample
