"""The HTTP transport: rounds over loopback, auth, limits, conflicts, chunking, TLS, data files."""

from __future__ import annotations

import json
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from _http_federation import (
    PARAMS,
    TOKENS,
    AddClient,
    BlockingClient,
    CrashingClient,
    Harness,
    raw_client,
    self_signed,
    wait_task,
)
from fedloop.core import (
    ConfigError,
    Conflict,
    FederatedConfig,
    FederationError,
    InvalidInput,
    MissingExtraError,
    NotFound,
    encode_parameters,
    resolve,
)
from fedloop.federated.coordinator import Coordinator
from fedloop.federated.datafiles import load_table
from fedloop.federated.messages import FitIns
from fedloop.federated.strategies import FedAvg
from fedloop.federated.transports import (
    HttpTransport,
    InProcessTransport,
    generate_tokens,
    read_client_token,
    read_token_file,
    run_http_client,
    write_token_file,
)
from fedloop.federated.transports._auth import TokenTable
from fedloop.store import Workspace, open_workspace


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()
    assert not h.errors, h.errors


@pytest.fixture
def workspace(tmp_path: Path) -> Callable[[str], Workspace]:
    opened: list[Workspace] = []

    def make(name: str) -> Workspace:
        ws = open_workspace(resolve({"project": {"dir": str(tmp_path / name)}}, {}, {}).config)
        opened.append(ws)
        return ws

    yield make
    for ws in opened:
        ws.close()


def _coordinator(ws: Workspace, transport: Any, **cfg: Any) -> Coordinator:
    config = FederatedConfig(**{"num_rounds": 2, "round_timeout_s": 30.0, **cfg})
    return Coordinator(
        transport, FedAvg(), config=config, metadata=ws.metadata, artifacts=ws.artifacts
    )


# -- rounds ------------------------------------------------------------------------------------
def test_http_run_equals_inprocess_run_bit_for_bit(
    harness: Harness, workspace: Callable[[str], Workspace]
) -> None:
    """Two rounds over HTTP give the same weights after every round as in-process."""
    # Arrange
    clients = {f"c{i}": AddClient(float(i + 1), examples=10 * (i + 1)) for i in range(3)}
    transport = harness.serve()
    for client_id, client in clients.items():
        harness.client(transport, client_id, client)
    transport.wait_for_clients(3, timeout_s=10)
    ws_http, ws_local = workspace("http"), workspace("local")

    # Act
    http = _coordinator(ws_http, transport)
    final_http = http.run(http.start(ws_http.project.id, PARAMS))
    local = _coordinator(ws_local, InProcessTransport(clients))
    final_local = local.run(local.start(ws_local.project.id, PARAMS))

    # Assert
    for name in PARAMS:
        assert final_http[name].tobytes() == final_local[name].tobytes()
    run_http = ws_http.metadata.search_runs(ws_http.project.id)[0].id
    run_local = ws_local.metadata.search_runs(ws_local.project.id)[0].id
    digests = [
        [r.parameters_digest for r in ws.metadata.list_fl_rounds(run)]
        for ws, run in ((ws_http, run_http), (ws_local, run_local))
    ]
    assert digests[0] == digests[1]
    rows = ws_http.metadata.list_fl_client_rounds(run_http, round_num=2)
    assert {r.status for _, r in rows} == {"ok"}
    assert all(r.bytes_up > 0 and r.bytes_down > 0 for _, r in rows)


def test_chunks_carry_a_bigger_model_with_a_tiny_chunk_size(harness: Harness) -> None:
    """A 200 kB model crosses in 1 KiB chunks both ways, intact."""
    # Arrange
    big = OrderedDict(w=np.linspace(-1, 1, 50_000, dtype=np.float32))
    transport = harness.serve(chunk_bytes=1024)
    harness.client(transport, "c0", AddClient(0.5))
    transport.wait_for_clients(1, timeout_s=10)

    # Act
    (outcome,) = transport.fit(1, {"c0": FitIns(1, big)}, timeout_s=30)

    # Assert
    assert outcome.error is None
    assert outcome.result is not None
    np.testing.assert_array_equal(outcome.result.parameters["w"], big["w"] + np.float32(0.5))
    encoded = len(encode_parameters(big))
    assert outcome.bytes_down == encoded
    assert outcome.bytes_up == encoded
    assert harness.report().status == "submitted"


def test_silent_client_times_out_and_the_round_completes(
    harness: Harness, workspace: Callable[[str], Workspace]
) -> None:
    """A client that never answers is timed out at the deadline; the others are aggregated."""
    # Arrange
    blocker = BlockingClient()
    transport = harness.serve()
    harness.client(transport, "c0", AddClient(1.0))
    harness.client(transport, "c1", AddClient(3.0))
    harness.client(transport, "c2", blocker)
    transport.wait_for_clients(3, timeout_s=10)
    ws = workspace("ws")
    coordinator = _coordinator(ws, transport, num_rounds=1, round_timeout_s=1.5)

    # Act
    started = time.monotonic()
    final = coordinator.run(coordinator.start(ws.project.id, PARAMS))
    elapsed = time.monotonic() - started
    blocker.release.set()

    # Assert
    np.testing.assert_array_equal(final["w"], PARAMS["w"] + 2.0)
    run_id = ws.metadata.search_runs(ws.project.id)[0].id
    rows = {r.client_id: r for _, r in ws.metadata.list_fl_client_rounds(run_id, round_num=1)}
    assert rows["c2"].status == "timeout"
    assert "deadline" in (rows["c2"].reason or "")
    assert rows["c0"].status == rows["c1"].status == "ok"
    assert 1.4 < elapsed < 10


def test_client_that_goes_quiet_is_dropped_before_the_deadline(harness: Harness) -> None:
    """A selected client not heard from for heartbeat_timeout_s is dropped early."""
    # Arrange
    transport = harness.serve(heartbeat_timeout_s=1.0)
    with raw_client(transport, "c0") as raw:
        assert raw.get("/v1/task").status_code == 204

    # Act
    started = time.monotonic()
    (outcome,) = harness.fit_later(transport, ["c0"], timeout_s=30).result(timeout=30)

    # Assert
    assert outcome.timed_out
    assert outcome.result is None
    assert "lost contact" in (outcome.error or "")
    assert time.monotonic() - started < 10
    assert transport.list_clients() == []


def test_training_error_is_reported_as_the_clients_failure(harness: Harness) -> None:
    """A client whose fit raises commits the error; the round records it without waiting."""
    # Arrange
    transport = harness.serve()
    harness.client(transport, "c0", CrashingClient())
    transport.wait_for_clients(1, timeout_s=10)

    # Act
    (outcome,) = transport.fit(1, {"c0": FitIns(1, PARAMS)}, timeout_s=30)

    # Assert
    assert outcome.result is None
    assert not outcome.timed_out
    assert outcome.error == "client error: RuntimeError: disk full"


def test_enough_successes_end_the_round_early(harness: Harness) -> None:
    """With enough=1, the round returns after one result and reports the others as not needed."""
    # Arrange
    blocker = BlockingClient()
    transport = harness.serve()
    harness.client(transport, "c0", AddClient(1.0))
    harness.client(transport, "c1", blocker)
    transport.wait_for_clients(2, timeout_s=10)
    ins = {c: FitIns(1, PARAMS) for c in ("c0", "c1")}

    # Act
    outcomes = {o.client_id: o for o in transport.fit(1, ins, timeout_s=30, enough=1)}
    blocker.release.set()

    # Assert
    assert outcomes["c0"].result is not None
    assert outcomes["c1"].timed_out
    assert "not needed" in (outcomes["c1"].error or "")


# -- authentication ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Bearer not-a-token-of-anyone"}, id="unknown"),
        pytest.param({"Authorization": "Basic c2VjcmV0"}, id="wrong-scheme"),
    ],
)
def test_bad_token_gets_401_json_and_the_server_keeps_serving(
    harness: Harness, headers: dict[str, str]
) -> None:
    """A missing or unknown token is refused with the error body; valid clients still work."""
    # Arrange
    transport = harness.serve()

    # Act
    with httpx.Client(base_url=transport.url, headers=headers) as raw:
        refused = raw.get("/v1/task")
    with raw_client(transport, "c1") as raw:
        served = raw.get("/v1/task")

    # Assert
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    error = refused.json()["error"]
    assert set(error) == {"code", "message", "field", "hint"}
    assert error["code"] == "unauthorized"
    assert error["field"] == "Authorization"
    assert served.status_code == 204
    assert transport.list_clients() == ["c1"]


def test_health_needs_no_token_and_unknown_paths_answer_json(harness: Harness) -> None:
    """/v1/health is open; a wrong path gets the JSON error body."""
    # Arrange
    transport = harness.serve()

    # Act
    with raw_client(transport, None) as raw:
        health = raw.get("/v1/health")
        missing = raw.get("/v1/nothing")

    # Assert
    assert health.json() == {"status": "ok"}
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "http_error"


def test_client_with_a_refused_token_fails_with_config_error(harness: Harness) -> None:
    """run_http_client stops with ConfigError when its token is refused."""
    # Arrange
    transport = harness.serve()

    # Act / Assert
    with pytest.raises(ConfigError, match=r"refused this client's token") as info:
        run_http_client(transport.url, "c0", "x" * 20, AddClient(0.0), poll_wait_s=1)
    assert info.value.field == "token"


def test_client_using_another_clients_token_fails(harness: Harness) -> None:
    """A token enrolled for c1 used as c0 is caught when the first task arrives."""
    # Arrange
    transport = harness.serve()
    transport_thread = harness.fit_later(transport, ["c1"], timeout_s=1.0)

    # Act / Assert
    with pytest.raises(ConfigError, match=r"belongs to client 'c1'"):
        run_http_client(transport.url, "c0", TOKENS["c1"], AddClient(0.0), poll_wait_s=2)
    transport.finish()
    assert transport_thread.result(timeout=20)[0].timed_out


# -- bad results -------------------------------------------------------------------------------
def test_malformed_result_bytes_are_rejected_and_never_reach_the_model(
    harness: Harness, workspace: Callable[[str], Workspace]
) -> None:
    """Garbage instead of safetensors: 422, recorded as the client's failure, model unchanged."""
    # Arrange
    transport = harness.serve()
    harness.client(transport, "c1", AddClient(2.0))
    with raw_client(transport, "c0") as raw:
        raw.get("/v1/task")
        transport.wait_for_clients(2, timeout_s=10)
        ws = workspace("ws")
        coordinator = _coordinator(ws, transport, num_rounds=1)
        run_id = coordinator.start(ws.project.id, PARAMS)
        result = harness.pool.submit(coordinator.run, run_id)

        # Act
        task = wait_task(raw)
        put = raw.put("/v1/result/1/up1", params={"chunk": 0, "of": 1}, content=b"\x00garbage")
        commit = raw.post("/v1/result/1/up1/commit", json={"num_examples": 10})
        final = result.result(timeout=30)

    # Assert
    assert task["round"] == 1
    assert put.status_code == 200
    assert commit.status_code == 422
    assert "safetensors" in commit.json()["error"]["message"]
    np.testing.assert_array_equal(final["w"], PARAMS["w"] + 2.0)
    rows = {r.client_id: r for _, r in ws.metadata.list_fl_client_rounds(run_id, round_num=1)}
    assert rows["c0"].status == "failed"
    assert "rejected" in (rows["c0"].reason or "")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b'{"num_examples": "ten"}', id="bad-type"),
        pytest.param(b"{}", id="empty"),
    ],
)
def test_malformed_commit_body_is_422_and_recorded(harness: Harness, body: bytes) -> None:
    """A commit body that is not {num_examples, metrics} or {error} fails the client's round."""
    # Arrange
    transport = harness.serve()
    with raw_client(transport, "c0") as raw:
        raw.get("/v1/task")
        pending = harness.fit_later(transport, ["c0"])
        wait_task(raw)

        # Act
        commit = raw.post("/v1/result/1/up1/commit", content=body)

    # Assert
    assert commit.status_code == 422
    (outcome,) = pending.result(timeout=20)
    assert outcome.result is None
    assert "malformed commit" in (outcome.error or "")


def test_incomplete_upload_is_422_and_may_be_completed(harness: Harness) -> None:
    """Committing before every chunk arrived is refused without ending the client's round."""
    # Arrange
    data = encode_parameters(PARAMS)
    transport = harness.serve(chunk_bytes=64)
    with raw_client(transport, "c0") as raw:
        raw.get("/v1/task")
        pending = harness.fit_later(transport, ["c0"])
        wait_task(raw)
        parts = [data[i : i + 64] for i in range(0, len(data), 64)]
        for index, part in enumerate(parts[1:], start=1):
            raw.put("/v1/result/1/u", params={"chunk": index, "of": len(parts)}, content=part)

        # Act
        early = raw.post("/v1/result/1/u/commit", json={"num_examples": 3})
        raw.put("/v1/result/1/u", params={"chunk": 0, "of": len(parts)}, content=parts[0])
        late = raw.post("/v1/result/1/u/commit", json={"num_examples": 3, "metrics": {"a": 1}})

    # Assert
    assert early.status_code == 422
    assert "incomplete" in early.json()["error"]["message"]
    assert late.status_code == 200
    (outcome,) = pending.result(timeout=20)
    assert outcome.result is not None
    assert outcome.result.num_examples == 3
    assert outcome.result.metrics == {"a": 1.0}


def test_oversized_chunk_is_refused_with_413(harness: Harness) -> None:
    """A chunk larger than chunk_bytes is refused before it is read."""
    # Arrange
    transport = harness.serve(chunk_bytes=1024)
    with raw_client(transport, "c0") as raw:
        raw.get("/v1/task")
        pending = harness.fit_later(transport, ["c0"], timeout_s=1.0)
        wait_task(raw)

        # Act
        response = raw.put("/v1/result/1/u", params={"chunk": 0, "of": 1}, content=b"x" * 5000)

    # Assert
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert pending.result(timeout=20)[0].timed_out


def test_chunks_adding_up_past_the_limit_are_refused_with_413(harness: Harness) -> None:
    """Chunks that each fit but together exceed max_upload_bytes end the upload with 413."""
    # Arrange
    transport = harness.serve(chunk_bytes=1024, max_upload_bytes=3000)
    with raw_client(transport, "c0") as raw:
        raw.get("/v1/task")
        pending = harness.fit_later(transport, ["c0"], timeout_s=1.0)
        wait_task(raw)

        # Act
        answers = [
            raw.put("/v1/result/1/u", params={"chunk": i, "of": 3}, content=b"x" * 1024)
            for i in range(3)
        ]
        again = raw.put("/v1/result/1/u", params={"chunk": 0, "of": 3}, content=b"x")
        declared = raw.put("/v1/result/1/v", params={"chunk": 0, "of": 4}, content=b"x")

    # Assert
    assert [a.status_code for a in answers] == [200, 200, 413]
    assert again.status_code == 413
    assert declared.status_code == 413
    assert pending.result(timeout=20)[0].timed_out


def test_result_over_the_upload_limit_is_refused_and_reported(harness: Harness) -> None:
    """A result larger than max_upload_bytes gets 413; the client reports it, the round goes on."""
    # Arrange
    big = OrderedDict(w=np.zeros(4096, dtype=np.float32))
    transport = harness.serve(chunk_bytes=1024, max_upload_bytes=4096)
    harness.client(transport, "c0", AddClient(1.0))
    transport.wait_for_clients(1, timeout_s=10)

    # Act
    (outcome,) = transport.fit(1, {"c0": FitIns(1, big)}, timeout_s=30)

    # Assert
    assert outcome.result is None
    assert not outcome.timed_out
    assert "result refused" in (outcome.error or "")
    assert harness.report().status == "rejected"


# -- conflicts ---------------------------------------------------------------------------------
def test_result_for_a_round_the_client_was_not_selected_for_is_409(harness: Harness) -> None:
    """Only selected clients may submit; others get 409 naming the round."""
    # Arrange
    transport = harness.serve()
    with raw_client(transport, "c0") as c0, raw_client(transport, "c1") as c1:
        c0.get("/v1/task")
        c1.get("/v1/task")
        pending = harness.fit_later(transport, ["c0"], timeout_s=1.0)
        wait_task(c0)

        # Act
        put = c1.put("/v1/result/1/u", params={"chunk": 0, "of": 1}, content=b"x")
        commit = c1.post("/v1/result/1/u/commit", json={"error": "nope"})
        model = c1.get(f"/v1/model/{'0' * 64}", params={"chunk": 0})

    # Assert
    assert put.status_code == commit.status_code == 409
    assert "not selected for round 1" in put.json()["error"]["message"]
    assert model.status_code == 404
    assert pending.result(timeout=20)[0].timed_out


def test_stale_round_and_duplicate_commit_are_409(harness: Harness) -> None:
    """A second commit, and any result for a closed round, are refused with 409."""
    # Arrange
    data = encode_parameters(PARAMS)
    transport = harness.serve()
    with raw_client(transport, "c0") as c0, raw_client(transport, "c1") as c1:
        c0.get("/v1/task")
        c1.get("/v1/task")
        pending = harness.fit_later(transport, ["c0", "c1"], timeout_s=1.5)
        wait_task(c0)
        c0.put("/v1/result/1/u", params={"chunk": 0, "of": 1}, content=data)

        # Act
        first = c0.post("/v1/result/1/u/commit", json={"num_examples": 4})
        second = c0.post("/v1/result/1/u/commit", json={"num_examples": 4})
        outcomes = pending.result(timeout=20)
        stale = c1.post("/v1/result/1/v/commit", json={"num_examples": 4})
        future = c1.post("/v1/result/7/v/commit", json={"num_examples": 4})

    # Assert
    assert first.status_code == 200
    assert second.status_code == 409
    assert "replayed commit" in second.text
    assert stale.status_code == future.status_code == 409
    assert "not open" in stale.json()["error"]["message"]
    assert {o.client_id: o.result is not None for o in outcomes} == {"c0": True, "c1": False}


def test_bad_query_and_upload_ids_are_422(harness: Harness) -> None:
    """Malformed chunk numbers, upload ids and digests are refused with 422."""
    # Arrange
    transport = harness.serve()
    with raw_client(transport, "c0") as raw:
        raw.get("/v1/task")
        pending = harness.fit_later(transport, ["c0"], timeout_s=1.0)
        task = wait_task(raw)
        digest = task["model"]["digest"]

        # Act
        answers = [
            raw.get(f"/v1/model/{digest}", params={"chunk": "x"}),
            raw.get(f"/v1/model/{digest}", params={"chunk": 99}),
            raw.get("/v1/model/NOT-A-DIGEST", params={"chunk": 0}),
            raw.put("/v1/result/1/bad!id", params={"chunk": 0, "of": 1}, content=b"x"),
            raw.put("/v1/result/1/u", params={"chunk": 2, "of": 2}, content=b"x"),
            raw.get("/v1/task", params={"wait_s": "soon"}),
        ]

    # Assert
    assert [a.status_code for a in answers] == [422] * 6
    assert all(a.json()["error"]["code"] == "invalid_input" for a in answers)
    pending.result(timeout=20)


def test_fit_after_finish_is_a_conflict_and_polls_say_done(harness: Harness) -> None:
    """A finished transport serves no rounds; polling clients are told the run is over."""
    # Arrange
    transport = harness.serve()
    transport.finish()

    # Act
    with raw_client(transport, "c0") as raw:
        poll = raw.get("/v1/task", params={"wait_s": 5})

    # Assert
    assert poll.json() == {"done": True}
    with pytest.raises(Conflict, match=r"finished"):
        transport.fit(1, {"c0": FitIns(1, PARAMS)}, timeout_s=1)


# -- settings, TLS -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"host": "0.0.0.0"}, "tls_certfile", id="public-without-tls"),
        pytest.param({"tls_keyfile": "key.pem"}, "tls_certfile", id="key-without-cert"),
        pytest.param({"chunk_bytes": 0}, "chunk_bytes", id="chunk"),
        pytest.param({"tokens": {"c0": "short"}}, "tokens.c0", id="short-token"),
        pytest.param({"tokens": {"bad id": "x" * 20}}, "tokens", id="bad-id"),
        pytest.param({"tokens": {"a": "x" * 20, "b": "x" * 20}}, "tokens", id="shared-token"),
        pytest.param({"tls_certfile": "/nonexistent.pem"}, "tls_certfile", id="missing-cert"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any], field: str) -> None:
    """Unsafe or malformed transport settings raise ConfigError naming the setting."""
    with pytest.raises(ConfigError) as info:
        HttpTransport(**{"tokens": TOKENS, **kwargs})
    assert info.value.field == field


def test_public_host_without_tls_names_the_flag() -> None:
    """The refusal to serve in clear text tells the user about --tls-cert."""
    with pytest.raises(ConfigError, match=r"without TLS") as info:
        HttpTransport(host="0.0.0.0", tokens=TOKENS)
    assert "--tls-cert" in (info.value.hint or "")


def test_port_in_use_is_a_config_error(harness: Harness) -> None:
    """Binding a port that is taken raises ConfigError on `port`."""
    taken = harness.serve()
    port = int(taken.url.rsplit(":", 1)[1])
    with pytest.raises(ConfigError, match=r"cannot listen") as info:
        HttpTransport(tokens=TOKENS, port=port)
    assert info.value.field == "port"


def test_tls_round_with_a_verified_certificate(harness: Harness, tmp_path: Path) -> None:
    """Over HTTPS, a client that trusts the CA file completes a round."""
    # Arrange
    cert, key = self_signed(tmp_path)
    transport = harness.serve(tls_certfile=cert, tls_keyfile=key)
    harness.client(transport, "c0", AddClient(1.0), ca_file=cert)
    transport.wait_for_clients(1, timeout_s=10)

    # Act
    (outcome,) = transport.fit(1, {"c0": FitIns(1, PARAMS)}, timeout_s=30)

    # Assert
    assert transport.url.startswith("https://127.0.0.1:")
    assert outcome.result is not None
    np.testing.assert_array_equal(outcome.result.parameters["w"], PARAMS["w"] + 1.0)


def test_tls_client_refuses_an_unverified_server(harness: Harness, tmp_path: Path) -> None:
    """Without the CA file, the client cannot verify the server and gives up."""
    # Arrange
    cert, key = self_signed(tmp_path)
    transport = harness.serve(tls_certfile=cert, tls_keyfile=key)

    # Act / Assert
    with pytest.raises(FederationError, match=r"cannot reach the coordinator"):
        run_http_client(
            transport.url,
            "c0",
            TOKENS["c0"],
            AddClient(0.0),
            give_up_after_s=0.3,
            max_backoff_s=0.1,
        )
    assert transport.list_clients() == []


def test_client_gives_up_on_a_server_that_is_gone(harness: Harness) -> None:
    """A coordinator that stays unreachable makes the client fail after give_up_after_s."""
    transport = harness.serve()
    url = transport.url
    transport.close()
    with pytest.raises(FederationError, match=r"cannot reach"):
        run_http_client(
            url, "c0", TOKENS["c0"], AddClient(0.0), give_up_after_s=0.3, max_backoff_s=0.1
        )


def test_stop_event_ends_the_client(harness: Harness) -> None:
    """Setting stop_event makes run_http_client return."""
    transport = harness.serve()
    stop = threading.Event()
    stop.set()
    assert run_http_client(transport.url, "c0", TOKENS["c0"], AddClient(0.0), stop_event=stop) == 0


# -- tokens ------------------------------------------------------------------------------------
def test_token_table_keeps_only_hashes_and_authenticates() -> None:
    """Tokens map to their client; nothing else does; the table holds no plaintext token."""
    table = TokenTable(TOKENS)
    assert table.authenticate(f"Bearer {TOKENS['c2']}") == "c2"
    assert table.authenticate("Bearer nope") is None
    assert table.authenticate(None) is None
    assert TOKENS["c2"] not in repr(vars(table))
    assert table.client_ids == ["c0", "c1", "c2"]


def test_token_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    """Enrolled tokens are written 0600, read back, and a second enrollment is refused."""
    # Arrange
    path = tmp_path / "tokens.json"
    tokens = generate_tokens(["bank-a", "bank-b"])

    # Act
    write_token_file(path, tokens)

    # Assert
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_token_file(path) == tokens
    assert read_client_token(path, "bank-b") == tokens["bank-b"]
    with pytest.raises(Conflict, match=r"exists already"):
        write_token_file(path, tokens)


def test_client_token_file_may_hold_the_token_alone(tmp_path: Path) -> None:
    """A file with just the token works; a map without the client's id does not."""
    alone, mapping = tmp_path / "token", tmp_path / "tokens.json"
    alone.write_text("  the-token-itself-123  \n")
    mapping.write_text(json.dumps({"other": "x" * 20}))
    assert read_client_token(alone, "c0") == "the-token-itself-123"
    with pytest.raises(ConfigError, match=r"no token for client 'c0'"):
        read_client_token(mapping, "c0")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("[1, 2]", id="list"),
        pytest.param("{bad json", id="not-json"),
        pytest.param("{}", id="empty"),
    ],
)
def test_bad_token_files_are_config_errors(tmp_path: Path, content: str) -> None:
    """A token file must be a non-empty JSON object of strings."""
    path = tmp_path / "tokens.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        read_token_file(path)
    assert info.value.field == "token_file"


def test_missing_token_file_is_a_config_error(tmp_path: Path) -> None:
    """An unreadable token file names the file."""
    with pytest.raises(ConfigError, match=r"cannot read token file"):
        read_token_file(tmp_path / "none.json")
    with pytest.raises(ConfigError, match=r"cannot read token file"):
        read_client_token(tmp_path / "none", "c0")


# -- local data files --------------------------------------------------------------------------
def _csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_load_csv_returns_float32_features_and_int64_labels(tmp_path: Path) -> None:
    """Header row, numeric features, integer labels (label column anywhere)."""
    path = _csv(tmp_path / "a.csv", "f1,is_fraud,f2\n1.5,0,2\n-3,1,4e-1\n")
    x, y = load_table(path, label="is_fraud")
    assert x.dtype == np.float32
    assert y.dtype == np.int64
    np.testing.assert_array_equal(x, np.array([[1.5, 2], [-3, 0.4]], dtype=np.float32))
    np.testing.assert_array_equal(y, [0, 1])


def test_load_csv_with_chosen_feature_order(tmp_path: Path) -> None:
    """`features` picks and orders the columns."""
    path = _csv(tmp_path / "a.csv", "f1,y,f2\n1,0,2\n")
    x, _ = load_table(path, label="y", features=["f2", "f1"])
    np.testing.assert_array_equal(x, [[2, 1]])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param("f1,y\n1,0\nabc,1\n", r"line 3, column 'f1': not a number: 'abc'", id="text"),
        pytest.param("f1,y\n1,0\n2\n", r"line 3: 1 values for 2 columns", id="short-row"),
        pytest.param("f1,y\n1,0\n,1\n", r"line 3, column 'f1': not a number: ''", id="empty"),
        pytest.param("f1,y\n1,0\nnan,1\n", r"line 3, column 'f1': missing or non-finite", id="nan"),
        pytest.param("f1,y\n1,0.5\n", r"line 2, column 'y': labels must be integers", id="label"),
        pytest.param("f1,z\n1,0\n", r"no label column 'y'", id="no-label"),
        pytest.param("f1,y\n", r"no data rows", id="no-rows"),
        pytest.param("", r"no header row", id="empty-file"),
        pytest.param("y,y\n1,0\n", r"duplicate column", id="dupes"),
    ],
)
def test_bad_csv_names_file_line_and_column(tmp_path: Path, text: str, match: str) -> None:
    """Bad data raises InvalidInput naming the file, the line and the column."""
    path = _csv(tmp_path / "bank.csv", text)
    with pytest.raises(InvalidInput, match=match) as info:
        load_table(path, label="y")
    assert "bank.csv" in info.value.message


def test_load_table_refuses_unknown_files_and_columns(tmp_path: Path) -> None:
    """Missing files, unknown suffixes and unknown feature columns are refused."""
    with pytest.raises(NotFound):
        load_table(tmp_path / "none.csv", label="y")
    with pytest.raises(InvalidInput, match=r"unknown type"):
        load_table(_csv(tmp_path / "a.txt", "x"), label="y")
    with pytest.raises(InvalidInput, match=r"feature columns \['nope'\]"):
        load_table(_csv(tmp_path / "a.csv", "f,y\n1,0\n"), label="y", features=["nope"])


def test_load_parquet(tmp_path: Path) -> None:
    """Parquet numeric columns load like CSV; nulls and strings are refused by column."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    good, nulls, text = tmp_path / "a.parquet", tmp_path / "b.parquet", tmp_path / "c.parquet"
    pq.write_table(pa.table({"f": [1.0, 2.0], "n": [3, 4], "y": [0, 1]}), good)
    pq.write_table(pa.table({"f": [1.0, None], "y": [0, 1]}), nulls)
    pq.write_table(pa.table({"f": ["a", "b"], "y": [0, 1]}), text)
    x, y = load_table(good, label="y")
    np.testing.assert_array_equal(x, [[1, 3], [2, 4]])
    np.testing.assert_array_equal(y, [0, 1])
    with pytest.raises(InvalidInput, match=r"row 2, column 'f': missing value"):
        load_table(nulls, label="y")
    with pytest.raises(InvalidInput, match=r"column 'f': type string is not numeric"):
        load_table(text, label="y")


def test_parquet_without_pyarrow_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without pyarrow, Parquet files raise MissingExtraError with the pip command."""
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    path = tmp_path / "a.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(MissingExtraError, match=r"pyarrow") as info:
        load_table(path, label="y")
    assert "fedloop[parquet]" in (info.value.hint or "")
