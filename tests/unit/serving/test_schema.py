"""Request parsing and validation against the signature; response encoding."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _serving import MODEL, oip_body

from fedloop.core import InvalidInput, MalformedBody
from fedloop.registry import ModelRegistry
from fedloop.serving import ModelRuntime, load_runtime
from fedloop.serving.schema import (
    encode_infer_response,
    encode_predict_response,
    parse_infer,
    parse_predict,
)

ROWS = np.arange(8, dtype=np.float32).reshape(2, 4)


@pytest.fixture
def runtime(registry: ModelRegistry) -> ModelRuntime:
    """Return version 1 loaded."""
    return load_runtime(registry, registry.get(f"{MODEL}:1"))


def _binary(rows: np.ndarray) -> tuple[bytes, str]:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "features",
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": rows.nbytes},
                }
            ],
            "outputs": [{"name": "probability", "parameters": {"binary_data": True}}],
        }
    ).encode()
    return head + rows.tobytes(), str(len(head))


def test_parse_json(runtime: ModelRuntime) -> None:
    """An OIP JSON body becomes float32 arrays of the declared shape."""
    # Act
    parsed = parse_infer(json.dumps(oip_body(ROWS, id="x")).encode(), runtime, header_length=None)

    # Assert
    assert parsed.rows == 2
    assert parsed.request_id == "x"
    assert parsed.feeds["features"].dtype == np.float32
    np.testing.assert_array_equal(parsed.feeds["features"], ROWS)


def test_parse_binary(runtime: ModelRuntime) -> None:
    """The binary extension reads raw tensors after the JSON header."""
    # Arrange
    body, length = _binary(ROWS)

    # Act
    parsed = parse_infer(body, runtime, header_length=length)

    # Assert
    np.testing.assert_array_equal(parsed.feeds["features"], ROWS)
    assert parsed.outputs == [("probability", True)]


@pytest.mark.parametrize(
    ("cut", "header", "field"),
    [
        pytest.param(4, None, "inputs[0].parameters.binary_data_size", id="short-data"),
        pytest.param(0, "99999", "Inference-Header-Content-Length", id="header-too-long"),
        pytest.param(0, "abc", "Inference-Header-Content-Length", id="header-not-int"),
    ],
)
def test_bad_binary_names_the_field(
    runtime: ModelRuntime, cut: int, header: str | None, field: str
) -> None:
    """Truncated tensors and wrong header lengths are refused, naming the field."""
    # Arrange
    body, length = _binary(ROWS)

    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        parse_infer(body[: len(body) - cut], runtime, header_length=header or length)
    assert info.value.field == field


def test_extra_binary_bytes_are_refused(runtime: ModelRuntime) -> None:
    """Bytes that no input claims are an error, not silently ignored."""
    # Arrange
    body, length = _binary(ROWS)

    # Act / Assert
    with pytest.raises(InvalidInput, match="no input claims"):
        parse_infer(body + b"\0" * 4, runtime, header_length=length)


def test_duplicate_and_missing_inputs(runtime: ModelRuntime) -> None:
    """The same input twice is refused."""
    # Arrange
    item = oip_body(ROWS)["inputs"][0]
    body = json.dumps({"inputs": [item, item]}).encode()

    # Act / Assert
    with pytest.raises(InvalidInput, match="given twice"):
        parse_infer(body, runtime, header_length=None)


def test_not_json_is_malformed(runtime: ModelRuntime) -> None:
    """A body that is not JSON raises MalformedBody (HTTP 400)."""
    # Act / Assert
    with pytest.raises(MalformedBody) as info:
        parse_predict(b"\xff\xfe", runtime)
    assert info.value.http_status == 400


def test_encode_binary_response_round_trips(runtime: ModelRuntime) -> None:
    """Binary outputs follow the JSON header whose length is returned."""
    # Arrange
    out = np.array([[0.25], [0.75]], dtype=np.float32)

    # Act
    body, length = encode_infer_response(runtime, "id-1", [out], [("probability", True)])

    # Assert
    assert length is not None
    head = json.loads(body[:length])
    assert head["outputs"][0]["parameters"] == {"binary_data_size": 8}
    np.testing.assert_array_equal(np.frombuffer(body[length:], dtype=np.float32), out.ravel())


def test_encode_predict_response_flattens_one_column(runtime: ModelRuntime) -> None:
    """One output of one value per row gives one number per prediction."""
    # Act
    body = json.loads(encode_predict_response(runtime, "i", [np.array([[0.5], [0.25]])]))

    # Assert
    assert body["predictions"] == [0.5, 0.25]
    assert (body["model_name"], body["model_version"], body["id"]) == (MODEL, "1", "i")


def test_runtime_metadata(runtime: ModelRuntime) -> None:
    """The runtime precomputes input checks and OIP metadata."""
    # Assert
    assert runtime.batchable
    assert runtime.inputs[0].shape_text() == "[-1, 4]"
    assert runtime.metadata()["platform"] == "onnxruntime_onnx"
