"""The inference server over real HTTP: OIP and plain JSON endpoints, errors, metrics, batching."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from _serving import MODEL, oip_body, reference

from _loopback import metric

ROWS = np.random.default_rng(7).normal(size=(3, 4)).astype(np.float32)


def test_health_and_server_metadata(serve: Callable[..., Any], client: httpx.Client) -> None:
    """Live, ready and /v2 answer 200 once the models are loaded."""
    # Arrange
    live = serve()

    # Act
    answers = [client.get(live.url + p) for p in ("/v2/health/live", "/v2/health/ready", "/v2")]

    # Assert
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[2].json()["extensions"] == ["binary_tensor_data"]


def test_model_metadata_lists_signature(serve: Callable[..., Any], client: httpx.Client) -> None:
    """GET /v2/models/NAME gives the version and the OIP datatypes and shapes."""
    # Arrange
    live = serve()

    # Act
    meta = client.get(f"{live.url}/v2/models/{MODEL}").json()

    # Assert
    assert meta["name"] == MODEL
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"][0]["name"] == "probability"


def test_oip_json_infer_matches_the_graph(serve: Callable[..., Any], client: httpx.Client) -> None:
    """An OIP JSON request returns the champion's predictions, version and request id."""
    # Arrange
    live = serve()

    # Act
    answer = client.post(f"{live.url}/v2/models/{MODEL}/infer", json=oip_body(ROWS, id="r-1"))

    # Assert
    assert answer.status_code == 200
    body = answer.json()
    assert (body["model_version"], body["id"]) == ("1", "r-1")
    out = body["outputs"][0]
    assert out["shape"] == [3, 1]
    assert out["datatype"] == "FP32"
    np.testing.assert_allclose(out["data"], reference(1, ROWS).ravel(), rtol=1e-5)


def test_plain_json_instances_and_records(serve: Callable[..., Any], client: httpx.Client) -> None:
    """/v1/models/NAME:predict takes rows, records or columns and returns one number per row."""
    # Arrange
    live = serve()
    url = f"{live.url}/v1/models/{MODEL}:predict"
    bodies = [
        {"instances": ROWS.tolist()},
        {"instances": [{"features": row} for row in ROWS.tolist()]},
        {"inputs": {"features": ROWS.tolist()}},
    ]

    # Act
    answers = [client.post(url, json=b) for b in bodies]

    # Assert
    expected = reference(1, ROWS).ravel()
    for answer in answers:
        assert answer.status_code == 200, answer.text
        np.testing.assert_allclose(answer.json()["predictions"], expected, rtol=1e-5)
        assert answer.headers["x-request-id"] == answer.json()["id"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        pytest.param(b"{not json", 400, "body", id="not-json"),
        pytest.param(b"[1, 2]", 400, "body", id="not-object"),
        pytest.param({"inputs": []}, 422, "inputs", id="no-inputs"),
        pytest.param(
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}]},
            422,
            "inputs[0].name",
            id="unknown-name",
        ),
        pytest.param(
            {
                "inputs": [
                    {"name": "features", "shape": [1, 4], "datatype": "FP64", "data": [0] * 4}
                ]
            },
            422,
            "inputs[0].datatype",
            id="wrong-dtype",
        ),
        pytest.param(
            {
                "inputs": [
                    {"name": "features", "shape": [1, 5], "datatype": "FP32", "data": [0] * 5}
                ]
            },
            422,
            "inputs[0].shape",
            id="wrong-shape",
        ),
        pytest.param(
            {
                "inputs": [
                    {"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [0] * 3}
                ]
            },
            422,
            "inputs[0].data",
            id="too-few-values",
        ),
        pytest.param(
            {
                "inputs": [
                    {"name": "features", "shape": [1, 4], "datatype": "FP32", "data": ["a"] * 4}
                ]
            },
            422,
            "inputs[0].data",
            id="not-numbers",
        ),
        pytest.param(
            {"inputs": [{"name": "features", "shape": [0, 4], "datatype": "FP32", "data": []}]},
            422,
            "inputs[0].shape",
            id="no-rows",
        ),
        pytest.param(
            {"inputs": [{"name": "features", "shape": [-1, 4], "datatype": "FP32", "data": []}]},
            422,
            "inputs[0].shape",
            id="negative-dim",
        ),
        pytest.param(
            {
                "inputs": [
                    {"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [0] * 4}
                ],
                "outputs": [{"name": "nope"}],
            },
            422,
            "outputs[0].name",
            id="unknown-output",
        ),
    ],
)
def test_bad_oip_requests_name_the_field(
    serve: Callable[..., Any], client: httpx.Client, body: Any, status: int, field: str
) -> None:
    """Malformed bodies are 400, signature mismatches 422, each naming the field."""
    # Arrange
    live = serve()
    content = body if isinstance(body, bytes) else json.dumps(body).encode()

    # Act
    answer = client.post(f"{live.url}/v2/models/{MODEL}/infer", content=content)

    # Assert
    assert answer.status_code == status
    assert answer.json()["detail"]["field"] == field
    assert isinstance(answer.json()["error"], str)


@pytest.mark.parametrize(
    ("value", "statuses"),
    [
        pytest.param(b"null", {422}, id="null"),
        pytest.param(b"NaN", {400, 422}, id="NaN"),  # not JSON: 400 with orjson, 422 with json
        pytest.param(b"1e999", {400, 422}, id="overflow"),
    ],
)
def test_non_finite_values_are_refused(
    serve: Callable[..., Any], client: httpx.Client, value: bytes, statuses: set[int]
) -> None:
    """Missing or non-finite values are refused (422 naming the data field), never run."""
    # Arrange
    live = serve()
    body = b'{"inputs":[{"name":"features","shape":[1,4],"datatype":"FP32","data":[1,%s,0,2]}]}'

    # Act
    answer = client.post(f"{live.url}/v2/models/{MODEL}/infer", content=body % value)

    # Assert
    assert answer.status_code in statuses
    if answer.status_code == 422:
        assert answer.json()["detail"]["field"] == "inputs[0].data"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"instances": [[1, 2, 3]]}, "instances", id="short-row"),
        pytest.param({"instances": [[1, 2, 3, 4], [1, 2]]}, "instances", id="ragged"),
        pytest.param(
            {"instances": [{"feature": [1, 2, 3, 4]}]}, "instances[0].feature", id="bad-key"
        ),
        pytest.param(
            {"inputs": {"features": [[1, 2, 3, None]]}}, "inputs.features", id="null-value"
        ),
        pytest.param({"instances": []}, "instances", id="empty"),
        pytest.param({"rows": [[1, 2, 3, 4]]}, "body", id="neither"),
    ],
)
def test_bad_plain_requests_name_the_field(
    serve: Callable[..., Any], client: httpx.Client, body: Any, field: str
) -> None:
    """The plain endpoint refuses bad rows with 400/422 naming the field, never 500."""
    # Arrange
    live = serve()

    # Act
    answer = client.post(f"{live.url}/v1/models/{MODEL}:predict", content=json.dumps(body))

    # Assert
    assert answer.status_code in (400, 422)
    assert answer.json()["error"]["field"] == field


def test_unknown_model_and_version_are_404(serve: Callable[..., Any], client: httpx.Client) -> None:
    """Unknown models, versions and endpoints are 404 with the error body."""
    # Arrange
    live = serve()

    # Act
    answers = [
        client.post(f"{live.url}/v2/models/nope/infer", json=oip_body(ROWS)),
        client.post(f"{live.url}/v2/models/{MODEL}/versions/9/infer", json=oip_body(ROWS)),
        client.get(f"{live.url}/v2/models/nope/ready"),
        client.post(f"{live.url}/v1/models/{MODEL}:explain", json={"instances": []}),
    ]

    # Assert
    assert [a.status_code for a in answers] == [404, 404, 404, 404]
    assert answers[0].json()["detail"]["code"] == "not_found"
    text = client.get(f"{live.url}/metrics").text
    assert 'model="nope"' not in text  # a caller's typo never becomes a label value
    assert metric(text, "fedloop_serving_errors_total", model="_unknown", code="not_found") == 1
    assert answers[3].json()["error"]["code"] == "not_found"


def test_oversized_body_is_413(serve: Callable[..., Any], client: httpx.Client) -> None:
    """A body over serving.max_body_bytes is refused with 413 and the server keeps serving."""
    # Arrange
    live = serve(max_body_bytes=2048)
    big = np.zeros((200, 4), dtype=np.float32)

    # Act
    refused = client.post(f"{live.url}/v2/models/{MODEL}/infer", json=oip_body(big))
    after = client.post(f"{live.url}/v2/models/{MODEL}/infer", json=oip_body(ROWS))

    # Assert
    assert refused.status_code == 413
    assert refused.json()["detail"]["code"] == "body_too_large"
    assert after.status_code == 200


def test_fuzzed_bodies_never_give_500(serve: Callable[..., Any], client: httpx.Client) -> None:
    """Random JSON shapes get 4xx answers, never a 500 or a dropped connection."""
    # Arrange
    live = serve()
    rng = np.random.default_rng(0)
    values: list[Any] = [None, True, 1, -1, 1.5, "x", [], {}, [1, 2], {"a": 1}, [[1]], 10**30]
    keys = ["inputs", "name", "shape", "datatype", "data", "parameters", "outputs", "id"]

    def pick() -> Any:
        return values[rng.integers(len(values))]

    # Act
    statuses = set()
    for _ in range(150):
        item = {k: pick() for k in keys if rng.random() < 0.7}
        item.setdefault("name", "features")
        body = {"inputs": [item], "id": pick()} if rng.random() < 0.8 else pick()
        statuses.add(client.post(f"{live.url}/v2/models/{MODEL}/infer", json=body).status_code)

    # Assert
    assert statuses <= {200, 400, 422}


def test_metrics_count_requests_and_errors(serve: Callable[..., Any], client: httpx.Client) -> None:
    """/metrics shows requests by version and status, latency and error codes."""
    # Arrange
    live = serve()
    for _ in range(3):
        client.post(f"{live.url}/v2/models/{MODEL}/infer", json=oip_body(ROWS))
    client.post(f"{live.url}/v2/models/{MODEL}/infer", content=b"{")

    # Act
    text = client.get(f"{live.url}/metrics").text

    # Assert
    ok = metric(text, "fedloop_serving_requests_total", model=MODEL, version="1", status="200")
    assert ok == 3
    assert metric(text, "fedloop_serving_errors_total", code="malformed_body") == 1
    assert metric(text, "fedloop_serving_request_duration_seconds_count", version="1") == 3
    assert metric(text, "fedloop_serving_model_loaded", version="1", role="primary") == 1


def _hammer(url: str, body: dict[str, Any], *, threads: int, each: int) -> list[int]:
    statuses: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        with httpx.Client(timeout=30) as http:
            for _ in range(each):
                status = http.post(url, json=body).status_code
                with lock:
                    statuses.append(status)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return statuses


def test_concurrent_requests_are_batched(serve: Callable[..., Any], client: httpx.Client) -> None:
    """Under concurrent load several requests share one onnxruntime call."""
    # Arrange
    live = serve(batching={"enabled": True, "max_batch_size": 64, "max_wait_ms": 5})
    url = f"{live.url}/v2/models/{MODEL}/infer"

    # Act
    statuses = _hammer(url, oip_body(ROWS[:1]), threads=16, each=25)
    text = client.get(f"{live.url}/metrics").text

    # Assert
    assert statuses == [200] * 400
    calls = metric(text, "fedloop_serving_batch_requests_count", version="1")
    requests = metric(text, "fedloop_serving_batch_requests_sum", version="1")
    assert requests == 400
    assert calls < requests  # at least one call served more than one request
    assert metric(text, "fedloop_serving_batch_requests_bucket", version="1", le="1.0") < calls


def test_batching_can_be_switched_off(serve: Callable[..., Any], client: httpx.Client) -> None:
    """With batching off every request is its own onnxruntime call."""
    # Arrange
    live = serve(batching={"enabled": False})
    url = f"{live.url}/v2/models/{MODEL}/infer"

    # Act
    statuses = _hammer(url, oip_body(ROWS[:1]), threads=8, each=10)
    text = client.get(f"{live.url}/metrics").text

    # Assert
    assert statuses == [200] * 80
    assert metric(text, "fedloop_serving_batch_requests_count", version="1") == 80
    assert metric(text, "fedloop_serving_batch_requests_sum", version="1") == 80


def test_large_requests_run_in_threads(serve: Callable[..., Any], client: httpx.Client) -> None:
    """A 1,000-row request is answered in full and in order."""
    # Arrange
    live = serve()
    rows = np.random.default_rng(3).normal(size=(1000, 4)).astype(np.float32)

    # Act
    answer = client.post(f"{live.url}/v1/models/{MODEL}:predict", json={"instances": rows.tolist()})

    # Assert
    assert answer.status_code == 200
    np.testing.assert_allclose(answer.json()["predictions"], reference(1, rows).ravel(), rtol=1e-5)


def test_access_log_is_one_json_line_per_request(
    serve: Callable[..., Any], client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    """With access_log on, each request logs method, path, status, version, rows and error code."""
    # Arrange
    live = serve(access_log=True)
    caplog.set_level("INFO", logger="fedloop.serving.access")

    # Act
    client.post(f"{live.url}/v2/models/{MODEL}/infer", json=oip_body(ROWS, id="a-1"))
    client.post(f"{live.url}/v2/models/{MODEL}/infer", content=b"{")

    # Assert
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name.endswith("access")]
    ok, bad = lines
    assert (ok["status"], ok["version"], ok["rows"], ok["request_id"]) == (200, "1", 3, "a-1")
    assert (bad["status"], bad["error"], bad["field"]) == (400, "malformed_body", "body")


def test_dead_workers_live_gauges_are_reaped(tmp_path: Path) -> None:
    """A worker that died leaves counters but its live gauges are dropped; a live one's stay."""
    # Arrange: a "worker" process writes a live gauge and a counter, then exits
    import shutil
    import subprocess
    import sys

    from fedloop.serving.metrics import reap_dead_workers

    code = (
        "from prometheus_client import Counter, Gauge\n"
        "Gauge('q', 'q', multiprocess_mode='livesum').set(3)\n"
        "Counter('c', 'c').inc()\n"
        "import os; print(os.getpid())\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    dead_pid = int(out.stdout)
    (gauge,) = tmp_path.glob(f"gauge_livesum_{dead_pid}.db")
    shutil.copy(gauge, tmp_path / f"gauge_livesum_{os.getpid()}.db")

    # Act
    reaped = reap_dead_workers(str(tmp_path))

    # Assert
    assert reaped == [dead_pid]
    assert not gauge.exists()
    assert (tmp_path / f"gauge_livesum_{os.getpid()}.db").exists()
    assert list(tmp_path.glob(f"counter_{dead_pid}.db"))
