"""A development certificate authority: make a CA, issue server and client certificates, inspect PEM files."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedloop.core import Conflict, InvalidInput

__all__ = [
    "MAX_DAYS",
    "describe_certificate",
    "issue_certificate",
    "make_ca",
    "write_pem_files",
]

#: Longest validity accepted, in days (ten years: this is a development CA).
MAX_DAYS = 3650
#: Backdating of ``not_valid_before``, so that a peer whose clock runs slightly behind accepts it.
_CLOCK_SKEW = dt.timedelta(minutes=5)
_MAX_NAME_CHARS = 64  # X.509 upper bound for a common name
_ISSUER_KEYS = (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)
_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
}


def _check_days(days: int) -> None:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise InvalidInput(
            f"`days` must be an integer in [1, {MAX_DAYS}]; got {days!r}.",
            field="days",
            value=days,
            hint="Pass --days with a number of days, e.g. 90.",
        )


def _check_name(common_name: str, *, field: str = "common_name") -> str:
    name = common_name.strip() if isinstance(common_name, str) else ""
    if not name or len(name) > _MAX_NAME_CHARS or any(ord(c) < 32 for c in name):
        raise InvalidInput(
            f"`{field}` must be 1 to {_MAX_NAME_CHARS} printable characters; got {common_name!r}.",
            field=field,
            value=common_name,
            hint="Pass a short name such as 'coordinator' or 'bank-001'.",
        )
    return name


def _check_dns(dns_names: Sequence[str]) -> list[str]:
    checked = []
    for dns in dns_names:
        labels = dns.split(".") if isinstance(dns, str) else [""]
        ok = len(dns) <= 253 and all(
            0 < len(label) <= 63
            and label.replace("-", "").replace("*", "").isalnum()
            and label.isascii()
            for label in labels
        )
        if not ok:
            raise InvalidInput(
                f"`dns_names` holds an invalid host name: {dns!r}.",
                field="dns_names",
                value=dns,
                hint="Pass host names such as 'localhost' or 'coordinator.example.org' with --dns.",
            )
        checked.append(dns.lower())
    return checked


def _check_ips(
    ip_addresses: Sequence[str],
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    checked = []
    for ip in ip_addresses:
        try:
            checked.append(ipaddress.ip_address(ip))
        except ValueError as err:
            raise InvalidInput(
                f"`ip_addresses` holds an invalid IP address: {ip!r}.",
                field="ip_addresses",
                value=ip,
                hint="Pass IPv4 or IPv6 addresses such as 127.0.0.1 or ::1 with --ip.",
            ) from err
    return checked


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _validity(
    builder: x509.CertificateBuilder, days: int, *, until: dt.datetime | None = None
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    not_after = now + dt.timedelta(days=days)
    if until is not None:
        not_after = min(not_after, until)
    return builder.not_valid_before(now - _CLOCK_SKEW).not_valid_after(not_after)


def make_ca(common_name: str = "fedloop dev CA", *, days: int = 365) -> tuple[bytes, bytes]:
    """Make a self-signed certificate authority with an EC P-256 key.

    Parameters
    ----------
    common_name : str, default "fedloop dev CA"
        Subject common name of the CA.
    days : int, default 365
        Validity in days, in [1, ``MAX_DAYS``].

    Returns
    -------
    tuple of bytes
        The CA certificate and its unencrypted PKCS#8 private key, both PEM.

    Raises
    ------
    InvalidInput
        For an empty or over-long name (field ``common_name``) or ``days`` out of range.

    Examples
    --------
    >>> ca_pem, ca_key_pem = make_ca()
    >>> describe_certificate(ca_pem)["is_ca"]
    True
    """
    name = _check_name(common_name)
    _check_days(days)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    cert = _validity(builder, days).sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _load_ca(
    ca_cert_pem: bytes, ca_key_pem: bytes
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey]:
    try:
        ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    except ValueError as err:
        raise InvalidInput(
            f"`ca_cert_pem` is not a PEM certificate: {err}.",
            field="ca_cert_pem",
            hint="Run `fedloop certs init` to make a CA.",
        ) from err
    try:
        ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    except (ValueError, TypeError) as err:
        raise InvalidInput(
            f"`ca_key_pem` is not an unencrypted PEM private key: {err}.",
            field="ca_key_pem",
            hint="Pass the ca-key.pem written by `fedloop certs init`.",
        ) from err
    try:
        is_ca = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    same_key = ca_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == ca_cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if not is_ca or not same_key or not isinstance(ca_key, _ISSUER_KEYS):
        raise InvalidInput(
            "`ca_cert_pem` must be a CA certificate whose key is `ca_key_pem`.",
            field="ca_cert_pem",
            hint="Pass ca.pem and ca-key.pem from the same `fedloop certs init`.",
        )
    return ca_cert, ca_key


def issue_certificate(
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    *,
    common_name: str,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    days: int = 90,
    client: bool = False,
) -> tuple[bytes, bytes]:
    """Issue a server (or client) certificate with a fresh EC P-256 key, signed by a CA.

    Parameters
    ----------
    ca_cert_pem, ca_key_pem : bytes
        The CA certificate and its private key, PEM (from :func:`make_ca`).
    common_name : str
        Subject common name, e.g. ``"coordinator"`` or a client id.
    dns_names, ip_addresses : sequence of str, default ()
        Subject alternative names. A server certificate with neither gets ``localhost`` and
        ``127.0.0.1``, so that it verifies on loopback.
    days : int, default 90
        Validity in days, in [1, ``MAX_DAYS``].
    client : bool, default False
        Issue for TLS client authentication (``clientAuth``) instead of ``serverAuth``.

    Returns
    -------
    tuple of bytes
        The certificate and its unencrypted PKCS#8 private key, both PEM.

    Raises
    ------
    InvalidInput
        Naming the field: an empty name, a bad host name or IP address, ``days`` out of range,
        or a CA certificate and key that do not belong together.
    """
    name = _check_name(common_name)
    _check_days(days)
    dns = _check_dns(dns_names)
    ips = _check_ips(ip_addresses)
    if not client and not dns and not ips:
        dns, ips = ["localhost"], [ipaddress.ip_address("127.0.0.1")]
    ca_cert, ca_key = _load_ca(ca_cert_pem, ca_key_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ip) for ip in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    # A certificate must not outlive its CA: peers would reject the tail anyway.
    signed = _validity(builder, days, until=ca_cert.not_valid_after_utc).sign(
        ca_key, hashes.SHA256()
    )
    return signed.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def write_pem_files(
    directory: str | Path,
    name: str,
    cert_pem: bytes,
    key_pem: bytes,
    *,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Write ``<name>.pem`` and ``<name>-key.pem`` into ``directory``, the key readable by its owner only.

    Parameters
    ----------
    directory : str or Path
        Folder to write into; created (mode 0700) when missing.
    name : str
        File stem, e.g. ``"ca"`` or ``"coordinator"``.
    cert_pem, key_pem : bytes
        The certificate and private key, PEM.
    overwrite : bool, default False
        Replace existing files instead of refusing.

    Returns
    -------
    tuple of Path
        The certificate file and the key file.

    Raises
    ------
    InvalidInput
        For a name that is empty or holds a path separator (field ``name``).
    Conflict
        When either file exists and ``overwrite`` is false; the message names the path.
    """
    stem = _check_name(name, field="name")
    if "/" in stem or "\\" in stem or stem.startswith("."):
        raise InvalidInput(
            f"`name` must be a plain file stem; got {name!r}.",
            field="name",
            value=name,
            hint="Pass a name such as 'coordinator' or 'bank-001' (no slashes).",
        )
    folder = Path(directory)
    cert_file, key_file = folder / f"{stem}.pem", folder / f"{stem}-key.pem"
    if not overwrite:
        for path in (cert_file, key_file):
            if path.exists():
                raise Conflict(
                    f"{path} exists already; refusing to overwrite it.",
                    field="path",
                    value=str(path),
                    hint="Pass --overwrite to replace it, or choose another --dir or --name.",
                )
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Create the key with 0600 from the start (no window where it is world-readable).
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_pem)
    os.chmod(key_file, 0o600)  # an existing file keeps its old mode through O_CREAT
    cert_file.write_bytes(cert_pem)
    return cert_file, key_file


def describe_certificate(pem: bytes) -> dict[str, Any]:
    """Describe the first certificate in a PEM file.

    Parameters
    ----------
    pem : bytes
        PEM text holding at least one certificate (a key may follow).

    Returns
    -------
    dict
        ``subject``, ``issuer``, ``serial``, ``dns_names``, ``ip_addresses``, ``not_before``,
        ``not_after`` (ISO 8601, UTC), ``is_ca``, ``extended_key_usage`` and ``self_signed``.

    Raises
    ------
    InvalidInput
        When ``pem`` holds no certificate (field ``pem``).
    """
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as err:
        raise InvalidInput(
            f"`pem` holds no PEM certificate ({str(err).rstrip('.?')}).",
            field="pem",
            hint="Pass a certificate file such as ca.pem or coordinator.pem, not a key.",
        ) from err
    ext = cert.extensions
    try:
        san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = san.get_values_for_type(x509.DNSName)
        ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns, ips = [], []
    try:
        is_ca = ext.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    try:
        usages = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
        eku = [_EKU_NAMES.get(oid, oid.dotted_string) for oid in usages]
    except x509.ExtensionNotFound:
        eku = []
    self_signed = cert.issuer == cert.subject
    if self_signed:
        try:
            cert.verify_directly_issued_by(cert)
        except (ValueError, TypeError, InvalidSignature):
            self_signed = False
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "dns_names": dns,
        "ip_addresses": ips,
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "is_ca": is_ca,
        "extended_key_usage": eku,
        "self_signed": self_signed,
    }
