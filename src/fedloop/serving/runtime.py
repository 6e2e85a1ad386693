"""One model version ready to serve: its onnxruntime session and everything precomputed for it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from fedloop.core import InvalidInput, Signature, TensorSpec
from fedloop.registry import ModelRegistry
from fedloop.store import ModelVersion

__all__ = ["OIP_DATATYPES", "InputSpec", "ModelRuntime", "load_runtime"]

#: numpy dtype name -> Open Inference Protocol datatype.
OIP_DATATYPES: dict[str, str] = {
    "bool": "BOOL",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}

Array = npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class InputSpec:
    """A signature input with its numpy dtype and checks precomputed.

    Attributes
    ----------
    name : str
        Tensor name.
    dtype : numpy.dtype
        Expected dtype.
    datatype : str
        Its Open Inference Protocol name (``FP32``…).
    shape : tuple
        Dimensions, ``None`` where free.
    row_shape : tuple
        The shape of one row (all but the first dimension).
    batched : bool
        True when the first dimension is free (rows can be stacked).
    floating : bool
        True for float dtypes (values are checked to be finite).
    """

    name: str
    dtype: np.dtype[Any]
    datatype: str
    shape: tuple[int | None, ...]
    row_shape: tuple[int | None, ...]
    batched: bool
    floating: bool

    @classmethod
    def from_spec(cls, spec: TensorSpec) -> InputSpec:
        """Precompute the checks of one :class:`~fedloop.core.TensorSpec`."""
        dtype = np.dtype(spec.dtype)
        return cls(
            name=spec.name,
            dtype=dtype,
            datatype=OIP_DATATYPES[spec.dtype],
            shape=spec.shape,
            row_shape=spec.shape[1:],
            batched=bool(spec.shape) and spec.shape[0] is None,
            floating=dtype.kind == "f",
        )

    def shape_matches(self, shape: tuple[int, ...]) -> bool:
        """Return True when a concrete shape fits this input's declared shape."""
        if len(shape) != len(self.shape):
            return False
        return all(d is None or d == s for d, s in zip(self.shape, shape, strict=True))

    def shape_text(self) -> str:
        """Return the declared shape for messages (``[-1, 30]``)."""
        return "[" + ", ".join("-1" if d is None else str(d) for d in self.shape) + "]"


@dataclass(eq=False)
class ModelRuntime:
    """A loaded model version: the session plus its precomputed signature.

    Attributes
    ----------
    name : str
        Registered model name.
    version : int
        Version number.
    version_id : str
        The version's id in the store (what an alias watcher compares).
    signature : Signature
        Declared inputs and outputs.
    inputs : tuple of InputSpec
        Inputs with their checks precomputed, in signature order.
    output_names : list of str
        Outputs, in signature order.
    batchable : bool
        True when every input and output has a free first dimension.
    """

    name: str
    version: int
    version_id: str
    signature: Signature
    session: ort.InferenceSession
    inputs: tuple[InputSpec, ...] = field(init=False)
    inputs_by_name: dict[str, InputSpec] = field(init=False)
    output_names: list[str] = field(init=False)
    batchable: bool = field(init=False)
    version_text: str = field(init=False)
    #: Measured at load: how long one row takes (what the batcher runs inline or in a thread).
    seconds_per_row: float = field(init=False, default=1.0)

    def __post_init__(self) -> None:
        self.inputs = tuple(InputSpec.from_spec(s) for s in self.signature.inputs)
        self.inputs_by_name = {s.name: s for s in self.inputs}
        self.output_names = [s.name for s in self.signature.outputs]
        self.batchable = all(s.batched for s in self.inputs) and all(
            bool(s.shape) and s.shape[0] is None for s in self.signature.outputs
        )
        self.version_text = str(self.version)

    def run(self, feeds: dict[str, Array]) -> list[Array]:
        """Run the graph on validated inputs.

        Parameters
        ----------
        feeds : dict
            Input name -> array, already checked against the signature.

        Returns
        -------
        list of ndarray
            Outputs in signature order.
        """
        outputs: list[Array] = self.session.run(self.output_names, feeds)
        return outputs

    def metadata(self) -> dict[str, Any]:
        """Return the Open Inference Protocol model metadata of this version."""

        def tensor(spec: TensorSpec) -> dict[str, Any]:
            return {
                "name": spec.name,
                "datatype": OIP_DATATYPES[spec.dtype],
                "shape": [-1 if d is None else d for d in spec.shape],
            }

        return {
            "name": self.name,
            "versions": [self.version_text],
            "platform": "onnxruntime_onnx",
            "inputs": [tensor(s) for s in self.signature.inputs],
            "outputs": [tensor(s) for s in self.signature.outputs],
        }


def _session(onnx_bytes: bytes, *, intra_op_threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def load_runtime(
    registry: ModelRegistry, version: ModelVersion, *, intra_op_threads: int = 1
) -> ModelRuntime:
    """Load a registered version's ONNX graph into onnxruntime and run it once (warm-up).

    Parameters
    ----------
    registry : ModelRegistry
        Where the graph is read from (integrity-checked).
    version : ModelVersion
        The version to load.
    intra_op_threads : int, default 1
        onnxruntime intra-op threads (0: onnxruntime's default).

    Returns
    -------
    ModelRuntime
        Ready to serve.

    Raises
    ------
    ArtifactMissing, ArtifactCorrupt
        When the graph's bytes are gone or changed.
    InvalidInput
        When onnxruntime cannot load or run the graph.
    """
    graph = registry.load_onnx(version)
    try:
        session = _session(graph, intra_op_threads=intra_op_threads)
    except Exception as err:  # onnxruntime raises generic exceptions
        raise InvalidInput(
            f"onnxruntime cannot load {version.model_name}:{version.version}: {err}.",
            field="model",
            value=f"{version.model_name}:{version.version}",
        ) from err
    runtime = ModelRuntime(
        name=version.model_name,
        version=version.version,
        version_id=str(version.id),
        signature=version.signature,
        session=session,
    )
    warm = {
        s.name: np.zeros([1 if d is None else d for d in s.shape], dtype=s.dtype)
        for s in runtime.inputs
    }
    runtime.run(warm)
    if runtime.batchable:
        rows = {
            s.name: np.zeros([64, *(1 if d is None else d for d in s.shape[1:])], dtype=s.dtype)
            for s in runtime.inputs
        }
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            runtime.run(rows)
            best = min(best, time.perf_counter() - started)
        runtime.seconds_per_row = best / 64
    return runtime
