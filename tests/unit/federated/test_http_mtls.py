"""TLS by default off loopback (a workspace development CA) and client certificates (mTLS)."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from _http_federation import PARAMS, TOKENS, AddClient, Harness
from fedloop.core import ConfigError, FederationError, FedloopWarning
from fedloop.federated.messages import FitIns
from fedloop.federated.transports import (
    HttpTransport,
    describe_certificate,
    issue_certificate,
    make_ca,
    run_http_client,
    write_pem_files,
)
from fedloop.federated.transports._http_tls import ensure_dev_certificate, plan_tls

_PLAN = {"certfile": None, "keyfile": None, "client_ca": None, "tls_dir": None}


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()
    assert not h.errors, h.errors


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """Return a folder with a client CA, certificates for c0 and c1, and c0's from another CA."""
    folder = tmp_path / "pki"
    ca = make_ca("clients CA")
    write_pem_files(folder, "ca", *ca)
    for client_id in ("c0", "c1"):
        write_pem_files(
            folder, client_id, *issue_certificate(*ca, common_name=client_id, client=True)
        )
    rogue = make_ca("rogue CA")
    write_pem_files(folder, "rogue-c0", *issue_certificate(*rogue, common_name="c0", client=True))
    return folder


def _mtls(harness: Harness, pki: Path, tmp_path: Path) -> HttpTransport:
    return harness.serve(client_ca=pki / "ca.pem", tls_dir=tmp_path / "server-ca")


def _cert(pki: Path, stem: str) -> tuple[Path, Path]:
    return pki / f"{stem}.pem", pki / f"{stem}-key.pem"


def _raw(transport: HttpTransport, cert: tuple[Path, Path] | None, token: str) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(transport.ca_file))
    if cert is not None:
        context.load_cert_chain(*cert)
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.Client(base_url=transport.url, verify=context, headers=headers, timeout=10)


def _wait_for_log(caplog: pytest.LogCaptureFixture, text: str) -> logging.LogRecord:
    """Return the first record containing ``text``; the server logs from its own thread."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for record in caplog.records:
            if text in record.getMessage():
                return record
        time.sleep(0.02)
    raise AssertionError(f"nothing logged {text!r}: {caplog.text}")


# -- TLS by default ----------------------------------------------------------------------------
def test_loopback_stays_clear_text_by_default(harness: Harness, tmp_path: Path) -> None:
    """On 127.0.0.1 without TLS options the server speaks h2c and makes no certificate."""
    transport = harness.serve(tls_dir=tmp_path / "certs")

    assert transport.url.startswith("http://")
    assert (transport.certfile, transport.ca_file) == (None, None)
    assert not (tmp_path / "certs").exists()


def test_tls_on_loopback_uses_the_workspace_ca_and_serves_a_round(
    harness: Harness, tmp_path: Path
) -> None:
    """tls=True makes a CA and a certificate on first use; a client trusting ca.pem trains."""
    # Arrange
    transport = harness.serve(tls=True, tls_dir=tmp_path / "certs")
    harness.client(transport, "c0", AddClient(1.0), ca_file=transport.ca_file)
    transport.wait_for_clients(1, timeout_s=10)

    # Act
    (outcome,) = transport.fit(1, {"c0": FitIns(1, PARAMS)}, timeout_s=30)

    # Assert
    assert transport.url.startswith("https://127.0.0.1:")
    assert transport.ca_file == tmp_path / "certs" / "ca.pem"
    info = describe_certificate(transport.certfile.read_bytes()) if transport.certfile else {}
    assert {"127.0.0.1", "::1"} <= set(info["ip_addresses"])
    assert "localhost" in info["dns_names"]
    assert outcome.result is not None
    np.testing.assert_array_equal(outcome.result.parameters["w"], PARAMS["w"] + 1.0)


def test_off_loopback_issues_a_certificate_for_the_host_and_its_names(tmp_path: Path) -> None:
    """A public host gets TLS with a certificate naming it and every --tls-san."""
    plan = plan_tls(
        "10.1.2.3", tls=None, **{**_PLAN, "tls_dir": tmp_path}, tls_sans=["fl.example.org"]
    )

    assert plan is not None
    assert plan.ca_file == tmp_path / "ca.pem"
    info = describe_certificate(plan.certfile.read_bytes())
    assert "10.1.2.3" in info["ip_addresses"]
    assert "fl.example.org" in info["dns_names"]
    assert info["issuer"] == describe_certificate(plan.ca_file.read_bytes())["subject"]


def test_wildcard_host_certificate_names_the_machine_not_the_wildcard(tmp_path: Path) -> None:
    """Bound to 0.0.0.0, the certificate carries the host name and loopback, never 0.0.0.0."""
    plan = plan_tls("0.0.0.0", tls=None, **{**_PLAN, "tls_dir": tmp_path})

    assert plan is not None
    info = describe_certificate(plan.certfile.read_bytes())
    assert "0.0.0.0" not in info["ip_addresses"]
    assert "127.0.0.1" in info["ip_addresses"]
    hostname = socket.gethostname().lower()
    assert hostname in info["dns_names"] or not hostname.replace("-", "").replace(".", "").isalnum()


def test_dev_certificate_is_reused_and_reissued_for_new_names(tmp_path: Path) -> None:
    """The same names reuse the certificate; a new name reissues it from the same CA."""
    names = (["localhost"], ["127.0.0.1"])
    cert, _, ca = ensure_dev_certificate(tmp_path, names)
    first, ca_before = cert.read_bytes(), ca.read_bytes()

    ensure_dev_certificate(tmp_path, names)
    same = cert.read_bytes()
    ensure_dev_certificate(tmp_path, (["localhost", "fl.example.org"], ["127.0.0.1"]))

    assert same == first
    assert cert.read_bytes() != first
    assert ca.read_bytes() == ca_before
    assert "fl.example.org" in describe_certificate(cert.read_bytes())["dns_names"]


def test_insecure_plaintext_off_loopback_warns(tmp_path: Path) -> None:
    """tls=False off loopback (behind a TLS-terminating proxy) serves clear text, loudly."""
    with pytest.warns(FedloopWarning, match=r"clear text on '10.1.2.3'"):
        plan = plan_tls("10.1.2.3", tls=False, **{**_PLAN, "tls_dir": tmp_path})

    assert plan is None
    assert not (tmp_path / "ca.pem").exists()


@pytest.mark.parametrize(
    ("host", "kwargs", "field"),
    [
        pytest.param("10.1.2.3", {}, "tls_certfile", id="public-without-cert-or-dir"),
        pytest.param("127.0.0.1", {"tls": False, "client_ca": "ca.pem"}, "tls", id="plain-mtls"),
        pytest.param("127.0.0.1", {"client_ca": "/nonexistent.pem"}, "client_ca", id="no-ca"),
        pytest.param("127.0.0.1", {"keyfile": "key.pem"}, "tls_certfile", id="key-only"),
        pytest.param(
            "127.0.0.1", {"certfile": "c.pem", "tls_sans": ["a.example"]}, "tls_sans", id="san-cert"
        ),
        pytest.param("127.0.0.1", {"tls": False, "tls_sans": ["a.example"]}, "tls", id="plain-san"),
        pytest.param(
            "127.0.0.1",
            {"tls": True, "tls_dir": "d", "tls_sans": ["bad host"]},
            "tls_sans",
            id="bad-san",
        ),
    ],
)
def test_bad_tls_settings_name_the_field(
    tmp_path: Path, host: str, kwargs: dict[str, object], field: str
) -> None:
    """Contradicting or unusable TLS settings raise ConfigError naming the setting."""
    if kwargs.get("tls_dir"):
        kwargs = {**kwargs, "tls_dir": tmp_path / "d"}
    arguments = {"tls": None, **_PLAN, **kwargs}

    with pytest.raises(ConfigError) as info:
        plan_tls(host, **arguments)  # type: ignore[arg-type]

    assert info.value.field == field


def test_half_a_ca_is_refused(tmp_path: Path) -> None:
    """A folder with ca.pem but no ca-key.pem is not silently replaced by a new CA."""
    (tmp_path / "ca.pem").write_bytes(make_ca()[0])

    with pytest.raises(ConfigError, match=r"only one of") as info:
        ensure_dev_certificate(tmp_path, (["localhost"], []))

    assert info.value.field == "tls_dir"


# -- client certificates -----------------------------------------------------------------------
def test_client_with_its_certificate_completes_a_round(
    harness: Harness, pki: Path, tmp_path: Path
) -> None:
    """With --client-ca, a client presenting its own certificate trains as usual."""
    # Arrange
    transport = _mtls(harness, pki, tmp_path)
    c0_cert, c0_key = _cert(pki, "c0")
    harness.client(
        transport,
        "c0",
        AddClient(2.0),
        ca_file=transport.ca_file,
        tls_certfile=c0_cert,
        tls_keyfile=c0_key,
    )
    transport.wait_for_clients(1, timeout_s=10)

    # Act
    (outcome,) = transport.fit(1, {"c0": FitIns(1, PARAMS)}, timeout_s=30)

    # Assert
    assert transport.client_ca == pki / "ca.pem"
    assert outcome.result is not None
    np.testing.assert_array_equal(outcome.result.parameters["w"], PARAMS["w"] + 2.0)


@pytest.mark.parametrize(
    ("stem", "reason"),
    [
        pytest.param(None, "PEER_DID_NOT_RETURN_A_CERTIFICATE", id="no-certificate"),
        pytest.param("rogue-c0", "CERTIFICATE_VERIFY_FAILED", id="another-ca"),
    ],
)
def test_client_without_a_trusted_certificate_is_refused_at_the_handshake(
    harness: Harness,
    pki: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    stem: str | None,
    reason: str,
) -> None:
    """No certificate, or one from another CA: the TLS handshake fails and the server logs why."""
    # Arrange
    caplog.set_level(logging.WARNING, logger="fedloop.federated.transports")
    transport = _mtls(harness, pki, tmp_path)
    cert = _cert(pki, stem) if stem else None

    # Act / Assert
    with _raw(transport, cert, TOKENS["c0"]) as raw, pytest.raises(httpx.TransportError):
        raw.get("/v1/health")
    record = _wait_for_log(caplog, "refused a TLS connection at the handshake")
    assert reason in record.getMessage()
    assert record.levelno == logging.WARNING
    assert transport.list_clients() == []


def test_run_http_client_without_a_certificate_gives_up_with_a_hint(
    harness: Harness, pki: Path, tmp_path: Path
) -> None:
    """The silo's client cannot tell a refused handshake from a dropped line; its hint can."""
    transport = _mtls(harness, pki, tmp_path)

    with pytest.raises(FederationError, match=r"cannot reach") as info:
        run_http_client(
            transport.url,
            "c0",
            TOKENS["c0"],
            AddClient(0.0),
            ca_file=transport.ca_file,
            give_up_after_s=0.3,
            max_backoff_s=0.1,
        )

    assert "--tls-cert" in (info.value.hint or "")


def test_certificate_of_another_client_is_refused_with_403_and_logged(
    harness: Harness, pki: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """c0's certificate with c1's token: 403, logged with the token's client and the names."""
    # Arrange
    caplog.set_level(logging.WARNING, logger="fedloop.federated.transports")
    transport = _mtls(harness, pki, tmp_path)

    # Act
    with _raw(transport, _cert(pki, "c0"), TOKENS["c1"]) as raw:
        response = raw.get("/v1/task")
    with pytest.raises(ConfigError, match=r"refused this client \(403\)") as info:
        run_http_client(
            transport.url,
            "c1",
            TOKENS["c1"],
            AddClient(0.0),
            ca_file=transport.ca_file,
            tls_certfile=_cert(pki, "c0")[0],
            tls_keyfile=_cert(pki, "c0")[1],
        )

    # Assert
    assert response.status_code == 403
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("forbidden", "certificate")
    assert "names c0, not client 'c1'" in error["message"]
    assert info.value.field == "tls_certfile"
    records = [r for r in caplog.records if getattr(r, "status", None) == 403]
    assert records
    assert all(r.client_id == "c1" and r.levelno == logging.WARNING for r in records)
    assert "names c0" in records[0].reason
    assert transport.list_clients() == ["c1"]  # the token was valid; only the pairing was not


@pytest.mark.parametrize(
    ("url", "kwargs", "field"),
    [
        pytest.param("http://127.0.0.1:9", {"tls_certfile": "c.pem"}, "tls_certfile", id="http"),
        pytest.param("https://127.0.0.1:9", {"tls_keyfile": "k.pem"}, "tls_certfile", id="key"),
        pytest.param(
            "https://127.0.0.1:9", {"tls_certfile": "/nonexistent.pem"}, "tls_certfile", id="file"
        ),
        pytest.param("https://127.0.0.1:9", {"ca_file": "/nonexistent.pem"}, "ca_file", id="ca"),
    ],
)
def test_client_tls_settings_are_checked_before_connecting(
    url: str, kwargs: dict[str, str], field: str
) -> None:
    """A client certificate over clear text, a key alone or unreadable files: ConfigError."""
    with pytest.raises(ConfigError) as info:
        run_http_client(url, "c0", TOKENS["c0"], AddClient(0.0), **kwargs)  # type: ignore[arg-type]

    assert info.value.field == field
