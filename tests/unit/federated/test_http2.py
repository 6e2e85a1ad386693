"""The HTTP transport's protocols: HTTP/2 by ALPN over TLS and h2c in clear text, HTTP/1.1 kept."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.settings
import httpx
import pytest

from _http_federation import PARAMS, TOKENS, AddClient, Harness, raw_client, self_signed, wait_task
from fedloop.core import encode_parameters
from fedloop.federated.messages import FitIns
from fedloop.federated.transports import HttpTransport
from fedloop.federated.transports.http_client import _Session


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()
    assert not h.errors, h.errors


@pytest.fixture
def tls(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


def _serve_tls(harness: Harness, certs: tuple[Path, Path], **kwargs: object) -> HttpTransport:
    return harness.serve(tls_certfile=certs[0], tls_keyfile=certs[1], **kwargs)


def _tls_client(
    transport: HttpTransport, cert: Path, client_id: str | None = None, *, http2: bool = True
) -> httpx.Client:
    headers = {"Authorization": f"Bearer {TOKENS[client_id]}"} if client_id else {}
    return httpx.Client(
        base_url=transport.url,
        headers=headers,
        verify=ssl.create_default_context(cafile=str(cert)),
        http2=http2,
        timeout=10,
    )


def _session(transport: HttpTransport, ca_file: Path | None = None) -> _Session:
    return _Session(
        transport.url,
        TOKENS["c0"],
        ca_file=ca_file,
        stop_event=threading.Event(),
        max_backoff_s=0.1,
        give_up_after_s=5.0,
        transport=None,
    )


# -- negotiation -------------------------------------------------------------------------------
def test_cleartext_serves_h2c_with_prior_knowledge_on_the_reported_port(harness: Harness) -> None:
    """With port 0 the URL names the port bound, and HTTP/2 with prior knowledge works there."""
    # Arrange
    transport = harness.serve(port=0)

    # Act
    with raw_client(transport, None) as raw:
        response = raw.get("/v1/health")

    # Assert
    assert int(transport.url.rsplit(":", 1)[1]) > 0
    assert response.http_version == "HTTP/2"
    assert response.json() == {"status": "ok"}


def test_tls_negotiates_http2_by_alpn(harness: Harness, tls: tuple[Path, Path]) -> None:
    """Over TLS, a client offering h2 and http/1.1 gets HTTP/2."""
    # Arrange
    transport = _serve_tls(harness, tls)

    # Act
    with _tls_client(transport, tls[0], "c0") as client:
        response = client.get("/v1/task")

    # Assert
    assert transport.url.startswith("https://")
    assert response.http_version == "HTTP/2"
    assert response.status_code == 204


def test_tls_certificate_file_may_hold_the_key(
    harness: Harness, tls: tuple[Path, Path], tmp_path: Path
) -> None:
    """A PEM file with the certificate and its key serves HTTPS without --tls-key."""
    # Arrange
    both = tmp_path / "both.pem"
    both.write_bytes(tls[0].read_bytes() + tls[1].read_bytes())
    transport = harness.serve(tls_certfile=both)

    # Act
    with _tls_client(transport, tls[0]) as client:
        response = client.get("/v1/health")

    # Assert
    assert response.http_version == "HTTP/2"
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "secure", [pytest.param(False, id="cleartext"), pytest.param(True, id="tls")]
)
def test_run_http_client_session_speaks_http2(
    harness: Harness, tls: tuple[Path, Path], secure: bool
) -> None:
    """The silo's client uses HTTP/2: h2c in clear text, ALPN h2 over TLS."""
    # Arrange
    transport = _serve_tls(harness, tls) if secure else harness.serve()
    session = _session(transport, tls[0] if secure else None)

    # Act
    try:
        response = session.request("GET", "/v1/task", params={"wait_s": 0})
    finally:
        session.close()

    # Assert
    assert response.status_code == 204
    assert response.http_version == "HTTP/2"


@pytest.mark.parametrize(
    "secure", [pytest.param(False, id="cleartext"), pytest.param(True, id="tls")]
)
def test_http11_client_completes_a_round(
    harness: Harness, tls: tuple[Path, Path], secure: bool
) -> None:
    """An HTTP/1.1-only client (curl, a proxy) still polls, downloads, uploads and commits."""
    # Arrange
    transport = _serve_tls(harness, tls) if secure else harness.serve()
    client = (
        _tls_client(transport, tls[0], "c0", http2=False)
        if secure
        else raw_client(transport, "c0", http1=True)
    )
    with client:
        client.get("/v1/task")
        pending = harness.fit_later(transport, ["c0"])

        # Act
        task = wait_task(client)
        model = client.get(f"/v1/model/{task['model']['digest']}", params={"chunk": 0})
        put = client.put("/v1/result/1/u", params={"chunk": 0, "of": 1}, content=model.content)
        commit = client.post("/v1/result/1/u/commit", json={"num_examples": 7})
        refused = client.post("/v1/result/1/u/commit", json={"num_examples": 7})

    # Assert
    assert {r.http_version for r in (model, put, commit, refused)} == {"HTTP/1.1"}
    assert model.content == encode_parameters(PARAMS)
    assert put.status_code == commit.status_code == 200
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "conflict"
    (outcome,) = pending.result(timeout=20)
    assert outcome.result is not None
    assert outcome.result.num_examples == 7


def test_http11_client_gets_the_json_401(harness: Harness) -> None:
    """Over HTTP/1.1, a missing token gets the same JSON error and WWW-Authenticate header."""
    transport = harness.serve()
    with raw_client(transport, None, http1=True) as raw:
        response = raw.get("/v1/task")
    assert response.http_version == "HTTP/1.1"
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


# -- one connection, many streams --------------------------------------------------------------
def test_early_error_on_an_upload_spares_the_other_streams(harness: Harness) -> None:
    """A 409 answered before a 200 kB body is read neither loses the answer nor the connection."""
    # Arrange: c0 is selected, c1 is not; c1 long-polls and uploads on one HTTP/2 connection
    transport = harness.serve(chunk_bytes=256 << 10)
    with raw_client(transport, "c0") as c0, raw_client(transport, "c1") as c1:
        c0.get("/v1/task")
        pending = harness.fit_later(transport, ["c0"], timeout_s=30.0)
        wait_task(c0)
        with ThreadPoolExecutor(max_workers=1) as pool:
            poll = pool.submit(c1.get, "/v1/task", params={"wait_s": 1})
            time.sleep(0.2)  # the poll's stream is open when the upload is refused

            # Act
            refused = c1.put("/v1/result/1/u", params={"chunk": 0, "of": 1}, content=b"x" * 200_000)
            after = c1.get("/v1/health")
            polled = poll.result(timeout=10)
        c0.post("/v1/result/1/e/commit", json={"error": "done"})  # ends the round

    # Assert
    assert refused.http_version == "HTTP/2"
    assert refused.status_code == 409
    assert "not selected for round 1" in refused.json()["error"]["message"]
    assert polled.status_code == 204
    assert after.status_code == 200
    assert pending.result(timeout=20)[0].error == "client error: done"


def test_one_connection_serves_more_than_a_thousand_requests(harness: Harness) -> None:
    """No per-connection request limit cuts a long-lived client off (hypercorn's is 1000)."""
    transport = harness.serve()
    with raw_client(transport, "c0") as raw:
        codes = {raw.post("/v1/heartbeat").status_code for _ in range(1100)}
    assert codes == {204}


def test_server_opens_wide_http2_receive_windows(harness: Harness) -> None:
    """Uploads are not held to 64 KiB per round trip: the server opens 16 MiB windows."""
    # Arrange
    transport = harness.serve()
    host, port = transport.url.removeprefix("http://").rsplit(":", 1)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    settings: dict[int, int] = {}
    opened = 0

    # Act: read the server's first frames (its SETTINGS and the connection's WINDOW_UPDATE)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(conn.data_to_send())
        while not (settings and opened):
            for event in conn.receive_data(sock.recv(65536)):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    settings = {k: v.new_value for k, v in event.changed_settings.items()}
                elif isinstance(event, h2.events.WindowUpdated) and event.stream_id == 0:
                    opened += event.delta

    # Assert
    assert settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] == 16 << 20
    assert 65535 + opened == 16 << 20


# -- shutdown ----------------------------------------------------------------------------------
def test_close_answers_long_polls_and_stops_promptly(harness: Harness) -> None:
    """close() tells a polling client the run is over, then the port stops accepting."""
    # Arrange
    transport = harness.serve(heartbeat_timeout_s=30.0, linger_s=5.0)
    with raw_client(transport, "c0") as raw, ThreadPoolExecutor(max_workers=1) as pool:
        raw.get("/v1/task")
        poll = pool.submit(raw.get, "/v1/task", params={"wait_s": 10})
        time.sleep(0.2)

        # Act
        started = time.monotonic()
        transport.close()
        elapsed = time.monotonic() - started
        answer = poll.result(timeout=10)

    # Assert
    assert answer.json() == {"done": True}
    assert elapsed < 5.0
    with pytest.raises(httpx.ConnectError), raw_client(transport, None) as late:
        late.get("/v1/health")


def test_round_over_http2_with_tls_and_a_real_client(
    harness: Harness, tls: tuple[Path, Path]
) -> None:
    """run_http_client completes a round over TLS with chunked transfers both ways."""
    transport = _serve_tls(harness, tls, chunk_bytes=64)
    harness.client(transport, "c1", AddClient(2.0), ca_file=tls[0])
    transport.wait_for_clients(1, timeout_s=10)
    (outcome,) = transport.fit(1, {"c1": FitIns(1, PARAMS)}, timeout_s=30)
    assert outcome.result is not None
    assert outcome.bytes_up == outcome.bytes_down == len(encode_parameters(PARAMS))


# -- imports -----------------------------------------------------------------------------------
def test_transports_package_and_cli_do_not_load_the_web_stack() -> None:
    """`import fedloop.federated.transports` and the CLI load no web framework until used."""
    # Arrange
    web = ("starlette", "hypercorn", "uvicorn", "httpx", "h2")
    code = (
        "import sys, fedloop.federated.transports, fedloop.cli.app\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {web!r}))\n"
        "from fedloop.federated.transports import HttpTransport\n"
        "print('hypercorn' in sys.modules, HttpTransport.__module__)\n"
    )

    # Act
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )

    # Assert
    assert result.stdout.splitlines() == ["[]", "True fedloop.federated.transports.http"]
