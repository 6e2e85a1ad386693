"""Request parsing and validation against a model's signature; response encoding (OIP and plain JSON)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedloop.core import InvalidInput, MalformedBody
from fedloop.serving.runtime import OIP_DATATYPES, Array, InputSpec, ModelRuntime

__all__ = [
    "HEADER_LENGTH",
    "InferRequest",
    "dumps",
    "encode_infer_response",
    "encode_predict_response",
    "loads",
    "parse_infer",
    "parse_predict",
]

#: The binary tensor extension's header: length of the JSON part that starts the body.
HEADER_LENGTH = "inference-header-content-length"

try:  # orjson is optional: about 3x faster on request-sized documents
    import orjson as _orjson  # type: ignore[import-not-found, unused-ignore]

    loads: Callable[[bytes], Any] = _orjson.loads

    def dumps(value: Any) -> bytes:
        """Serialize to compact JSON bytes."""
        out: bytes = _orjson.dumps(value)
        return out

except ImportError:  # pragma: no cover - depends on the environment
    loads = json.loads
    _encoder = json.JSONEncoder(separators=(",", ":"))

    def dumps(value: Any) -> bytes:
        """Serialize to compact JSON bytes."""
        return _encoder.encode(value).encode()


_BY_DATATYPE = {v: k for k, v in OIP_DATATYPES.items()}


@dataclass(slots=True)
class InferRequest:
    """A validated inference request.

    Attributes
    ----------
    feeds : dict
        Input name -> array, matching the signature.
    rows : int
        Rows in the request (the first dimension; 1 for unbatched models).
    request_id : str or None
        The id the caller chose, if any.
    outputs : list of (name, binary) or None
        Requested outputs and whether each goes back as binary; None means all, as JSON.
    """

    feeds: dict[str, Array]
    rows: int
    request_id: str | None = None
    outputs: list[tuple[str, bool]] | None = None


def _document(body: bytes | memoryview) -> Any:
    try:
        return loads(bytes(body))
    except (ValueError, UnicodeDecodeError) as err:
        raise MalformedBody(
            f"the request body is not valid JSON: {err}.",
            field="body",
            hint="Send a JSON object with Content-Type: application/json.",
        ) from err


def _to_array(data: Any, spec: InputSpec, field: str) -> Array:
    if not isinstance(data, list):
        raise InvalidInput(
            f"`{field}` must be a (nested) list of numbers; got {type(data).__name__}.",
            field=field,
        )
    try:
        return np.asarray(data, dtype=spec.dtype)
    except (ValueError, TypeError, OverflowError) as err:
        raise InvalidInput(
            f"`{field}` must hold {spec.dtype.name} values in a regular (non-ragged) array: {err}.",
            field=field,
            hint=f"Input {spec.name!r} is {spec.datatype} with shape {spec.shape_text()}.",
        ) from err


def _check_values(arr: Array, spec: InputSpec, field: str) -> None:
    if spec.floating and not np.isfinite(arr).all():
        raise InvalidInput(
            f"`{field}` contains NaN or infinite values.",
            field=field,
            hint="Impute missing values before calling the model.",
        )


def _check_shape(shape: tuple[int, ...], spec: InputSpec, field: str) -> None:
    if not spec.shape_matches(shape) or (spec.batched and shape[0] < 1):
        raise InvalidInput(
            f"`{field}` has shape {list(shape)} but input {spec.name!r} takes {spec.shape_text()}"
            " (at least one row).",
            field=field,
            value=list(shape),
        )


def _rows(feeds: dict[str, Array], runtime: ModelRuntime, field: str) -> int:
    if not runtime.batchable:
        return 1
    counts = {int(arr.shape[0]) for arr in feeds.values()}
    if len(counts) != 1:
        raise InvalidInput(
            f"inputs have different numbers of rows: {sorted(counts)}.",
            field=field,
            hint="Send the same number of rows for every input.",
        )
    return counts.pop()


def _missing(feeds: dict[str, Array], runtime: ModelRuntime, field: str) -> None:
    if len(feeds) != len(runtime.inputs):
        absent = [s.name for s in runtime.inputs if s.name not in feeds]
        raise InvalidInput(
            f"missing input(s) {absent}; the model takes {[s.name for s in runtime.inputs]}.",
            field=field,
        )


def _unknown(name: Any, runtime: ModelRuntime, field: str) -> InvalidInput:
    return InvalidInput(
        f"unknown input {name!r}; model {runtime.name!r} takes {list(runtime.inputs_by_name)}.",
        field=field,
        value=name,
    )


def _oip_input(
    i: int, item: Any, runtime: ModelRuntime, binary: memoryview, offset: int
) -> tuple[str, Array, int]:
    where = f"inputs[{i}]"
    if not isinstance(item, dict):
        raise InvalidInput(f"`{where}` must be an object.", field=where)
    name = item.get("name")
    spec = runtime.inputs_by_name.get(name) if isinstance(name, str) else None
    if spec is None:
        raise _unknown(name, runtime, f"{where}.name")
    if item.get("datatype") != spec.datatype:
        raise InvalidInput(
            f"`{where}.datatype` is {item.get('datatype')!r} but input {name!r} is {spec.datatype}.",
            field=f"{where}.datatype",
            value=item.get("datatype"),
        )
    raw_shape = item.get("shape")
    if not isinstance(raw_shape, list) or not all(
        type(d) is int and d >= 0 for d in raw_shape
    ):  # bool is an int subclass: refuse it too
        raise InvalidInput(
            f"`{where}.shape` must be a list of non-negative integers; got {raw_shape!r}.",
            field=f"{where}.shape",
        )
    shape = tuple(raw_shape)
    _check_shape(shape, spec, f"{where}.shape")
    count = math.prod(shape)
    params = item.get("parameters")
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        expected = count * spec.dtype.itemsize
        if type(size) is not int or size != expected or offset + size > len(binary):
            raise InvalidInput(
                f"`{where}.parameters.binary_data_size` is {size!r}; shape {list(shape)} of "
                f"{spec.datatype} needs {expected} bytes ({len(binary) - offset} left in the body).",
                field=f"{where}.parameters.binary_data_size",
            )
        arr = np.frombuffer(binary, dtype=spec.dtype, count=count, offset=offset).reshape(shape)
        offset += size
    else:
        arr = _to_array(item.get("data"), spec, f"{where}.data")
        if arr.size != count:
            raise InvalidInput(
                f"`{where}.data` has {arr.size} values but shape {list(shape)} needs {count}.",
                field=f"{where}.data",
            )
        arr = arr.reshape(shape)
    _check_values(arr, spec, f"{where}.data")
    return spec.name, arr, offset


def _requested_outputs(doc: dict[str, Any], runtime: ModelRuntime) -> list[tuple[str, bool]] | None:
    params = doc.get("parameters")
    binary_default = isinstance(params, dict) and params.get("binary_data_output") is True
    requested = doc.get("outputs")
    if requested is None:
        return [(n, True) for n in runtime.output_names] if binary_default else None
    if not isinstance(requested, list):
        raise InvalidInput("`outputs` must be a list of objects.", field="outputs")
    out: list[tuple[str, bool]] = []
    for i, item in enumerate(requested):
        name = item.get("name") if isinstance(item, dict) else None
        if name not in runtime.output_names:
            raise InvalidInput(
                f"unknown output {name!r}; model {runtime.name!r} returns {runtime.output_names}.",
                field=f"outputs[{i}].name",
                value=name,
            )
        item_params = item.get("parameters")
        binary = binary_default
        if isinstance(item_params, dict) and "binary_data" in item_params:
            binary = item_params["binary_data"] is True
        out.append((name, binary))
    return out


def parse_infer(body: bytes, runtime: ModelRuntime, *, header_length: str | None) -> InferRequest:
    """Parse and validate an Open Inference Protocol (KServe V2) infer request.

    Parameters
    ----------
    body : bytes
        The request body: JSON, or JSON followed by raw tensors (binary tensor extension).
    runtime : ModelRuntime
        The version whose signature the request must match.
    header_length : str or None
        The ``Inference-Header-Content-Length`` header: length of the JSON part.

    Returns
    -------
    InferRequest
        The validated arrays.

    Raises
    ------
    MalformedBody
        When the body is not JSON (400).
    InvalidInput
        Naming the field that does not match the signature (422).
    """
    binary = memoryview(b"")
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            length = -1
        if not 0 < length <= len(body):
            raise MalformedBody(
                f"Inference-Header-Content-Length is {header_length!r}; the body has "
                f"{len(body)} bytes.",
                field="Inference-Header-Content-Length",
            )
        binary = memoryview(body)[length:]
        body = body[:length]
    doc = _document(body)
    if not isinstance(doc, dict):
        raise MalformedBody("the request body must be a JSON object.", field="body")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput(
            "`inputs` must be a non-empty list of {name, shape, datatype, data}.",
            field="inputs",
        )
    feeds: dict[str, Array] = {}
    offset = 0
    for i, item in enumerate(inputs):
        name, arr, offset = _oip_input(i, item, runtime, binary, offset)
        if name in feeds:
            raise InvalidInput(f"input {name!r} is given twice.", field=f"inputs[{i}].name")
        feeds[name] = arr
    if offset != len(binary):
        raise InvalidInput(
            f"the body has {len(binary) - offset} bytes of binary data no input claims.",
            field="Inference-Header-Content-Length",
        )
    _missing(feeds, runtime, "inputs")
    request_id = doc.get("id")
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > 256):
        raise InvalidInput("`id` must be a string of at most 256 characters.", field="id")
    return InferRequest(
        feeds=feeds,
        rows=_rows(feeds, runtime, "inputs"),
        request_id=request_id,
        outputs=_requested_outputs(doc, runtime),
    )


def _records(instances: list[Any], runtime: ModelRuntime) -> dict[str, Array]:
    known = runtime.inputs_by_name
    for j, record in enumerate(instances):
        if not isinstance(record, dict):
            raise InvalidInput(
                f"`instances[{j}]` must be an object like instances[0].", field=f"instances[{j}]"
            )
        for key in record:
            if key not in known:
                raise _unknown(key, runtime, f"instances[{j}].{key}")
    feeds: dict[str, Array] = {}
    for spec in runtime.inputs:
        column = []
        for j, record in enumerate(instances):
            if spec.name not in record:
                raise InvalidInput(
                    f"`instances[{j}]` lacks input {spec.name!r}.",
                    field=f"instances[{j}].{spec.name}",
                )
            column.append(record[spec.name])
        feeds[spec.name] = _to_array(column, spec, f"instances[*].{spec.name}")
    return feeds


def parse_predict(body: bytes, runtime: ModelRuntime) -> InferRequest:
    """Parse and validate a plain JSON request: ``{"instances": [...]}`` or ``{"inputs": {...}}``.

    ``instances`` is a list of rows: for a one-input model each row is that input's row
    (``[[0.1, ...], ...]``); otherwise each row is a record ``{"<input name>": row, ...}``.
    ``inputs`` maps each input name to its whole batch (columnar).

    Parameters
    ----------
    body : bytes
        The JSON body.
    runtime : ModelRuntime
        The version whose signature the request must match.

    Returns
    -------
    InferRequest
        The validated arrays.

    Raises
    ------
    MalformedBody
        When the body is not JSON (400).
    InvalidInput
        Naming the field that does not match the signature (422).
    """
    doc = _document(body)
    if not isinstance(doc, dict) or ("instances" in doc) == ("inputs" in doc):
        raise MalformedBody(
            'the body must be a JSON object with either "instances" (rows) or "inputs" (columns).',
            field="body",
            hint='For example {"instances": [[0.1, 0.2, ...]]}.',
        )
    if "instances" in doc:
        instances = doc["instances"]
        if not isinstance(instances, list) or not instances:
            raise InvalidInput("`instances` must be a non-empty list of rows.", field="instances")
        if not runtime.batchable:
            raise InvalidInput(
                f"model {runtime.name!r} takes no batch dimension; send `inputs` instead.",
                field="instances",
            )
        if isinstance(instances[0], dict):
            feeds = _records(instances, runtime)
            where = "instances[*].{}"
        elif len(runtime.inputs) == 1:
            spec = runtime.inputs[0]
            feeds = {spec.name: _to_array(instances, spec, "instances")}
            where = "instances"
        else:
            raise InvalidInput(
                f"model {runtime.name!r} has several inputs; send each row as a record "
                f"{{{', '.join(repr(s.name) for s in runtime.inputs)}}}.",
                field="instances[0]",
            )
    else:
        columns = doc["inputs"]
        if not isinstance(columns, dict):
            raise InvalidInput("`inputs` must map each input name to its data.", field="inputs")
        feeds = {}
        for key, data in columns.items():
            found = runtime.inputs_by_name.get(key)
            if found is None:
                raise _unknown(key, runtime, f"inputs.{key}")
            feeds[key] = _to_array(data, found, f"inputs.{key}")
        _missing(feeds, runtime, "inputs")
        where = "inputs.{}"
    for name, arr in feeds.items():
        spec = runtime.inputs_by_name[name]
        field = where.format(name)
        _check_shape(arr.shape, spec, field)
        _check_values(arr, spec, field)
    request_id = doc.get("id")
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > 256):
        raise InvalidInput("`id` must be a string of at most 256 characters.", field="id")
    return InferRequest(feeds=feeds, rows=_rows(feeds, runtime, "instances"), request_id=request_id)


def _datatype(arr: Array) -> str:
    return OIP_DATATYPES.get(arr.dtype.name, "BYTES")


def encode_infer_response(
    runtime: ModelRuntime,
    request_id: str,
    outputs: list[Array],
    requested: list[tuple[str, bool]] | None,
) -> tuple[bytes, int | None]:
    """Encode an Open Inference Protocol infer response.

    Parameters
    ----------
    runtime : ModelRuntime
        The version that answered.
    request_id : str
        The request id echoed back.
    outputs : list of ndarray
        The graph's outputs in signature order.
    requested : list of (name, binary) or None
        Which outputs to return and how; None means all, as JSON.

    Returns
    -------
    (bytes, int or None)
        The body and, when binary tensors follow the JSON, the JSON part's length.
    """
    by_name = dict(zip(runtime.output_names, outputs, strict=True))
    chosen = requested or [(n, False) for n in runtime.output_names]
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, binary in chosen:
        arr = by_name[name]
        entry: dict[str, Any] = {"name": name, "datatype": _datatype(arr), "shape": list(arr.shape)}
        if binary:
            raw = np.ascontiguousarray(arr).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = arr.ravel().tolist()
        entries.append(entry)
    head = dumps(
        {
            "model_name": runtime.name,
            "model_version": runtime.version_text,
            "id": request_id,
            "outputs": entries,
        }
    )
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


def encode_predict_response(runtime: ModelRuntime, request_id: str, outputs: list[Array]) -> bytes:
    """Encode a plain JSON response: ``{"predictions": [...], "model_name", "model_version", "id"}``.

    With one output of one value per row, each prediction is that number; with one output,
    each prediction is the row; with several outputs, each is a record by output name.

    Parameters
    ----------
    runtime : ModelRuntime
        The version that answered.
    request_id : str
        The request id echoed back.
    outputs : list of ndarray
        The graph's outputs in signature order.

    Returns
    -------
    bytes
        The JSON body.
    """
    if len(outputs) == 1:
        out = outputs[0]
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        predictions: Any = out.tolist()
    else:
        columns = [o.tolist() for o in outputs]
        predictions = [
            dict(zip(runtime.output_names, row, strict=True)) for row in zip(*columns, strict=True)
        ]
    return dumps(
        {
            "predictions": predictions,
            "model_name": runtime.name,
            "model_version": runtime.version_text,
            "id": request_id,
        }
    )
