"""Decoding the payload log's bodies at the monitor: good bodies decode, bad ones name the field."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from fedloop.core import MalformedBody
from fedloop.monitoring import parse_ingest_body


def _tensor(arr: np.ndarray) -> dict[str, Any]:
    arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    return {
        "dtype": arr.dtype.name,
        "shape": list(arr.shape),
        "b64": base64.b64encode(arr.tobytes()).decode(),
    }


def _body(**overrides: Any) -> dict[str, Any]:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    batch = {
        "model": "fraud",
        "version": 2,
        "role": "primary",
        "request_ids": ["a", "b"],
        "times": [10.0, 11.0],
        "rows": [1, 2],
        "features": {"x": _tensor(x)},
        "prediction": {"p": _tensor(np.array([[0.1], [0.2], [0.3]], dtype=np.float32))},
    }
    batch.update(overrides)
    return {
        "predictions": [batch],
        "feedback": [
            {"kind": "feedback", "request_id": "a", "label": 1, "time": 12.0, "model": "fraud"}
        ],
    }


def test_a_payload_log_body_decodes() -> None:
    """Tensors, ids, per-row times and labels come back as sent."""
    # Act
    body = parse_ingest_body(json.dumps(_body()).encode())

    # Assert
    (batch,) = body.predictions
    np.testing.assert_array_equal(
        batch.features["x"], np.arange(12, dtype=np.float32).reshape(3, 4)
    )
    assert (batch.model, batch.version, batch.request_ids) == ("fraud", 2, ("a", "b"))
    np.testing.assert_array_equal(batch.row_times, [10.0, 11.0, 11.0])
    assert body.labels.request_ids == ("a",)
    assert body.labels.labels.tolist() == [1.0]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(b"{not json", "body", id="not-json"),
        pytest.param(json.dumps({"predictions": 3}).encode(), "predictions", id="wrong-type"),
        pytest.param(json.dumps(_body(version=0)).encode(), "predictions.0.version", id="version"),
        pytest.param(json.dumps(_body(role="boss")).encode(), "predictions.0.role", id="role"),
        pytest.param(
            json.dumps(_body(rows=[1, 1])).encode(), "predictions[0].features.x", id="rows-sum"
        ),
        pytest.param(json.dumps(_body(times=[1.0])).encode(), "predictions[0].rows", id="lengths"),
        pytest.param(
            json.dumps(
                _body(features={"x": {"dtype": "object", "shape": [3], "b64": ""}})
            ).encode(),
            "predictions[0].features.x.dtype",
            id="dtype",
        ),
        pytest.param(
            json.dumps(
                _body(features={"x": {"dtype": "float32", "shape": [3, 4], "b64": "%%%"}})
            ).encode(),
            "predictions[0].features.x.b64",
            id="base64",
        ),
        pytest.param(
            json.dumps(
                _body(
                    features={
                        "x": {
                            "dtype": "float32",
                            "shape": [3, 5],
                            "b64": _tensor(np.zeros((3, 4), np.float32))["b64"],
                        }
                    }
                )
            ).encode(),
            "predictions[0].features.x.b64",
            id="byte-count",
        ),
    ],
)
def test_bad_bodies_are_refused_naming_the_field(body: bytes, field: str) -> None:
    """Each malformed body raises MalformedBody with the offending field."""
    # Act
    with pytest.raises(MalformedBody) as info:
        parse_ingest_body(body)

    # Assert
    assert info.value.field == field
