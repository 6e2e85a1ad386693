"""Abusive requests to a real coordinator on loopback: each is refused and logged with its reason."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator

import httpx
import pytest

from _http_federation import PARAMS, Harness, raw_client, wait_task
from fedloop.core import encode_parameters

_LOGGER = "fedloop.federated.transports"


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()
    assert not h.errors, h.errors


@pytest.fixture
def refusals(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger=_LOGGER)
    return caplog


def _refusal(caplog: pytest.LogCaptureFixture, status: int) -> logging.LogRecord:
    """Return the one refusal logged with ``status``, checking where and how it was logged."""
    found = [
        r
        for r in caplog.records
        if r.name.startswith(_LOGGER) and getattr(r, "status", None) == status
    ]
    assert len(found) == 1, [r.getMessage() for r in caplog.records]
    assert found[0].levelno == logging.WARNING
    return found[0]


def _upload_and_commit(raw: httpx.Client, upload_id: str) -> httpx.Response:
    data = encode_parameters(PARAMS)
    put = raw.put(f"/v1/result/1/{upload_id}", params={"chunk": 0, "of": 1}, content=data)
    assert put.status_code == 200
    return raw.post(f"/v1/result/1/{upload_id}/commit", json={"num_examples": 4})


def test_replayed_commit_is_refused_and_logged(
    harness: Harness, refusals: pytest.LogCaptureFixture
) -> None:
    """Committing an upload a second time is a replay: 409, logged with client, round, reason."""
    # Arrange
    transport = harness.serve()
    with raw_client(transport, "c0") as c0:
        c0.get("/v1/task")
        pending = harness.fit_later(transport, ["c0", "c1"], timeout_s=1.5)
        wait_task(c0)
        first = _upload_and_commit(c0, "u")

        # Act
        replay = c0.post("/v1/result/1/u/commit", json={"num_examples": 4})
    pending.result(timeout=20)

    # Assert
    assert first.status_code == 200
    assert replay.status_code == 409
    error = replay.json()["error"]
    assert "replayed commit" in error["message"]
    assert error["field"] == "upload_id"
    record = _refusal(refusals, 409)
    assert (record.client_id, record.round_num) == ("c0", 1)
    assert "replayed commit" in record.reason
    assert "from client c0, round 1" in record.getMessage()


def test_replay_after_the_round_closed_is_still_named_a_replay(
    harness: Harness, refusals: pytest.LogCaptureFixture
) -> None:
    """A commit replayed once its round has closed is refused as a replay, not a late result."""
    # Arrange
    transport = harness.serve()
    with raw_client(transport, "c0") as c0:
        c0.get("/v1/task")
        pending = harness.fit_later(transport, ["c0"], timeout_s=10)
        wait_task(c0)
        _upload_and_commit(c0, "u")
        (outcome,) = pending.result(timeout=20)

        # Act
        replay = c0.post("/v1/result/1/u/commit", json={"num_examples": 4})

    # Assert
    assert outcome.result is not None
    assert replay.status_code == 409
    assert "replayed commit" in _refusal(refusals, 409).reason


def test_second_result_for_a_round_is_refused_and_logged(
    harness: Harness, refusals: pytest.LogCaptureFixture
) -> None:
    """A second upload after a committed result is a duplicate update: 409, logged."""
    # Arrange
    transport = harness.serve()
    with raw_client(transport, "c0") as c0:
        c0.get("/v1/task")
        pending = harness.fit_later(transport, ["c0", "c1"], timeout_s=1.5)
        wait_task(c0)
        _upload_and_commit(c0, "u")

        # Act
        duplicate = c0.put("/v1/result/1/v", params={"chunk": 0, "of": 1}, content=b"x")
    (outcome, _) = pending.result(timeout=20)

    # Assert
    assert duplicate.status_code == 409
    assert "duplicate result" in duplicate.json()["error"]["message"]
    record = _refusal(refusals, 409)
    assert (record.client_id, record.round_num) == ("c0", 1)
    assert "duplicate result" in record.reason
    assert outcome.result is not None


def test_result_for_a_wrong_round_is_refused_and_logged(
    harness: Harness, refusals: pytest.LogCaptureFixture
) -> None:
    """A result for a round that is not open: 409 naming the open round, logged with the round sent."""
    # Arrange
    transport = harness.serve()
    with raw_client(transport, "c0") as c0:
        c0.get("/v1/task")
        pending = harness.fit_later(transport, ["c0"], timeout_s=1.0)
        wait_task(c0)

        # Act
        wrong = c0.put("/v1/result/7/u", params={"chunk": 0, "of": 1}, content=b"x")
    pending.result(timeout=20)

    # Assert
    assert wrong.status_code == 409
    assert "round 7 is not open" in wrong.json()["error"]["message"]
    record = _refusal(refusals, 409)
    assert (record.client_id, record.round_num) == ("c0", 7)
    assert "open round: 1" in record.reason


def test_result_from_a_client_not_selected_is_refused_and_logged(
    harness: Harness, refusals: pytest.LogCaptureFixture
) -> None:
    """An enrolled client that was not selected may not submit: 409, logged with its id."""
    # Arrange
    transport = harness.serve()
    with raw_client(transport, "c0") as c0, raw_client(transport, "c1") as c1:
        c0.get("/v1/task")
        pending = harness.fit_later(transport, ["c0"], timeout_s=1.0)
        wait_task(c0)

        # Act
        intruder = c1.post("/v1/result/1/u/commit", json={"num_examples": 4})
    (outcome,) = pending.result(timeout=20)

    # Assert
    assert intruder.status_code == 409
    assert "not selected for round 1" in intruder.json()["error"]["message"]
    record = _refusal(refusals, 409)
    assert (record.client_id, record.round_num) == ("c1", 1)
    assert "not selected" in record.reason
    assert outcome.client_id == "c0"


def test_oversized_payload_is_refused_with_413_and_logged(
    harness: Harness, refusals: pytest.LogCaptureFixture
) -> None:
    """A chunk over the limit: 413 before it is buffered, logged with client, round and limit."""
    # Arrange
    transport = harness.serve(chunk_bytes=1024)
    with raw_client(transport, "c0") as c0:
        c0.get("/v1/task")
        pending = harness.fit_later(transport, ["c0"], timeout_s=1.0)
        wait_task(c0)

        # Act
        response = c0.put("/v1/result/1/u", params={"chunk": 0, "of": 1}, content=b"x" * 5000)
    pending.result(timeout=20)

    # Assert
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    record = _refusal(refusals, 413)
    assert (record.client_id, record.round_num, record.code) == ("c0", 1, "payload_too_large")
    assert "1024 bytes" in record.reason


@pytest.mark.parametrize(
    ("headers", "digest"),
    [
        pytest.param(
            {"Authorization": "Bearer stolen-or-guessed-token-123"},
            hashlib.sha256(b"stolen-or-guessed-token-123").hexdigest()[:12],
            id="unknown",
        ),
        pytest.param({}, None, id="missing"),
    ],
)
def test_unknown_token_is_refused_with_401_and_logged_without_the_token(
    harness: Harness,
    refusals: pytest.LogCaptureFixture,
    headers: dict[str, str],
    digest: str | None,
) -> None:
    """401; the log names the peer, the round and a sha256 prefix of the token, never the token."""
    # Arrange
    transport = harness.serve()

    # Act
    with httpx.Client(base_url=transport.url, headers=headers) as raw:
        response = raw.post("/v1/result/3/u/commit", json={"num_examples": 1})

    # Assert
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    record = _refusal(refusals, 401)
    assert (record.client_id, record.round_num, record.token_sha256) == (None, 3, digest)
    assert f"token sha256 {digest or 'none'}" in record.getMessage()
    assert "stolen-or-guessed" not in refusals.text
