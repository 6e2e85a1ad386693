"""Plain types shared by every layer: ids, model parameters and tensor signatures."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from typing import Literal, NewType, TypeAlias

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "DTYPES",
    "ArtifactDigest",
    "DatasetId",
    "EventId",
    "ModelVersionId",
    "Parameters",
    "ProjectId",
    "RunId",
    "RunKind",
    "RunStatus",
    "Signature",
    "TensorSpec",
    "new_id",
]

RunId = NewType("RunId", str)
ProjectId = NewType("ProjectId", str)
DatasetId = NewType("DatasetId", str)
ModelVersionId = NewType("ModelVersionId", str)
EventId = NewType("EventId", int)
ArtifactDigest = NewType("ArtifactDigest", str)

#: A model's parameters: an ordered map from tensor name to array.
Parameters: TypeAlias = "OrderedDict[str, npt.NDArray[np.generic]]"

RunKind = Literal["federated", "data-parallel", "local"]
RunStatus = Literal["running", "finished", "failed", "killed"]

#: Dtype names allowed in signatures and tensor payloads (numpy spelling).
DTYPES: tuple[str, ...] = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
)


def new_id() -> str:
    """Return a new random id (32 lowercase hex characters).

    Returns
    -------
    str
        A UUID4 without dashes.
    """
    return uuid.uuid4().hex


class TensorSpec(BaseModel):
    """Name, dtype and shape of one model input or output.

    Parameters
    ----------
    name : str
        Tensor name as in the ONNX graph.
    dtype : str
        One of :data:`DTYPES`.
    shape : list of int or None
        Dimensions; ``-1`` or ``None`` marks a free dimension (the batch, usually).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    dtype: str
    shape: tuple[int | None, ...]

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str) -> str:
        if value not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}; got {value!r}")
        return value

    @field_validator("shape")
    @classmethod
    def _dims(cls, value: tuple[int | None, ...]) -> tuple[int | None, ...]:
        out: list[int | None] = []
        for dim in value:
            if dim is None or dim == -1:
                out.append(None)
            elif dim < 0:
                raise ValueError(f"shape dimensions must be >= 0, -1 or null; got {dim}")
            else:
                out.append(dim)
        return tuple(out)


class Signature(BaseModel):
    """The inputs and outputs a served model accepts and returns.

    Parameters
    ----------
    inputs : list of TensorSpec
        At least one input.
    outputs : list of TensorSpec
        At least one output.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    inputs: tuple[TensorSpec, ...] = Field(min_length=1)
    outputs: tuple[TensorSpec, ...] = Field(min_length=1)
