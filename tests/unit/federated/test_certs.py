"""The development CA: CA and leaf certificates, SANs, key files, input checks, real TLS handshakes."""

from __future__ import annotations

import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509

from fedloop.core import Conflict, InvalidInput
from fedloop.federated.transports.certs import (
    describe_certificate,
    issue_certificate,
    make_ca,
    write_pem_files,
)


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    """Return one CA (certificate and key PEM) for the module."""
    return make_ca()


@pytest.fixture(scope="module")
def server_pem(ca: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    """Return a server certificate with the default loopback SANs."""
    return issue_certificate(*ca, common_name="coordinator")


def test_ca_is_a_certificate_authority(ca: tuple[bytes, bytes]) -> None:
    """The CA is self-signed, CA:true, and may sign certificates and CRLs."""
    cert = x509.load_pem_x509_certificate(ca[0])

    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value

    assert constraints.ca
    assert usage.key_cert_sign
    assert usage.crl_sign
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    cert.verify_directly_issued_by(cert)
    assert describe_certificate(ca[0])["is_ca"] is True


def test_server_certificate_verifies_against_the_ca(
    ca: tuple[bytes, bytes], server_pem: tuple[bytes, bytes]
) -> None:
    """A server certificate is signed by the CA, not a CA, and for serverAuth."""
    cert = x509.load_pem_x509_certificate(server_pem[0])

    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca[0]))
    info = describe_certificate(server_pem[0])

    assert info["is_ca"] is False
    assert info["extended_key_usage"] == ["serverAuth"]
    assert info["issuer"] == "CN=fedloop dev CA"


def test_server_certificate_defaults_to_loopback_sans(server_pem: tuple[bytes, bytes]) -> None:
    """Without names, a server certificate covers localhost and 127.0.0.1."""
    info = describe_certificate(server_pem[0])

    assert info["dns_names"] == ["localhost"]
    assert info["ip_addresses"] == ["127.0.0.1"]


def test_given_sans_are_present(ca: tuple[bytes, bytes]) -> None:
    """DNS names and IP addresses passed in end up as subject alternative names."""
    cert_pem, _ = issue_certificate(
        *ca, common_name="c", dns_names=["fl.example.org"], ip_addresses=["10.0.0.7", "::1"]
    )

    info = describe_certificate(cert_pem)

    assert info["dns_names"] == ["fl.example.org"]
    assert info["ip_addresses"] == ["10.0.0.7", "::1"]


def test_client_certificate_is_for_client_auth(ca: tuple[bytes, bytes]) -> None:
    """A client certificate carries clientAuth and no default SANs."""
    cert_pem, _ = issue_certificate(*ca, common_name="bank-001", client=True)

    info = describe_certificate(cert_pem)

    assert info["extended_key_usage"] == ["clientAuth"]
    assert info["subject"] == "CN=bank-001"
    assert info["dns_names"] == []
    assert info["ip_addresses"] == []


def test_certificate_does_not_outlive_its_ca() -> None:
    """A leaf asked to last longer than its CA ends when the CA does."""
    short_ca = make_ca(days=10)

    cert_pem, _ = issue_certificate(*short_ca, common_name="s", days=90)

    assert (
        describe_certificate(cert_pem)["not_after"]
        == describe_certificate(short_ca[0])["not_after"]
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"common_name": ""}, "common_name", id="empty-name"),
        pytest.param({"common_name": "x" * 65}, "common_name", id="long-name"),
        pytest.param({"ip_addresses": ["300.1.1.1"]}, "ip_addresses", id="bad-ip"),
        pytest.param({"dns_names": ["bad host"]}, "dns_names", id="bad-dns"),
        pytest.param({"days": 0}, "days", id="zero-days"),
        pytest.param({"days": 100_000}, "days", id="too-many-days"),
    ],
)
def test_bad_input_is_refused_naming_the_field(
    ca: tuple[bytes, bytes], kwargs: dict[str, object], field: str
) -> None:
    """Malformed arguments raise InvalidInput with the field set."""
    arguments: dict[str, object] = {"common_name": "ok", **kwargs}

    with pytest.raises(InvalidInput, match=field) as info:
        issue_certificate(*ca, **arguments)  # type: ignore[arg-type]

    assert info.value.field == field


def test_ca_days_out_of_range_is_refused() -> None:
    """make_ca checks its validity too."""
    with pytest.raises(InvalidInput, match="days") as info:
        make_ca(days=-1)

    assert info.value.field == "days"


def test_a_leaf_certificate_cannot_act_as_ca(
    ca: tuple[bytes, bytes], server_pem: tuple[bytes, bytes]
) -> None:
    """Signing with a non-CA certificate, or a CA with another key, is refused."""
    with pytest.raises(InvalidInput, match="ca_cert_pem"):
        issue_certificate(*server_pem, common_name="x")
    with pytest.raises(InvalidInput, match="ca_cert_pem"):
        issue_certificate(ca[0], make_ca()[1], common_name="x")


def test_describe_refuses_a_key(ca: tuple[bytes, bytes]) -> None:
    """A key file is not a certificate."""
    with pytest.raises(InvalidInput) as info:
        describe_certificate(ca[1])

    assert info.value.field == "pem"


def test_key_file_is_owner_only(tmp_path: Path, ca: tuple[bytes, bytes]) -> None:
    """write_pem_files writes name.pem and name-key.pem, the key with mode 0600."""
    cert_file, key_file = write_pem_files(tmp_path / "certs", "ca", *ca)

    assert cert_file == tmp_path / "certs" / "ca.pem"
    assert key_file == tmp_path / "certs" / "ca-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert cert_file.read_bytes() == ca[0]
    assert key_file.read_bytes() == ca[1]


def test_overwrite_is_refused_unless_asked(tmp_path: Path, ca: tuple[bytes, bytes]) -> None:
    """Existing files raise Conflict naming the path; overwrite=True replaces them at 0600."""
    write_pem_files(tmp_path, "ca", *ca)
    key_file = tmp_path / "ca-key.pem"
    key_file.chmod(0o644)

    with pytest.raises(Conflict, match=r"ca\.pem"):
        write_pem_files(tmp_path, "ca", b"other", b"other")
    write_pem_files(tmp_path, "ca", b"cert", b"key", overwrite=True)

    assert key_file.read_bytes() == b"key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


@pytest.mark.parametrize("name", [pytest.param("../up", id="slash"), pytest.param("", id="empty")])
def test_file_stem_must_be_plain(tmp_path: Path, ca: tuple[bytes, bytes], name: str) -> None:
    """A name with a path separator or nothing in it is refused."""
    with pytest.raises(InvalidInput) as info:
        write_pem_files(tmp_path, name, *ca)

    assert info.value.field == "name"


# -- real TLS handshakes on loopback ---------------------------------------------------------


def _handshake(tmp_path: Path, server: tuple[bytes, bytes], trusted_ca: bytes, host: str) -> str:
    """Serve one TLS handshake on 127.0.0.1 with ``server``; connect trusting only ``trusted_ca``.

    Returns the negotiated protocol version; raises ssl.SSLError when the client refuses.
    """
    cert_file, key_file = write_pem_files(tmp_path / "srv", "server", *server, overwrite=True)
    ca_file = tmp_path / "trusted-ca.pem"
    ca_file.write_bytes(trusted_ca)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    client_ctx = ssl.create_default_context(cafile=str(ca_file))  # check_hostname on
    assert client_ctx.check_hostname

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError):
            pass  # the client refused us; its side raises

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            client_ctx.wrap_socket(raw, server_hostname=host) as tls,
        ):
            assert tls.recv(2) == b"ok"
            return str(tls.version())
    finally:
        thread.join(timeout=5)
        listener.close()


@pytest.mark.parametrize(
    "host", [pytest.param("127.0.0.1", id="ip"), pytest.param("localhost", id="dns")]
)
def test_tls_handshake_succeeds_with_the_issuing_ca(
    tmp_path: Path, ca: tuple[bytes, bytes], server_pem: tuple[bytes, bytes], host: str
) -> None:
    """A client trusting only ca.pem, checking the host name, accepts the issued certificate."""
    version = _handshake(tmp_path, server_pem, ca[0], host)

    assert version.startswith("TLSv1.")


def test_tls_handshake_fails_with_another_ca(
    tmp_path: Path, server_pem: tuple[bytes, bytes]
) -> None:
    """A client trusting a different CA refuses the certificate."""
    other_ca, _ = make_ca("another CA")

    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        _handshake(tmp_path, server_pem, other_ca, "127.0.0.1")


def test_tls_handshake_fails_for_a_name_not_in_the_sans(
    tmp_path: Path, ca: tuple[bytes, bytes], server_pem: tuple[bytes, bytes]
) -> None:
    """check_hostname refuses a host the certificate was not issued for."""
    with pytest.raises(ssl.SSLCertVerificationError, match=r"match"):
        _handshake(tmp_path, server_pem, ca[0], "fl.example.org")
