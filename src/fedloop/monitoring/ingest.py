"""Decoding and checking the payload log's POST bodies (predictions and late labels) at the monitor."""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fedloop.core import MalformedBody

__all__ = ["IngestBody", "LabelBatch", "PredictionBatch", "parse_ingest_body"]

#: dtypes a tensor may declare; anything else (objects, strings) is refused.
_DTYPES = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
     "float16", "float32", "float64"}
)  # fmt: skip
_MAX_RANK = 4


class _Tensor(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    dtype: str
    shape: list[int] = Field(max_length=_MAX_RANK)
    b64: str


class _Batch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str = Field(min_length=1, max_length=200)
    version: int = Field(ge=1)
    role: str = Field(pattern=r"^(primary|canary|shadow)$")
    request_ids: list[str]
    times: list[float]
    rows: list[int]
    features: dict[str, _Tensor] = Field(min_length=1)
    prediction: dict[str, _Tensor] = Field(min_length=1)


class _Label(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    request_id: str = Field(min_length=1, max_length=200)
    label: float | int | bool
    time: float | None = None
    model: str | None = None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    predictions: list[_Batch] = []
    feedback: list[_Label] = []


@dataclass(frozen=True, eq=False)
class PredictionBatch:
    """Predictions of one model version: per-request ids, times and row counts, stacked tensors."""

    model: str
    version: int
    role: str
    request_ids: tuple[str, ...]
    times: npt.NDArray[np.float64]
    rows: npt.NDArray[np.int64]
    features: Mapping[str, npt.NDArray[Any]]
    prediction: Mapping[str, npt.NDArray[Any]]

    @property
    def row_times(self) -> npt.NDArray[np.float64]:
        """Each row's request time (a request's time repeated for each of its rows)."""
        return np.repeat(self.times, self.rows)


@dataclass(frozen=True, eq=False)
class LabelBatch:
    """Late labels: request ids, the label of each and when it arrived."""

    request_ids: tuple[str, ...]
    labels: npt.NDArray[np.float64]
    times: npt.NDArray[np.float64]
    models: tuple[str | None, ...]


@dataclass(frozen=True, eq=False)
class IngestBody:
    """A decoded, checked ingest body."""

    predictions: tuple[PredictionBatch, ...]
    labels: LabelBatch


def _where(err: ValidationError) -> str:
    first = err.errors()[0]
    return ".".join(str(part) for part in first["loc"]) or "body"


def _tensor(spec: _Tensor, *, field: str) -> npt.NDArray[Any]:
    if spec.dtype not in _DTYPES:
        raise MalformedBody(
            f"`{field}.dtype` {spec.dtype!r} is not a numeric dtype.",
            field=f"{field}.dtype",
            value=spec.dtype,
            hint=f"Use one of {', '.join(sorted(_DTYPES))}.",
        )
    if any(d < 0 for d in spec.shape) or not spec.shape:
        raise MalformedBody(
            f"`{field}.shape` must be a non-empty list of sizes >= 0; got {spec.shape}.",
            field=f"{field}.shape",
        )
    try:
        raw = base64.b64decode(spec.b64, validate=True)
    except (binascii.Error, ValueError) as err:
        raise MalformedBody(
            f"`{field}.b64` is not valid base64.",
            field=f"{field}.b64",
            hint="Encode the raw bytes.",
        ) from err
    dtype = np.dtype(spec.dtype).newbyteorder("<")
    expected = math.prod(spec.shape) * dtype.itemsize
    if len(raw) != expected:
        raise MalformedBody(
            f"`{field}` has {len(raw)} bytes; shape {spec.shape} of {spec.dtype} needs {expected}.",
            field=f"{field}.b64",
        )
    return np.frombuffer(raw, dtype=dtype).reshape(spec.shape).astype(dtype.newbyteorder("="))


def _batch(index: int, batch: _Batch) -> PredictionBatch:
    where = f"predictions[{index}]"
    n = len(batch.request_ids)
    if len(batch.times) != n or len(batch.rows) != n:
        raise MalformedBody(
            f"`{where}` has {n} request_ids, {len(batch.times)} times and {len(batch.rows)} rows;"
            " they must be equally long.",
            field=f"{where}.rows",
        )
    rows = np.asarray(batch.rows, dtype=np.int64)
    times = np.asarray(batch.times, dtype=np.float64)
    if n and (rows.min() < 1 or not np.isfinite(times).all()):
        raise MalformedBody(
            f"`{where}`: every request has >= 1 row and a finite time.", field=f"{where}.rows"
        )
    total = int(rows.sum())
    out: dict[str, dict[str, npt.NDArray[Any]]] = {"features": {}, "prediction": {}}
    for part in ("features", "prediction"):
        for name, spec in getattr(batch, part).items():
            field = f"{where}.{part}.{name}"
            arr = _tensor(spec, field=field)
            if arr.shape[0] != total:
                raise MalformedBody(
                    f"`{field}` has {arr.shape[0]} rows; the requests' rows add up to {total}.",
                    field=field,
                )
            out[part][name] = arr
    return PredictionBatch(
        model=batch.model,
        version=batch.version,
        role=batch.role,
        request_ids=tuple(batch.request_ids),
        times=times,
        rows=rows,
        features=out["features"],
        prediction=out["prediction"],
    )


def parse_ingest_body(body: bytes) -> IngestBody:
    """Decode and check one payload-log POST body; refuse anything malformed, naming the field.

    The body is ``{"predictions": [batch, ...], "feedback": [label, ...]}`` as written by the
    inference server's payload log (see ``fedloop.serving.PayloadLog``). Tensors are raw
    little-endian bytes in base64 with a numeric dtype and a shape whose first axis is the
    sum of the requests' rows. Nothing is evaluated or unpickled.

    Parameters
    ----------
    body : bytes
        The POST body (JSON).

    Returns
    -------
    IngestBody
        The prediction batches and the labels.

    Raises
    ------
    MalformedBody
        Naming the first bad field.
    """
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise MalformedBody(
            f"the ingest body is not JSON: {err}.", field="body", hint="POST a JSON object."
        ) from err
    try:
        parsed = _Body.model_validate(document)
    except ValidationError as err:
        where = _where(err)
        raise MalformedBody(
            f"`{where}`: {err.errors()[0]['msg']}.",
            field=where,
            hint='Send {"predictions": [...], "feedback": [...]} as the payload log writes it.',
        ) from err
    batches = tuple(_batch(i, b) for i, b in enumerate(parsed.predictions))
    labels = parsed.feedback
    for i, item in enumerate(labels):
        if not math.isfinite(float(item.label)):
            raise MalformedBody(
                f"`feedback[{i}].label` must be finite.", field=f"feedback[{i}].label"
            )
    return IngestBody(
        predictions=batches,
        labels=LabelBatch(
            request_ids=tuple(x.request_id for x in labels),
            labels=np.asarray([float(x.label) for x in labels], dtype=np.float64),
            times=np.asarray([x.time if x.time is not None else math.nan for x in labels]),
            models=tuple(x.model for x in labels),
        ),
    )
