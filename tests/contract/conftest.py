"""Fixtures shared by the contract suites: metadata stores on SQLite and PostgreSQL, an S3-compatible moto server on loopback."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fedloop.store import Project, SqlMetadataStore

MakeStore = Callable[[], SqlMetadataStore]

S3_REGION = "us-east-1"


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _s3_storage_options(endpoint_url: str) -> dict[str, Any]:
    return {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": endpoint_url, "region_name": S3_REGION},
    }


@pytest.fixture
def closed_port() -> int:
    """Return a loopback TCP port with no listener, for unreachable-endpoint tests."""
    return _free_port()


@dataclass(frozen=True)
class S3Server:
    """A running moto S3 server and the bucket created on it."""

    endpoint_url: str
    bucket: str

    def storage_options(self) -> dict[str, Any]:
        """Return the fsspec storage options that reach this server."""
        return _s3_storage_options(self.endpoint_url)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """Start moto's S3 server on 127.0.0.1 once per session, with one bucket."""
    moto_server = pytest.importorskip(
        "moto.server", reason="S3 tests need moto[server]", exc_type=ImportError
    )
    pytest.importorskip("s3fs", reason='S3 tests need s3fs (pip install "fedloop[s3]")')
    boto3 = pytest.importorskip("boto3", reason="S3 tests need boto3 (installed with moto)")
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            # A developer's AWS profile must not leak into the client that creates the bucket.
            mp.delenv("AWS_PROFILE", raising=False)
            mp.delenv("AWS_DEFAULT_PROFILE", raising=False)
            endpoint_url = f"http://127.0.0.1:{port}"
            # boto3, not s3fs: s3fs sends LocationConstraint=us-east-1, which S3 rejects.
            client = boto3.client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=S3_REGION,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            client.create_bucket(Bucket="fedloop-contract")
        yield S3Server(endpoint_url=endpoint_url, bucket="fedloop-contract")
    finally:
        server.stop()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    """Return a factory that opens a store on one fresh database of the parametrized backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'metadata.db'}"
    else:
        url = request.getfixturevalue("postgres_db_url")
    opened: list[SqlMetadataStore] = []

    def make() -> SqlMetadataStore:
        store = SqlMetadataStore(url, connect_timeout_s=5)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: MakeStore) -> SqlMetadataStore:
    """Return an open, migrated store on an empty database."""
    return make_store()


@pytest.fixture
def project(store: SqlMetadataStore) -> Project:
    """Return a project in the store."""
    return store.ensure_project("demo")
