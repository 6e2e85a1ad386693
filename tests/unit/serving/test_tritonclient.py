"""A third-party Open Inference Protocol client (tritonclient[http]) against the server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from _serving import MODEL, reference

httpclient = pytest.importorskip("tritonclient.http", reason='pip install -e ".[dev]"')

ROWS = np.random.default_rng(11).normal(size=(5, 4)).astype(np.float32)
JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture
def triton(serve: Callable[..., Any]) -> Any:
    """Return a tritonclient connected to a fresh server."""
    live = serve()
    client = httpclient.InferenceServerClient(url=live.url.removeprefix("http://"))
    yield client
    client.close()


def test_health_and_metadata(triton: Any) -> None:
    """Tritonclient sees a live, ready server and the model's signature."""
    # Act
    meta = triton.get_model_metadata(MODEL)

    # Assert
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.is_model_ready(MODEL)
    assert meta["inputs"][0] == {"name": "features", "datatype": "FP32", "shape": [-1, 4]}


@pytest.mark.parametrize(
    "binary", [pytest.param(False, id="json"), pytest.param(True, id="binary")]
)
def test_infer(triton: Any, binary: bool) -> None:
    """Inference with JSON or binary tensors in both directions matches the graph."""
    # Arrange
    features = httpclient.InferInput("features", list(ROWS.shape), "FP32")
    features.set_data_from_numpy(ROWS, binary_data=binary)
    wanted = httpclient.InferRequestedOutput("probability", binary_data=binary)

    # Act
    result = triton.infer(
        MODEL,
        [features],
        outputs=[wanted],
        request_id="req-7",
        headers=None if binary else JSON_HEADERS,
    )

    # Assert
    np.testing.assert_allclose(result.as_numpy("probability"), reference(1, ROWS), rtol=1e-5)
    assert result.get_response()["id"] == "req-7"


def test_infer_with_version_and_default_outputs(triton: Any) -> None:
    """A request for version 1 without requested outputs gets every output."""
    # Arrange
    features = httpclient.InferInput("features", list(ROWS.shape), "FP32")
    features.set_data_from_numpy(ROWS, binary_data=True)

    # Act
    result = triton.infer(MODEL, [features], model_version="1")

    # Assert
    np.testing.assert_allclose(result.as_numpy("probability"), reference(1, ROWS), rtol=1e-5)


def test_bad_input_is_an_error_not_a_crash(triton: Any) -> None:
    """A shape that does not fit the signature raises the client's exception with the field."""
    # Arrange
    rows = np.zeros((2, 3), dtype=np.float32)
    features = httpclient.InferInput("features", list(rows.shape), "FP32")
    features.set_data_from_numpy(rows, binary_data=True)

    # Act / Assert
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match=r"inputs\[0\]\.shape"):
        triton.infer(MODEL, [features])
    assert triton.is_server_ready()
