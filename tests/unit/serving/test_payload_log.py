"""The payload log and the feedback endpoint: records reach the monitor; a dead monitor costs nothing."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
from _serving import MODEL, oip_body, reference

from _loopback import Receiver, metric, tensor
from fedloop.serving import PayloadLog, ServingMetrics

ROWS = np.random.default_rng(5).normal(size=(2, 4)).astype(np.float32)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_predictions_reach_the_monitor(
    serve: Callable[..., Any], client: httpx.Client, receiver: Receiver
) -> None:
    """Each answered request becomes one record: id, time, version, features, prediction."""
    # Arrange
    live = serve(payload_log={"url": receiver.url})

    # Act
    ids = [
        client.post(f"{live.url}/v2/models/{MODEL}/infer", json=oip_body(ROWS, id=f"r{i}")).json()[
            "id"
        ]
        for i in range(5)
    ]
    records = receiver.wait_for(lambda r: len(r) >= 5)

    # Assert
    assert sorted(r["request_id"] for r in records) == sorted(ids)
    first = records[0]
    assert (first["kind"], first["model"], first["version"], first["role"]) == (
        "prediction",
        MODEL,
        1,
        "primary",
    )
    np.testing.assert_allclose(first["features"]["features"], ROWS, rtol=1e-6)
    np.testing.assert_allclose(first["prediction"]["probability"], reference(1, ROWS), rtol=1e-5)
    assert abs(first["time"] - time.time()) < 60


def test_sampling_keeps_a_fraction(
    serve: Callable[..., Any], client: httpx.Client, receiver: Receiver
) -> None:
    """fraction_sampled = 0 logs nothing while every request still succeeds."""
    # Arrange
    live = serve(payload_log={"url": receiver.url, "fraction_sampled": 0.0})

    # Act
    statuses = [
        client.post(f"{live.url}/v2/models/{MODEL}/infer", json=oip_body(ROWS)).status_code
        for _ in range(10)
    ]
    time.sleep(0.5)

    # Assert
    assert statuses == [200] * 10
    assert receiver.records == []


def test_monitor_down_counts_drops_and_keeps_serving(
    serve: Callable[..., Any], client: httpx.Client
) -> None:
    """With nobody listening at the URL, requests succeed and the drop counter grows."""
    # Arrange
    live = serve(payload_log={"url": f"http://127.0.0.1:{_free_port()}/ingest", "timeout_s": 0.5})

    # Act
    statuses = [
        client.post(f"{live.url}/v2/models/{MODEL}/infer", json=oip_body(ROWS)).status_code
        for _ in range(20)
    ]
    deadline = time.monotonic() + 10
    dropped = 0.0
    while dropped < 20 and time.monotonic() < deadline:
        time.sleep(0.1)
        text = client.get(f"{live.url}/metrics").text
        dropped = metric(text, "fedloop_serving_payload_log_records_total", outcome="dropped")

    # Assert
    assert statuses == [200] * 20
    assert dropped == 20


def test_full_queue_drops_without_blocking() -> None:
    """Offers beyond queue_size are dropped and counted at once."""
    # Arrange
    metrics = ServingMetrics()
    log = PayloadLog("http://127.0.0.1:9/ingest", metrics=metrics, queue_size=2)

    # Act
    kept = [log.offer_feedback({"request_id": str(i), "label": 1}) for i in range(5)]

    # Assert
    assert kept == [True, True, False, False, False]
    assert metrics.payload_records.labels("dropped")._value.get() == 3


def test_no_url_logs_nothing() -> None:
    """Without a URL the log is off: nothing sampled, nothing queued, no thread."""
    # Arrange
    log = PayloadLog(None, metrics=ServingMetrics())

    # Act
    log.start()

    # Assert
    assert not log.enabled
    assert not log.sample()
    assert not log.offer_feedback({"request_id": "r", "label": 1})
    log.close()


def test_feedback_is_forwarded(
    serve: Callable[..., Any], client: httpx.Client, receiver: Receiver
) -> None:
    """Labels posted later by request id reach the monitor as feedback records."""
    # Arrange
    live = serve(payload_log={"url": receiver.url})
    rid = client.post(f"{live.url}/v2/models/{MODEL}/infer", json=oip_body(ROWS)).json()["id"]

    # Act
    one = client.post(f"{live.url}/v1/feedback", json={"request_id": rid, "label": 1})
    many = client.post(
        f"{live.url}/v1/feedback",
        json={"labels": [{"request_id": "a", "label": 0}, {"request_id": "b", "label": "fraud"}]},
    )
    records = receiver.wait_for(lambda r: sum(x["kind"] == "feedback" for x in r) >= 3)

    # Assert
    assert (one.status_code, one.json()) == (202, {"accepted": 1, "dropped": 0})
    assert many.json()["accepted"] == 2
    labels = {r["request_id"]: r["label"] for r in records if r["kind"] == "feedback"}
    assert labels == {rid: 1, "a": 0, "b": "fraud"}


def test_bad_feedback_names_the_field(
    serve: Callable[..., Any], client: httpx.Client, receiver: Receiver
) -> None:
    """A label without a request id, or a non-finite label, is a 422 naming the field."""
    # Arrange
    live = serve(payload_log={"url": receiver.url})

    # Act
    answers = [
        client.post(f"{live.url}/v1/feedback", json={"label": 1}),
        client.post(f"{live.url}/v1/feedback", json={"request_id": "x", "label": {"a": 1}}),
        client.post(f"{live.url}/v1/feedback", json={"labels": [{"request_id": "x", "label": []}]}),
        client.post(f"{live.url}/v1/feedback", content=b"nope"),
    ]

    # Assert
    assert [a.status_code for a in answers] == [422, 422, 422, 400]
    assert [a.json()["error"]["field"] for a in answers] == [
        "body.request_id",
        "body.label",
        "labels[0].label",
        "body",
    ]


def test_feedback_without_monitor_is_409(serve: Callable[..., Any], client: httpx.Client) -> None:
    """Feedback with no payload-log URL configured is refused with a hint."""
    # Arrange
    live = serve()

    # Act
    answer = client.post(f"{live.url}/v1/feedback", json={"request_id": "x", "label": 1})

    # Assert
    assert answer.status_code == 409
    assert answer.json()["error"]["field"] == "serving.payload_log.url"


def test_predictions_are_batched_per_version(receiver: Receiver) -> None:
    """Predictions of one version share one batch whose tensors stack the requests' rows."""
    # Arrange
    log = PayloadLog(receiver.url, metrics=ServingMetrics(), flush_interval_s=0.05)

    def offer(rid: str, n: int, version: int) -> None:
        log.offer_prediction(
            model=MODEL,
            version=version,
            role="primary",
            request_id=rid,
            features={"features": np.full((n, 4), n, dtype=np.float32)},
            prediction={"probability": np.zeros((n, 1), dtype=np.float32)},
        )

    # Act
    offer("a", 1, 1)
    offer("b", 3, 1)
    offer("c", 2, 2)
    log.offer_feedback({"request_id": "a", "label": 1})
    log.start()
    log.close()

    # Assert
    (body,) = receiver.bodies
    first, second = body["predictions"]
    assert (first["request_ids"], first["rows"], second["request_ids"]) == (
        ["a", "b"],
        [1, 3],
        ["c"],
    )
    assert tensor(first["features"]["features"]).shape == (4, 4)
    (label,) = body["feedback"]
    assert (label["kind"], label["request_id"], label["label"]) == ("feedback", "a", 1)
