"""When the coordinator speaks TLS, with which certificate, and which client certificates it requires."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import re
import socket
import ssl
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from fedloop.core import ConfigError, Conflict, FedloopWarning, InvalidInput, is_loopback_host
from fedloop.federated.transports.certs import issue_certificate, make_ca, write_pem_files

__all__ = [
    "AUTO_CERT_NAME",
    "PEER_CERT_STATE",
    "ServerTls",
    "ensure_dev_certificate",
    "peer_identities",
    "plan_tls",
]

logger = logging.getLogger("fedloop.federated.transports.http.tls")

#: File stem of the server certificate the coordinator issues itself (next to ca.pem).
AUTO_CERT_NAME = "coordinator-auto"
#: Key under which a connection's verified client certificate reaches a request's scope state.
PEER_CERT_STATE = "fedloop.peer_cert"
#: A certificate issued here is renewed once less than this is left of it.
_RENEW_BEFORE = dt.timedelta(days=7)
_HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


@dataclass(frozen=True)
class ServerTls:
    """The TLS settings of one coordinator.

    Attributes
    ----------
    certfile, keyfile : Path and Path or None
        The server certificate (chain) and its key (None: the key is in ``certfile``).
    client_ca : Path or None
        CA bundle client certificates must chain to; None accepts clients without one.
    ca_file : Path or None
        The development CA clients verify the server with, when the certificate was issued
        here; None for a certificate the operator passed.
    """

    certfile: Path
    keyfile: Path | None
    client_ca: Path | None = None
    ca_file: Path | None = None


def plan_tls(
    host: str,
    *,
    tls: bool | None,
    certfile: str | Path | None,
    keyfile: str | Path | None,
    client_ca: str | Path | None,
    tls_dir: str | Path | None,
    tls_sans: Sequence[str] = (),
) -> ServerTls | None:
    """Decide how a coordinator bound to ``host`` speaks: TLS (and with what) or clear text.

    TLS is used with a given certificate, with ``tls=True``, with a client CA or extra names,
    and on any host but loopback. Without a certificate, one is issued for ``host`` (and ``tls_sans``) by the
    development CA in ``tls_dir``, which is made on first use. ``tls=False`` serves clear text
    off loopback, for a coordinator behind a proxy that terminates TLS, and warns.

    Returns
    -------
    ServerTls or None
        None for clear text.

    Raises
    ------
    ConfigError
        For contradicting settings, an unreadable client CA, or TLS needed without a
        certificate and without ``tls_dir``.
    """
    if keyfile is not None and certfile is None:
        raise ConfigError(
            "a TLS key needs its certificate.", field="tls_certfile", hint="Pass --tls-cert too."
        )
    if certfile is not None and tls_sans:
        raise ConfigError(
            "extra names (--tls-san) apply to the certificate made from the development CA, "
            "not to a certificate passed with --tls-cert.",
            field="tls_sans",
            hint="Drop --tls-san, or drop --tls-cert/--tls-key to use the workspace CA.",
        )
    if tls is False:
        if certfile is not None or client_ca is not None or tls_sans:
            raise ConfigError(
                "clear text (--insecure-plaintext) contradicts a TLS certificate, client CA or "
                "certificate names.",
                field="tls",
                hint="Drop --insecure-plaintext, or drop --tls-cert/--client-ca/--tls-san.",
            )
        if not is_loopback_host(host):
            message = (
                f"serving clear text on {host!r}: bearer tokens and weights cross the network "
                "unencrypted unless a proxy in front of this coordinator terminates TLS."
            )
            logger.warning(message)
            warnings.warn(message, FedloopWarning, stacklevel=3)
        return None
    wanted = tls or certfile is not None or client_ca is not None or bool(tls_sans)
    if not (wanted or not is_loopback_host(host)):
        return None
    trusted = _check_client_ca(Path(client_ca)) if client_ca is not None else None
    if certfile is not None:
        return ServerTls(Path(certfile), Path(keyfile) if keyfile else None, trusted)
    if tls_dir is None:
        raise ConfigError(
            f"refusing to serve on {host!r} without TLS: bearer tokens and weights would "
            "cross the network in clear text, and no certificate was given.",
            field="tls_certfile",
            value=host,
            hint="Pass --tls-cert and --tls-key (or tls_dir, a folder for a development CA), "
            "or bind 127.0.0.1.",
        )
    cert, key, ca = ensure_dev_certificate(tls_dir, _server_names(host, tls_sans))
    return ServerTls(cert, key, trusted, ca)


def _check_client_ca(path: Path) -> Path:
    try:
        ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH).load_verify_locations(path)
    except (ssl.SSLError, OSError, ValueError) as err:
        raise ConfigError(
            f"cannot load the client CA bundle {path}: {err}.",
            field="client_ca",
            value=str(path),
            hint="Pass a PEM file of CA certificates with --client-ca, e.g. the ca.pem of "
            "`fedloop certs init`.",
        ) from err
    return path


def _valid_hostname(name: str) -> bool:
    labels = name.split(".")
    return len(name) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def _server_names(host: str, extra: Sequence[str]) -> tuple[list[str], list[str]]:
    """Return the DNS names and IP addresses a certificate for ``host`` should carry."""
    dns, ips = ["localhost"], ["127.0.0.1", "::1"]
    wildcard = host in ("", "0.0.0.0", "::")
    guessed = [socket.gethostname()] if wildcard else []  # getfqdn() may wait on DNS
    # A guessed name that is no valid host name is left out; a named one is checked on issue.
    named = [*([] if wildcard else [host]), *extra, *filter(_valid_hostname, guessed)]
    for name in named:
        try:
            address = str(ipaddress.ip_address(name))
        except ValueError:
            dns.append(name.lower())
        else:
            ips.append(address)
    return list(dict.fromkeys(dns)), list(dict.fromkeys(ips))


def ensure_dev_certificate(
    folder: str | Path, names: tuple[Sequence[str], Sequence[str]]
) -> tuple[Path, Path, Path]:
    """Return a server certificate for ``names`` from the development CA in ``folder``.

    The CA (``ca.pem``, ``ca-key.pem``, as ``fedloop certs init`` writes them) is made when the
    folder holds neither file. The certificate (``coordinator-auto.pem`` and its key) is
    issued again when it is missing, lacks one of the names, was signed by another CA or has
    less than a week left.

    Parameters
    ----------
    folder : str or Path
        The CA's folder (created 0700).
    names : tuple of (DNS names, IP addresses)
        What the certificate must cover.

    Returns
    -------
    tuple of Path
        The certificate, its key and the CA certificate clients verify it with.

    Raises
    ------
    ConfigError
        When the folder holds half a CA, the CA has expired, or a name is invalid.
    """
    folder = Path(folder)
    ca_file, ca_key_file = folder / "ca.pem", folder / "ca-key.pem"
    if not ca_file.exists() and not ca_key_file.exists():
        try:
            write_pem_files(folder, "ca", *make_ca())
            logger.info("made a development CA in %s", folder)
        except Conflict:  # another coordinator made it meanwhile: use that one
            pass
    if not (ca_file.is_file() and ca_key_file.is_file()):
        raise ConfigError(
            f"{folder} holds only one of ca.pem and ca-key.pem.",
            field="tls_dir",
            value=str(folder),
            hint=f"Restore the other file, or run `fedloop certs init --dir {folder} "
            "--overwrite` (clients then need the new ca.pem).",
        )
    ca_pem, ca_key_pem = ca_file.read_bytes(), ca_key_file.read_bytes()
    ca_cert = x509.load_pem_x509_certificate(ca_pem)
    now = dt.datetime.now(dt.UTC)
    if ca_cert.not_valid_after_utc - now < dt.timedelta(days=1):
        raise ConfigError(
            f"the development CA {ca_file} expires on {ca_cert.not_valid_after_utc:%Y-%m-%d}.",
            field="tls_dir",
            value=str(folder),
            hint=f"Run `fedloop certs init --dir {folder} --overwrite` and give the clients "
            "the new ca.pem.",
        )
    dns, ips = names
    cert_file, key_file = folder / f"{AUTO_CERT_NAME}.pem", folder / f"{AUTO_CERT_NAME}-key.pem"
    if not (key_file.is_file() and _still_good(cert_file, ca_cert, dns, ips, now)):
        try:
            cert_pem, key_pem = issue_certificate(
                ca_pem,
                ca_key_pem,
                common_name="fedloop coordinator",
                dns_names=dns,
                ip_addresses=ips,
            )
        except InvalidInput as err:
            raise ConfigError(
                f"cannot issue the coordinator's certificate: {err.message}",
                field="tls_sans",
                value=err.value,
                hint="Pass host names or IP addresses with --tls-san.",
            ) from err
        write_pem_files(folder, AUTO_CERT_NAME, cert_pem, key_pem, overwrite=True)
        logger.info("issued %s for %s", cert_file, ", ".join([*dns, *ips]))
    return cert_file, key_file, ca_file


def _still_good(
    path: Path, ca: x509.Certificate, dns: Sequence[str], ips: Sequence[str], now: dt.datetime
) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
        return False
    has_dns = {d.lower() for d in san.get_values_for_type(x509.DNSName)}
    has_ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    return (
        set(dns) <= has_dns
        and set(ips) <= has_ips
        and cert.not_valid_after_utc - now > _RENEW_BEFORE
    )


def peer_identities(cert: Mapping[str, Any] | None) -> frozenset[str]:
    """Return the names a verified client certificate stands for: its CNs and DNS SANs.

    ``cert`` is what :meth:`ssl.SSLSocket.getpeercert` returns (None without a certificate).
    """
    if not cert:
        return frozenset()
    names = {value for rdn in cert.get("subject", ()) for key, value in rdn if key == "commonName"}
    names |= {value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"}
    return frozenset(names)
