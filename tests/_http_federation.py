"""Helpers for the HTTP transport's tests: fake clients, a server harness, raw clients, certificates."""

from __future__ import annotations

import datetime as dt
import ipaddress
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from fedloop.core import Parameters
from fedloop.federated.messages import FitIns, FitOutcome, FitRes
from fedloop.federated.transports import ClientReport, HttpTransport, run_http_client

TOKENS = {f"c{i}": f"secret-token-of-client-{i}" for i in range(3)}
PARAMS: Parameters = OrderedDict(
    w=np.arange(12, dtype=np.float32).reshape(3, 4), b=np.zeros(2, dtype=np.float32)
)


class AddClient:
    """A deterministic numpy-only client: adds its offset to every weight."""

    def __init__(self, offset: float, examples: int = 10) -> None:
        self.offset = offset
        self.examples = examples

    def fit(self, ins: FitIns) -> FitRes:
        params = OrderedDict(
            (k, (v + self.offset).astype(v.dtype)) for k, v in ins.parameters.items()
        )
        return FitRes(params, self.examples, {"loss": self.offset}, round_num=ins.round_num)


class BlockingClient:
    """A client that does not answer until released."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def fit(self, ins: FitIns) -> FitRes:
        self.release.wait(30)
        return AddClient(0.0).fit(ins)


class CrashingClient:
    """A client whose training fails."""

    def fit(self, ins: FitIns) -> FitRes:
        raise RuntimeError("disk full")


class Harness:
    """An HttpTransport on loopback plus client threads; everything stops at teardown."""

    def __init__(self) -> None:
        self.transports: list[HttpTransport] = []
        self.threads: list[threading.Thread] = []
        self.stop = threading.Event()
        self.reports: list[ClientReport] = []
        self.errors: list[BaseException] = []
        self.pool = ThreadPoolExecutor(max_workers=4)

    def serve(self, **kwargs: Any) -> HttpTransport:
        transport = HttpTransport(**{"tokens": TOKENS, "linger_s": 0.1, **kwargs})
        self.transports.append(transport)
        return transport

    def client(self, transport: HttpTransport, client_id: str, client: Any, **kwargs: Any) -> None:
        def run() -> None:
            try:
                run_http_client(
                    transport.url,
                    client_id,
                    TOKENS[client_id],
                    client,
                    stop_event=self.stop,
                    poll_wait_s=2,
                    on_round=self.reports.append,
                    **kwargs,
                )
            except Exception as err:  # surfaced by the test that expects it
                self.errors.append(err)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def fit_later(
        self, transport: HttpTransport, clients: list[str], timeout_s: float = 10.0
    ) -> Future[list[FitOutcome]]:
        instructions = {c: FitIns(1, PARAMS, {"local_epochs": 1}) for c in clients}
        return self.pool.submit(transport.fit, 1, instructions, timeout_s=timeout_s)

    def report(self, index: int = 0) -> ClientReport:
        """Return a client report, waiting for it (it is made after the server has the result)."""
        deadline = time.monotonic() + 10
        while len(self.reports) <= index and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.reports[index]

    def close(self) -> None:
        for transport in self.transports:
            transport.close()
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)
        self.pool.shutdown(wait=True)


def raw_client(
    transport: HttpTransport, client_id: str | None, *, http1: bool = False, **kwargs: Any
) -> httpx.Client:
    """Return an httpx client of the server speaking HTTP/2 (h2c), or HTTP/1.1 with ``http1``."""
    headers = {"Authorization": f"Bearer {TOKENS[client_id]}"} if client_id else {}
    return httpx.Client(
        base_url=transport.url,
        headers=headers,
        timeout=10,
        http1=http1,
        http2=not http1,
        **kwargs,
    )


def wait_task(raw: httpx.Client) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = raw.get("/v1/task", params={"wait_s": 2})
        if response.status_code == 200:
            return dict(response.json())
    raise AssertionError("no task arrived")


def self_signed(folder: Path) -> tuple[Path, Path]:
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file
