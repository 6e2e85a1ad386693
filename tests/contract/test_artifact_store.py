"""Contract suite of ArtifactStore, run on a local folder, memory:// and S3 (moto)."""

from __future__ import annotations

import hashlib
import os
import sys
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import fsspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedloop.core.errors import (
    ArtifactCorrupt,
    ArtifactMissing,
    ConfigError,
    InvalidInput,
    MissingExtraError,
    StoreUnavailable,
)
from fedloop.store.artifacts import ArtifactRef, ArtifactStore, FsspecArtifactStore

MakeStore = Callable[[], FsspecArtifactStore]


class S3Server(Protocol):
    """What the ``s3_server`` fixture of conftest.py provides."""

    bucket: str

    def storage_options(self) -> dict[str, Any]:
        """Return the fsspec storage options that reach the server."""


NEVER_STORED = hashlib.sha256(b"never stored").hexdigest()


@pytest.fixture(
    params=[
        pytest.param("local", id="local"),
        pytest.param("memory", id="memory"),
        pytest.param("s3", id="s3", marks=pytest.mark.s3),
    ]
)
def make_artifact_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    """Return a factory that opens a store on a fresh root of the parametrized backend."""
    options: dict[str, Any] = {}
    if request.param == "local":
        url = str(tmp_path / "artifacts")
    elif request.param == "memory":
        url = f"memory://fedloop-test-{uuid.uuid4().hex}"
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        url = f"s3://{server.bucket}/{uuid.uuid4().hex}"
        options = server.storage_options()

    def make() -> FsspecArtifactStore:
        return FsspecArtifactStore(url, storage_options=options)

    yield make
    memory = fsspec.filesystem("memory")
    if request.param == "memory" and memory.exists(url):
        memory.rm(url, recursive=True)


def _tmp_folder(store: FsspecArtifactStore) -> str:
    return store.uri_for(NEVER_STORED).rsplit("/sha256/", 1)[0] + "/tmp"


class _FailingReader:
    """Binary reader that returns a few chunks, then fails like a dropped source."""

    def __init__(self, *, chunks_before_failure: int) -> None:
        self._left = chunks_before_failure

    def read(self, size: int = -1, /) -> bytes:
        if self._left == 0:
            raise OSError("source went away mid-copy")
        self._left -= 1
        return b"x" * 1024


def test_store_satisfies_protocol(make_artifact_store: MakeStore) -> None:
    """FsspecArtifactStore implements the ArtifactStore protocol."""
    # Arrange / Act
    store = make_artifact_store()

    # Assert
    assert isinstance(store, ArtifactStore)


def test_bytes_round_trip(make_artifact_store: MakeStore) -> None:
    """put_bytes then get_bytes returns the same bytes and a sha256 reference."""
    # Arrange
    store = make_artifact_store()
    data = b"model weights \x00\xff"

    # Act
    ref = store.put_bytes(data)

    # Assert
    assert ref == ArtifactRef(
        hashlib.sha256(data).hexdigest(), len(data), store.uri_for(ref.digest)
    )
    assert store.get_bytes(ref.digest) == data
    assert store.exists(ref.digest)
    assert store.size(ref.digest) == len(data)


def test_file_round_trip(make_artifact_store: MakeStore, tmp_path: Path) -> None:
    """put_file then get_file writes an identical file."""
    # Arrange
    store = make_artifact_store()
    source = tmp_path / "model.onnx"
    source.write_bytes(b"onnx graph" * 1000)
    dest = tmp_path / "restored.onnx"

    # Act
    ref = store.put_file(source)
    store.get_file(ref.digest, dest)

    # Assert
    assert ref.digest == hashlib.sha256(source.read_bytes()).hexdigest()
    assert dest.read_bytes() == source.read_bytes()
    assert list(tmp_path.glob(".*.part")) == []


def test_same_content_is_stored_once(make_artifact_store: MakeStore, tmp_path: Path) -> None:
    """Writing the same content twice, as bytes or file, returns one ref and one object."""
    # Arrange
    store = make_artifact_store()
    source = tmp_path / "same.bin"
    source.write_bytes(b"same content")

    # Act
    refs = {
        store.put_bytes(b"same content"),
        store.put_bytes(b"same content"),
        store.put_file(source),
    }

    # Assert
    assert len(refs) == 1
    assert list(store.list_digests()) == [refs.pop().digest]


def test_reopened_store_sees_objects(make_artifact_store: MakeStore) -> None:
    """A second store opened on the same URL reads what the first one wrote."""
    # Arrange
    ref = make_artifact_store().put_bytes(b"persisted")

    # Act
    data = make_artifact_store().get_bytes(ref.digest)

    # Assert
    assert data == b"persisted"


def test_corrupt_object_raises_artifact_corrupt(make_artifact_store: MakeStore) -> None:
    """Bytes changed at the final path behind the store's back fail the sha256 check."""
    # Arrange
    store = make_artifact_store()
    ref = store.put_bytes(b"original")
    store.fs.pipe_file(ref.uri, b"tampered")

    # Act / Assert
    with pytest.raises(ArtifactCorrupt, match=rf"{ref.digest}.*expected.*got") as info:
        store.get_bytes(ref.digest)
    assert info.value.value == ref.digest
    assert "restore it from backup" in str(info.value)


def test_corrupt_object_leaves_get_file_dest_untouched(
    make_artifact_store: MakeStore, tmp_path: Path
) -> None:
    """get_file of a corrupt object raises and creates no destination file."""
    # Arrange
    store = make_artifact_store()
    ref = store.put_bytes(b"original")
    store.fs.pipe_file(ref.uri, b"tampered")
    dest = tmp_path / "out.bin"

    # Act / Assert
    with pytest.raises(ArtifactCorrupt, match=ref.digest):
        store.get_file(ref.digest, dest)
    assert not dest.exists()
    assert list(tmp_path.glob(".*.part")) == []


@pytest.mark.parametrize("operation", ["get_bytes", "get_file", "size"])
def test_missing_object_raises_artifact_missing(
    make_artifact_store: MakeStore, tmp_path: Path, operation: str
) -> None:
    """Reading a digest that was never stored raises ArtifactMissing naming the digest."""
    # Arrange
    store = make_artifact_store()
    args = (tmp_path / "out.bin",) if operation == "get_file" else ()

    # Act / Assert
    with pytest.raises(ArtifactMissing, match=NEVER_STORED) as info:
        getattr(store, operation)(NEVER_STORED, *args)
    assert (info.value.field, info.value.value) == ("digest", NEVER_STORED)
    assert not store.exists(NEVER_STORED)


@pytest.mark.parametrize("operation", ["get_bytes", "exists", "size", "delete", "uri_for"])
@pytest.mark.parametrize(
    "digest",
    [
        pytest.param("../../etc/passwd", id="traversal"),
        pytest.param("../" + "a" * 61, id="traversal-64-chars"),
        pytest.param("A" * 64, id="uppercase"),
        pytest.param("a" * 63, id="short"),
        pytest.param("a" * 65, id="long"),
        pytest.param("sha256:" + "a" * 64, id="prefixed"),
        pytest.param("", id="empty"),
        pytest.param(None, id="none"),
    ],
)
def test_bad_digest_raises_invalid_input(
    make_artifact_store: MakeStore, operation: str, digest: object
) -> None:
    """A digest that is not 64 lowercase hex characters is refused before any path is built."""
    # Arrange
    store = make_artifact_store()

    # Act / Assert
    with pytest.raises(InvalidInput, match="64 lowercase hex") as info:
        getattr(store, operation)(digest)
    assert info.value.field == "digest"


def test_interrupted_write_leaves_nothing_visible(make_artifact_store: MakeStore) -> None:
    """A source that fails mid-copy leaves no object, no digest and no tmp file behind."""
    # Arrange
    store = make_artifact_store()
    partial = hashlib.sha256(b"x" * 1024 * 3).hexdigest()

    # Act
    with pytest.raises(OSError, match="mid-copy"):
        store.put_file(_FailingReader(chunks_before_failure=3))

    # Assert
    assert list(store.list_digests()) == []
    assert not store.exists(partial)
    assert store.fs.find(_tmp_folder(store)) == []


def test_crash_leftovers_in_tmp_are_not_listed(make_artifact_store: MakeStore) -> None:
    """Partial files a crashed writer left under tmp/ are never listed as artifacts."""
    # Arrange
    store = make_artifact_store()
    ref = store.put_bytes(b"complete")
    store.fs.pipe_file(f"{_tmp_folder(store)}/{NEVER_STORED}", b"partial")

    # Act
    digests = list(store.list_digests())

    # Assert
    assert digests == [ref.digest]
    assert not store.exists(NEVER_STORED)


def test_large_file_streams_round_trip(make_artifact_store: MakeStore, tmp_path: Path) -> None:
    """A 20 MB file round-trips through put_file and get_file."""
    # Arrange
    store = make_artifact_store()
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(20 * 1024 * 1024))
    dest = tmp_path / "big.out"

    # Act
    ref = store.put_file(source)
    store.get_file(ref.digest, dest)

    # Assert
    assert ref.size_bytes == 20 * 1024 * 1024
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == ref.digest


def test_local_put_and_get_file_stream_in_bounded_memory(tmp_path: Path) -> None:
    """On a local folder a 20 MB copy never holds more than a few chunks in memory."""
    # Arrange
    store = FsspecArtifactStore(tmp_path / "artifacts")
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(20 * 1024 * 1024))

    # Act
    tracemalloc.start()
    try:
        ref = store.put_file(source)
        store.get_file(ref.digest, tmp_path / "big.out")
        peak_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    # Assert
    assert peak_bytes < 8 * 1024 * 1024


def test_delete_removes_object(make_artifact_store: MakeStore) -> None:
    """Deleting twice removes the object once and reports whether there was one."""
    # Arrange
    store = make_artifact_store()
    ref = store.put_bytes(b"garbage")

    # Act
    first, second = store.delete(ref.digest), store.delete(ref.digest)

    # Assert
    assert (first, second) == (True, False)
    assert not store.exists(ref.digest)
    assert list(store.list_digests()) == []


def test_list_digests_lists_every_object(make_artifact_store: MakeStore) -> None:
    """list_digests yields each stored digest once, sorted."""
    # Arrange
    store = make_artifact_store()
    refs = [store.put_bytes(bytes([i]) * i) for i in range(1, 6)]

    # Act
    digests = list(store.list_digests())

    # Assert
    assert digests == sorted(ref.digest for ref in refs)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=4096))
def test_any_bytes_round_trip(make_artifact_store: MakeStore, data: bytes) -> None:
    """Any bytes round-trip, and the digest is their hashlib sha256."""
    # Arrange
    store = make_artifact_store()

    # Act
    ref = store.put_bytes(data)

    # Assert
    assert ref.digest == hashlib.sha256(data).hexdigest()
    assert store.get_bytes(ref.digest) == data


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("nosuchprotocol://bucket/prefix", id="unknown-protocol"),
        pytest.param("s3:/bucket/prefix", id="missing-slashes"),
        pytest.param("", id="empty"),
    ],
)
def test_bad_url_raises_config_error(url: str) -> None:
    """A malformed URL or unknown protocol raises ConfigError naming store.artifacts_url."""
    # Act / Assert
    with pytest.raises(ConfigError, match=r"store\.artifacts_url") as info:
        FsspecArtifactStore(url)
    assert info.value.field == "store.artifacts_url"


def test_put_file_of_missing_path_raises_invalid_input(tmp_path: Path) -> None:
    """put_file of a path that does not exist raises InvalidInput naming the source."""
    # Arrange
    store = FsspecArtifactStore(tmp_path / "artifacts")

    # Act / Assert
    with pytest.raises(InvalidInput, match="existing file") as info:
        store.put_file(tmp_path / "nope.bin")
    assert info.value.field == "source"


def test_s3_without_s3fs_raises_missing_extra_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """An s3:// URL without s3fs installed raises MissingExtraError with the pip command."""
    # Arrange
    monkeypatch.setitem(sys.modules, "s3fs", None)

    # Act / Assert
    with pytest.raises(MissingExtraError, match=r'pip install "fedloop\[s3\]"'):
        FsspecArtifactStore("s3://bucket/prefix")


@pytest.mark.s3
def test_unreachable_s3_endpoint_raises_store_unavailable(closed_port: int) -> None:
    """An S3 endpoint with nothing listening raises StoreUnavailable with a hint."""
    # Arrange
    pytest.importorskip("s3fs", reason='needs s3fs (pip install "fedloop[s3]")')
    options = {
        "key": "testing",
        "secret": "testing",
        "skip_instance_cache": True,
        "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{closed_port}"},
        "config_kwargs": {"connect_timeout": 1, "read_timeout": 1, "retries": {"max_attempts": 1}},
    }
    store = FsspecArtifactStore("s3://bucket/prefix", storage_options=options)

    # Act / Assert
    with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1") as info:
        store.put_bytes(b"payload")
    assert info.value.hint
    assert info.value.retryable


def test_local_root_that_is_a_file_raises_store_unavailable(tmp_path: Path) -> None:
    """A local root that cannot be created as a folder raises StoreUnavailable."""
    # Arrange
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")

    # Act / Assert
    with pytest.raises(StoreUnavailable, match="not-a-folder") as info:
        FsspecArtifactStore(blocker / "artifacts")
    assert info.value.field == "store.artifacts_url"


@pytest.mark.s3
def test_missing_s3_bucket_raises_store_unavailable(s3_server: S3Server) -> None:
    """Writing to a bucket that does not exist raises StoreUnavailable with a bucket hint."""
    # Arrange
    store = FsspecArtifactStore(
        "s3://no-such-bucket/prefix", storage_options=s3_server.storage_options()
    )

    # Act / Assert
    with pytest.raises(StoreUnavailable, match="no-such-bucket") as info:
        store.put_bytes(b"payload")
    assert "bucket" in (info.value.hint or "")
