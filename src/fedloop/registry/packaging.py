"""Model packages: weights (safetensors) + ONNX graph + input/output signature, checked together."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto

from fedloop.core import (
    ArtifactCorrupt,
    InvalidInput,
    NotFound,
    Parameters,
    Signature,
    SignatureMismatch,
    TensorSpec,
    decode_parameters,
    encode_parameters,
    validate_parameters,
)

__all__ = [
    "ModelPackage",
    "check_onnx",
    "infer_signature",
    "read_package",
    "write_package",
]

_ONNX_DTYPES: dict[int, str] = {
    TensorProto.BOOL: "bool",
    TensorProto.INT8: "int8",
    TensorProto.INT16: "int16",
    TensorProto.INT32: "int32",
    TensorProto.INT64: "int64",
    TensorProto.UINT8: "uint8",
    TensorProto.UINT16: "uint16",
    TensorProto.UINT32: "uint32",
    TensorProto.UINT64: "uint64",
    TensorProto.FLOAT16: "float16",
    TensorProto.FLOAT: "float32",
    TensorProto.DOUBLE: "float64",
}
_MAX_ONNX_BYTES = 2 * 1024**3


def _parse(onnx_bytes: bytes) -> onnx.ModelProto:
    if not isinstance(onnx_bytes, (bytes, bytearray, memoryview)) or len(onnx_bytes) == 0:
        raise InvalidInput(
            "`onnx_model` must be the non-empty bytes of an ONNX model.",
            field="onnx_model",
            hint="Export the model with torch.onnx.export or the model adapter's to_onnx().",
        )
    if len(onnx_bytes) >= _MAX_ONNX_BYTES:
        raise InvalidInput(
            "`onnx_model` is 2 GiB or larger; single-file ONNX models must be smaller.",
            field="onnx_model",
        )
    try:
        model = onnx.load_from_string(bytes(onnx_bytes))
        onnx.checker.check_model(model)
    except Exception as err:  # onnx raises several unrelated types for bad input
        raise InvalidInput(
            f"`onnx_model` is not a valid ONNX model: {err}.",
            field="onnx_model",
            hint="Check the exporter's output with onnx.checker.check_model.",
        ) from err
    return model


def _specs(values: Any, initializers: set[str]) -> tuple[TensorSpec, ...]:
    out: list[TensorSpec] = []
    for value in values:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        dtype = _ONNX_DTYPES.get(tensor.elem_type)
        if dtype is None:
            raise InvalidInput(
                f"graph tensor {value.name!r} has an unsupported ONNX element type "
                f"{tensor.elem_type}.",
                field=f"onnx_model.{value.name}",
                hint="Serve numeric or boolean tensors only.",
            )
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
        out.append(TensorSpec(name=value.name, dtype=dtype, shape=dims))
    return tuple(out)


def infer_signature(onnx_bytes: bytes) -> Signature:
    """Read the input/output signature off an ONNX graph.

    Parameters
    ----------
    onnx_bytes : bytes
        A serialized ONNX model.

    Returns
    -------
    Signature
        Graph inputs (initializers excluded) and outputs.

    Raises
    ------
    InvalidInput
        When the bytes are not a valid ONNX model.
    """
    model = _parse(onnx_bytes)
    inits = {i.name for i in model.graph.initializer}
    return Signature(
        inputs=_specs(model.graph.input, inits), outputs=_specs(model.graph.output, set())
    )


def _compatible(declared: TensorSpec, graph: TensorSpec, where: str) -> None:
    if declared.dtype != graph.dtype:
        raise SignatureMismatch(
            f"{where} {declared.name!r} is declared {declared.dtype} but the graph has {graph.dtype}.",
            field=f"signature.{where}s.{declared.name}",
            hint="Fix the signature's dtype or re-export the graph.",
        )
    if graph.shape and len(declared.shape) != len(graph.shape):
        raise SignatureMismatch(
            f"{where} {declared.name!r} is declared with rank {len(declared.shape)} but the graph "
            f"has rank {len(graph.shape)}.",
            field=f"signature.{where}s.{declared.name}",
        )
    for i, (d, g) in enumerate(zip(declared.shape, graph.shape, strict=False)):
        if d is not None and g is not None and d != g:
            raise SignatureMismatch(
                f"{where} {declared.name!r} dimension {i} is declared {d} but the graph has {g}.",
                field=f"signature.{where}s.{declared.name}",
            )


def check_onnx(onnx_bytes: bytes, signature: Signature | None = None) -> Signature:
    """Validate an ONNX graph, match it to a signature and run it once on zeros.

    Parameters
    ----------
    onnx_bytes : bytes
        A serialized ONNX model.
    signature : Signature or None
        The declared signature; inferred from the graph when None.

    Returns
    -------
    Signature
        The signature to store.

    Raises
    ------
    InvalidInput
        When the graph is not valid ONNX or onnxruntime cannot run it.
    SignatureMismatch
        When the declared signature does not fit the graph.
    """
    graph_sig = infer_signature(onnx_bytes)
    sig = signature or graph_sig
    for where, declared, actual in (
        ("input", sig.inputs, graph_sig.inputs),
        ("output", sig.outputs, graph_sig.outputs),
    ):
        by_name = {s.name: s for s in actual}
        if {s.name for s in declared} != set(by_name):
            raise SignatureMismatch(
                f"the signature's {where}s {sorted(s.name for s in declared)} do not match the "
                f"graph's {sorted(by_name)}.",
                field=f"signature.{where}s",
                hint="Name the tensors as in the graph (input_names/output_names at export).",
            )
        for spec in declared:
            _compatible(spec, by_name[spec.name], where)
    try:
        session = ort.InferenceSession(bytes(onnx_bytes), providers=["CPUExecutionProvider"])
        feeds = {
            s.name: np.zeros([1 if d is None else d for d in s.shape], dtype=s.dtype)
            for s in sig.inputs
        }
        session.run(None, feeds)
    except Exception as err:  # onnxruntime reports failures as generic exceptions
        raise InvalidInput(
            f"onnxruntime cannot run `onnx_model`: {err}.",
            field="onnx_model",
            hint="Export with an opset onnxruntime supports (e.g. 17) and check the graph.",
        ) from err
    return sig


@dataclass(frozen=True)
class ModelPackage:
    """Everything needed to serve or fine-tune one model version.

    Attributes
    ----------
    weights : Parameters
        The trained parameters.
    onnx_model : bytes
        The serving graph.
    signature : Signature
        Inputs and outputs of the graph.
    metadata : dict
        Name, version, metrics and lineage summary.
    """

    weights: Parameters
    onnx_model: bytes
    signature: Signature
    metadata: dict[str, Any]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_package(package: ModelPackage, folder: Path) -> Path:
    """Write a package to a folder: weights.safetensors, model.onnx, signature.json, manifest.json.

    Parameters
    ----------
    package : ModelPackage
        What to write.
    folder : Path
        Target folder (created; existing package files are replaced).

    Returns
    -------
    Path
        The folder.
    """
    folder.mkdir(parents=True, exist_ok=True)
    weights = encode_parameters(validate_parameters(package.weights, field="weights"))
    signature = package.signature.model_dump_json(indent=2).encode()
    files = {
        "weights.safetensors": weights,
        "model.onnx": package.onnx_model,
        "signature.json": signature,
    }
    for name, data in files.items():
        tmp = folder / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(folder / name)
    manifest = {
        "format": "fedloop-model/1",
        "files": {
            name: {"sha256": _sha(data), "size_bytes": len(data)} for name, data in files.items()
        },
        "metadata": package.metadata,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return folder


def read_package(folder: Path) -> ModelPackage:
    """Read and verify a package folder written by :func:`write_package`.

    Parameters
    ----------
    folder : Path
        The package folder.

    Returns
    -------
    ModelPackage
        The verified package.

    Raises
    ------
    NotFound
        When a file is missing.
    ArtifactCorrupt
        When a file's sha256 does not match the manifest.
    InvalidInput
        When the manifest is malformed.
    """
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise NotFound(
            f"{manifest_path} does not exist.",
            field="package",
            value=str(folder),
            hint="Point at a folder written by `fedloop models export`.",
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        entries = manifest["files"]
        if not isinstance(entries, dict) or not all(
            isinstance(e, dict) and isinstance(e.get("sha256"), str) for e in entries.values()
        ):
            raise TypeError("`files` must map each file name to {sha256, size_bytes}")
    except (ValueError, KeyError, TypeError) as err:
        raise InvalidInput(
            f"{manifest_path} is not a fedloop manifest: {err}.",
            field="manifest.json",
            hint="Export the package again with `fedloop models export`.",
        ) from err
    data: dict[str, bytes] = {}
    for name in ("weights.safetensors", "model.onnx", "signature.json"):
        path = folder / name
        if not path.is_file() or name not in entries:
            raise NotFound(f"package file {path} is missing.", field=name, value=str(path))
        blob = path.read_bytes()
        if _sha(blob) != entries[name]["sha256"]:
            raise ArtifactCorrupt(
                f"package file {path} does not match its manifest sha256.",
                field=name,
                hint="Export the package again from the registry.",
            )
        data[name] = blob
    try:
        signature = Signature.model_validate_json(data["signature.json"])
    except ValueError as err:  # pydantic's ValidationError is a ValueError
        raise InvalidInput(
            f"{folder / 'signature.json'} is not a valid signature: {err}.",
            field="signature.json",
            hint="Export the package again with `fedloop models export`.",
        ) from err
    return ModelPackage(
        weights=decode_parameters(data["weights.safetensors"], field="weights.safetensors"),
        onnx_model=data["model.onnx"],
        signature=signature,
        metadata=dict(manifest.get("metadata", {})),
    )
