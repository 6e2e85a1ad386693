"""Transports between coordinator and clients: the interface and its implementations.

The network transport (``HttpTransport``, ``run_http_client``) loads its web stack (Starlette,
hypercorn, httpx) only when first used, so that importing this package, or starting the CLI,
stays light.
"""

from __future__ import annotations

import typing as _typing

from fedloop.core import lazy_exports as _lazy_exports
from fedloop.federated.transports._auth import (
    Authenticator,
    TokenTable,
    check_client_id,
    generate_tokens,
    read_client_token,
    read_token_file,
    write_token_file,
)
from fedloop.federated.transports.base import Transport
from fedloop.federated.transports.inprocess import InProcessTransport

if _typing.TYPE_CHECKING:
    from fedloop.federated.transports.certs import (
        describe_certificate,
        issue_certificate,
        make_ca,
        write_pem_files,
    )
    from fedloop.federated.transports.http import HttpTransport
    from fedloop.federated.transports.http_client import ClientReport, run_http_client

__all__ = [
    "Authenticator",
    "ClientReport",
    "HttpTransport",
    "InProcessTransport",
    "TokenTable",
    "Transport",
    "check_client_id",
    "describe_certificate",
    "generate_tokens",
    "issue_certificate",
    "make_ca",
    "read_client_token",
    "read_token_file",
    "run_http_client",
    "write_pem_files",
    "write_token_file",
]

_LAZY = {
    "ClientReport": "fedloop.federated.transports.http_client",
    "HttpTransport": "fedloop.federated.transports.http",
    "run_http_client": "fedloop.federated.transports.http_client",
    # cryptography's x509 stack loads only when certificates are made or read
    **dict.fromkeys(
        ("describe_certificate", "issue_certificate", "make_ca", "write_pem_files"),
        "fedloop.federated.transports.certs",
    ),
}


__getattr__ = _lazy_exports(__name__, _LAZY)
