"""Contract suite of ArtifactStore, run on a local folder, memory:// and S3 (moto)."""

from __future__ import annotations

import hashlib
import os
import sys
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
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
from fedloop.store.artifacts import (
    ArtifactRef,
    ArtifactStore,
    FsspecArtifactStore,
    GcReport,
    _modified_at,
)

MakeStore = Callable[[], FsspecArtifactStore]


class S3Server(Protocol):
    """What the ``s3_server`` fixture of conftest.py provides."""

    bucket: str

    def storage_options(self) -> dict[str, Any]:
        """Return the fsspec storage options that reach the server."""


NEVER_STORED = hashlib.sha256(b"never stored").hexdigest()
HOUR_S = 3600


def _in(hours: float) -> datetime:
    """Return the time ``hours`` from now: what a collector running then would see."""
    return datetime.now(UTC) + timedelta(hours=hours)


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


# -- garbage collection ----------------------------------------------------------------------


def test_sweep_deletes_old_unreferenced_object(make_artifact_store: MakeStore) -> None:
    """An object no one refers to, older than min_age_s, is deleted and reported."""
    # Arrange
    store = make_artifact_store()
    orphan = store.put_bytes(b"orphan upload")

    # Act
    report = store.sweep(set(), min_age_s=HOUR_S, now=_in(2))

    # Assert
    assert report == GcReport(
        blobs_deleted=1,
        bytes_freed=len(b"orphan upload"),
        tmp_deleted=0,
        kept_referenced=0,
        kept_young=0,
        dry_run=False,
        digests=(orphan.digest,),
    )
    assert not store.exists(orphan.digest)
    assert list(make_artifact_store().list_digests()) == []


def test_sweep_keeps_referenced_object(make_artifact_store: MakeStore) -> None:
    """An object in the keep-set stays however old it is; only the orphan goes."""
    # Arrange
    store = make_artifact_store()
    kept = store.put_bytes(b"registered weights")
    orphan = store.put_bytes(b"orphan")

    # Act
    report = store.sweep({kept.digest}, min_age_s=HOUR_S, now=_in(24))

    # Assert
    assert (report.blobs_deleted, report.kept_referenced, report.digests) == (
        1,
        1,
        (orphan.digest,),
    )
    assert store.get_bytes(kept.digest) == b"registered weights"
    assert list(store.list_digests()) == [kept.digest]


def test_sweep_keeps_young_object(make_artifact_store: MakeStore) -> None:
    """An unreferenced object younger than min_age_s (an upload not yet committed) stays."""
    # Arrange
    store = make_artifact_store()
    young = store.put_bytes(b"uploaded, row not committed yet")

    # Act
    report = store.sweep(set(), min_age_s=HOUR_S)

    # Assert
    assert (report.blobs_deleted, report.kept_young, report.digests) == (0, 1, ())
    assert store.exists(young.digest)


def test_sweep_removes_old_tmp_partial_and_keeps_young_one(make_artifact_store: MakeStore) -> None:
    """A crashed writer's leftover under tmp/ is swept once old; a fresh one stays."""
    # Arrange
    store = make_artifact_store()
    leftover = f"{_tmp_folder(store)}/{uuid.uuid4().hex}"
    store.fs.pipe_file(leftover, b"partial write")

    # Act
    young = store.sweep(set(), min_age_s=HOUR_S)
    old = store.sweep(set(), min_age_s=HOUR_S, now=_in(2))

    # Assert
    assert (young.tmp_deleted, young.kept_young) == (0, 1)
    assert (old.tmp_deleted, old.bytes_freed, old.blobs_deleted) == (1, len(b"partial write"), 0)
    assert store.fs.find(_tmp_folder(store)) == []


def test_sweep_dry_run_changes_nothing(make_artifact_store: MakeStore) -> None:
    """A dry run reports what would go, with its bytes, and deletes nothing."""
    # Arrange
    store = make_artifact_store()
    kept = store.put_bytes(b"kept")
    orphan = store.put_bytes(b"orphan bytes")
    leftover = f"{_tmp_folder(store)}/{uuid.uuid4().hex}"
    store.fs.pipe_file(leftover, b"partial")

    # Act
    report = store.sweep({kept.digest}, min_age_s=HOUR_S, dry_run=True, now=_in(2))

    # Assert
    assert report.dry_run
    assert (report.blobs_deleted, report.tmp_deleted, report.digests) == (1, 1, (orphan.digest,))
    assert report.bytes_freed == len(b"orphan bytes") + len(b"partial")
    assert sorted(store.list_digests()) == sorted([kept.digest, orphan.digest])
    assert store.fs.exists(leftover)


def test_sweep_counts_bytes_of_every_deleted_object(make_artifact_store: MakeStore) -> None:
    """bytes_freed is the sum of the deleted objects' sizes; digests are listed sorted."""
    # Arrange
    store = make_artifact_store()
    refs = [store.put_bytes(bytes([i]) * (100 * i)) for i in range(1, 5)]

    # Act
    report = store.sweep(set(), min_age_s=0)

    # Assert
    assert report.bytes_freed == sum(ref.size_bytes for ref in refs)
    assert report.digests == tuple(sorted(ref.digest for ref in refs))
    assert list(store.list_digests()) == []


def test_sweep_leaves_foreign_files_alone(make_artifact_store: MakeStore) -> None:
    """A file under sha256/ whose name is not a digest in its shard is never deleted."""
    # Arrange
    store = make_artifact_store()
    root = store.uri_for(NEVER_STORED).rsplit("/sha256/", 1)[0]
    foreign = f"{root}/sha256/ab/README"
    store.fs.makedirs(f"{root}/sha256/ab", exist_ok=True)
    store.fs.pipe_file(foreign, b"notes")

    # Act
    report = store.sweep(set(), min_age_s=0)

    # Assert
    assert report.blobs_deleted == 0
    assert store.fs.exists(foreign)


@pytest.mark.parametrize("min_age_s", [-1, float("nan"), float("inf"), True, "3600"])
def test_sweep_refuses_bad_min_age(make_artifact_store: MakeStore, min_age_s: object) -> None:
    """A negative or non-finite min_age_s raises InvalidInput naming it and deletes nothing."""
    # Arrange
    store = make_artifact_store()
    ref = store.put_bytes(b"orphan")

    # Act / Assert
    with pytest.raises(InvalidInput, match="min_age_s") as info:
        store.sweep(set(), min_age_s=min_age_s, now=_in(2))  # type: ignore[arg-type]
    assert info.value.field == "min_age_s"
    assert store.exists(ref.digest)


def test_sweep_local_reads_file_mtime(tmp_path: Path) -> None:
    """On a local folder the age is the file's mtime (not its ctime, which os.utime moves)."""
    # Arrange
    store = FsspecArtifactStore(tmp_path / "artifacts")
    old, young = store.put_bytes(b"old orphan"), store.put_bytes(b"young orphan")
    two_hours_ago = datetime.now(UTC).timestamp() - 2 * HOUR_S
    os.utime(store.uri_for(old.digest).removeprefix("file://"), (two_hours_ago, two_hours_ago))

    # Act
    report = store.sweep(set(), min_age_s=HOUR_S)

    # Assert
    assert (report.digests, report.kept_young) == ((old.digest,), 1)
    assert store.exists(young.digest)


def test_sweep_keeps_object_of_unknown_age_unless_min_age_is_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the backend reports no modification time, only min_age_s=0 deletes."""
    # Arrange
    store = FsspecArtifactStore(f"memory://fedloop-test-{uuid.uuid4().hex}")
    ref = store.put_bytes(b"orphan of unknown age")
    find = store.fs.find

    def find_without_times(path: str, **kwargs: Any) -> Any:
        found = find(path, **kwargs)
        return {
            p: {"name": i["name"], "size": i["size"], "type": i["type"]} for p, i in found.items()
        }

    monkeypatch.setattr(store.fs, "find", find_without_times)

    # Act
    cautious = store.sweep(set(), min_age_s=HOUR_S, now=_in(1000))
    eager = store.sweep(set(), min_age_s=0)

    # Assert
    assert (cautious.blobs_deleted, cautious.kept_young) == (0, 1)
    assert eager.digests == (ref.digest,)


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        pytest.param({"mtime": 1_700_000_000.5, "created": 1.0}, 1_700_000_000.5, id="local"),
        pytest.param(
            {"LastModified": datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)},
            1_700_000_000.0,
            id="s3-datetime",
        ),
        pytest.param({"created": datetime(2023, 11, 14, 22, 13, 20)}, 1_700_000_000.0, id="naive"),
        pytest.param({"updated": "2023-11-14T22:13:20Z"}, 1_700_000_000.0, id="iso-text"),
        pytest.param({"created": 1_700_000_000}, 1_700_000_000.0, id="memory-int"),
        pytest.param({"size": 3, "mtime": "yesterday"}, None, id="unparseable"),
        pytest.param({"size": 3}, None, id="absent"),
    ],
)
def test_modification_time_is_normalised(info: dict[str, Any], expected: float | None) -> None:
    """Every backend's way of reporting modification time becomes epoch seconds (or None)."""
    # Act / Assert
    assert _modified_at(info) == expected
