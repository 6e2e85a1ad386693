"""Content-addressed artifact store (sha256) on any fsspec filesystem."""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import uuid
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import fsspec
from fsspec.core import split_protocol

from fedloop.core.clock import utc_now
from fedloop.core.errors import (
    ArtifactCorrupt,
    ArtifactMissing,
    ConfigError,
    FedloopError,
    InvalidInput,
    StoreUnavailable,
)
from fedloop.core.extras import require

__all__ = ["ArtifactRef", "ArtifactStore", "FsspecArtifactStore", "GcReport"]

_FIELD = "store.artifacts_url"
_CHUNK_BYTES = 1 << 20
_DIGEST_RE = re.compile(r"[0-9a-f]{64}")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]+:")  # two letters or more: not a drive
_RESTORE_HINT = "Re-upload the artifact or restore it from backup."
# Backends whose single PUT of known bytes is atomic, so put_bytes may write in place.
_ATOMIC_PUT = frozenset({"memory", "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})
# Client libraries whose exceptions mean "the backend could not be reached", not a bug.
_BACKEND_MODULES = ("botocore.", "aiobotocore.", "aiohttp.", "urllib3.", "requests.", "google.")
# Where backends put an object's modification time in fsspec's info(), most specific first:
# local "mtime" (float; its "created" is st_ctime, which os.utime moves), s3fs "LastModified"
# (datetime), gcsfs "updated" (ISO text), memory "created" (float from find, datetime from info).
_MTIME_KEYS = ("mtime", "LastModified", "last_modified", "updated", "created")
# At most this many digests are listed in a GcReport; the counts are always complete.
_GC_LISTED_DIGESTS_MAX = 1000


class _Reader(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


@dataclass(frozen=True, slots=True)
class ArtifactRef:
    """Reference to stored bytes.

    Parameters
    ----------
    digest : str
        sha256 of the bytes, 64 lowercase hex characters.
    size_bytes : int
        Length of the bytes.
    uri : str
        fsspec URL of the object (``file://…``, ``memory://…``, ``s3://…``).
    """

    digest: str
    size_bytes: int
    uri: str


@dataclass(frozen=True, slots=True)
class GcReport:
    """What a garbage collection of the artifact store removed (or, in a dry run, would remove).

    Parameters
    ----------
    blobs_deleted : int
        Unreferenced objects old enough to go.
    bytes_freed : int
        Their bytes plus those of the swept ``tmp/`` leftovers.
    tmp_deleted : int
        Leftover partial writes under ``tmp/`` old enough to go.
    kept_referenced : int
        Objects kept because a record refers to them.
    kept_young : int
        Unreferenced objects and ``tmp/`` files kept because they are younger than
        ``min_age_s`` (or their age cannot be read): writes that may not have committed yet.
    dry_run : bool
        True when nothing was deleted.
    digests : tuple of str
        Digests of the deleted objects, sorted, at most 1000 of them (the counts are complete).
    """

    blobs_deleted: int
    bytes_freed: int
    tmp_deleted: int
    kept_referenced: int
    kept_young: int
    dry_run: bool
    digests: tuple[str, ...]


@runtime_checkable
class ArtifactStore(Protocol):
    """Content-addressed store of immutable bytes, checked against their sha256 on read.

    Every method that takes a digest raises :class:`InvalidInput` when it is not 64 lowercase
    hex characters, and every method raises :class:`StoreUnavailable` when the backend
    cannot be reached. Reads raise :class:`ArtifactMissing` when the object is gone and
    :class:`ArtifactCorrupt` when its bytes no longer hash to the digest.
    """

    def put_bytes(self, data: bytes) -> ArtifactRef:
        """Store ``data`` under its sha256 (a no-op when present) and return its reference."""

    def put_file(self, source: str | os.PathLike[str] | _Reader) -> ArtifactRef:
        """Stream a local file path or binary reader into the store; return its reference."""

    def get_bytes(self, digest: str) -> bytes:
        """Return the verified bytes of ``digest``."""

    def get_file(self, digest: str, dest_path: str | os.PathLike[str]) -> None:
        """Stream the verified bytes of ``digest`` to the local file ``dest_path``."""

    def exists(self, digest: str) -> bool:
        """Return whether an object is stored for ``digest``."""

    def size(self, digest: str) -> int:
        """Return the stored size of ``digest`` in bytes."""

    def delete(self, digest: str) -> bool:
        """Remove ``digest``; return whether there was an object to remove."""

    def uri_for(self, digest: str) -> str:
        """Return the URL where ``digest`` is, or would be, stored."""

    def list_digests(self) -> Iterator[str]:
        """Yield the digests of all stored objects."""

    def sweep(
        self,
        keep: Collection[str],
        *,
        min_age_s: float,
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> GcReport:
        """Delete objects not in ``keep`` and ``tmp/`` leftovers older than ``min_age_s``."""


def _validate_digest(digest: object) -> str:
    if not isinstance(digest, str) or _DIGEST_RE.fullmatch(digest) is None:
        raise InvalidInput(
            f"an artifact digest must be 64 lowercase hex characters (sha256); got {digest!r}.",
            field="digest",
            value=digest,
            hint="Pass ArtifactRef.digest as returned by put_bytes or put_file.",
        )
    return digest


def _is_backend_error(err: BaseException) -> bool:
    if isinstance(err, OSError):
        return True
    return any(c.__module__.startswith(_BACKEND_MODULES) for c in type(err).__mro__)


def _modified_at(info: Mapping[str, Any]) -> float | None:
    """Return the modification time in an fsspec ``info()`` as epoch seconds, or None."""
    for key in _MTIME_KEYS:
        value = info.get(key)
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
        if isinstance(value, datetime):
            return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def _validate_min_age(min_age_s: object) -> float:
    if (
        isinstance(min_age_s, bool)
        or not isinstance(min_age_s, (int, float))
        or not math.isfinite(min_age_s)
        or min_age_s < 0
    ):
        raise InvalidInput(
            f"`min_age_s` must be a finite number of seconds >= 0; got {min_age_s!r}.",
            field="min_age_s",
            value=min_age_s,
            hint="Pass the age below which objects are kept, e.g. 3600 (one hour).",
        )
    return float(min_age_s)


def _config_error(message: str, value: object, hint: str) -> ConfigError:
    return ConfigError(
        f"`{_FIELD}` {message}; got {value!r}.", field=_FIELD, value=value, hint=hint
    )


class FsspecArtifactStore:
    """:class:`ArtifactStore` on an fsspec filesystem, laid out as ``<root>/sha256/<ab>/<ab…>``.

    Writes go to ``<root>/tmp/`` and are moved into place once complete (object stores
    with an atomic PUT take known bytes in place), so the final path never holds a partial
    object. Reads recompute the sha256.

    Parameters
    ----------
    url : str or os.PathLike
        A local folder or ``file://`` URL, ``memory://prefix``, or any fsspec URL such as
        ``s3://bucket/prefix`` (needs the ``s3`` extra).
    storage_options : Mapping or None, default None
        Keyword arguments for the fsspec filesystem, e.g.
        ``{"key": …, "secret": …, "client_kwargs": {"endpoint_url": …}}``.

    Raises
    ------
    ConfigError
        When the URL is empty or malformed, or its protocol or storage options are unknown.
    MissingExtraError
        When the URL is ``s3://`` and ``s3fs`` is not installed.
    StoreUnavailable
        When a local root folder cannot be created.

    Examples
    --------
    >>> store = FsspecArtifactStore("memory://docs-example")
    >>> ref = store.put_bytes(b"weights")
    >>> store.get_bytes(ref.digest)
    b'weights'
    """

    def __init__(
        self, url: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None
    ) -> None:
        text = os.fspath(url) if isinstance(url, (str, os.PathLike)) else None
        if not text or not isinstance(text, str):
            raise _config_error("must be a non-empty path or URL", url, "Use a folder or URL.")
        protocol, _ = split_protocol(text)
        if protocol is None and _SCHEME_RE.match(text):
            raise _config_error("looks like a URL without '://'", text, "Use s3://bucket/prefix.")
        protocol = protocol or "file"
        if protocol in ("s3", "s3a"):
            require("s3", feature="S3 artifact store")
        try:
            fs_class = fsspec.get_filesystem_class(protocol)
            fs = fs_class(**dict(storage_options or {}))
        except (ValueError, TypeError, ImportError) as err:
            raise _config_error(
                f"cannot be opened ({err})", text, "Use file://, memory:// or s3://bucket/prefix."
            ) from err
        self._local = protocol in ("file", "local")
        self._root = str(fs_class._strip_protocol(text)).rstrip("/")
        if not self._root and not (self._local or protocol == "memory"):
            raise _config_error(f"needs a location after {protocol}://", text, "Add a bucket.")
        self._fs: Any = fs
        self._url = text
        self._atomic_put = protocol in _ATOMIC_PUT
        if self._local:
            with self._backend("create the store folders"):
                fs.makedirs(f"{self._root}/tmp", exist_ok=True)
                fs.makedirs(f"{self._root}/sha256", exist_ok=True)

    @property
    def fs(self) -> Any:
        """fsspec.AbstractFileSystem: the underlying filesystem, for tools and tests."""
        return self._fs

    def __repr__(self) -> str:
        return f"FsspecArtifactStore({self._url!r})"

    def _path(self, digest: str) -> str:
        return f"{self._root}/sha256/{digest[:2]}/{digest}"

    @contextmanager
    def _backend(self, action: str, *, digest: str | None = None) -> Iterator[None]:
        """Translate filesystem and client errors into the fedloop error tree."""
        try:
            yield
        except FedloopError:
            raise
        except Exception as err:
            if not _is_backend_error(err):
                raise
            if isinstance(err, FileNotFoundError) and digest is not None:
                raise ArtifactMissing(
                    f"artifact {digest} is not in the artifact store at {self._url}.",
                    field="digest",
                    value=digest,
                    hint=_RESTORE_HINT,
                ) from err
            hint = "Check that the store is reachable (endpoint, credentials); retry."
            if isinstance(err, (FileNotFoundError, PermissionError)):
                hint = "Check that the bucket or folder exists and that you may write there."
            raise StoreUnavailable(
                f"could not {action} in the artifact store at {self._url}: "
                f"{type(err).__name__}: {err}.",
                field=_FIELD,
                value=self._url,
                hint=hint,
            ) from err

    def _ref(self, digest: str, size_bytes: int) -> ArtifactRef:
        return ArtifactRef(digest=digest, size_bytes=size_bytes, uri=self.uri_for(digest))

    def _discard(self, tmp: str) -> None:
        try:
            self._fs.rm_file(tmp)
        except Exception as err:  # best effort: a leftover under tmp/ is never visible
            if not _is_backend_error(err):
                raise

    def _write_tmp(self, reader: _Reader) -> tuple[str, str, int]:
        """Copy ``reader`` to a fresh name under tmp/; return (tmp path, digest, size)."""
        tmp = f"{self._root}/tmp/{uuid.uuid4().hex}"
        hasher, size_bytes = hashlib.sha256(), 0
        with self._backend("start writing an artifact"):
            out = self._fs.open(tmp, "wb")
        try:
            # Reader errors propagate unchanged; only the writes are backend errors.
            while chunk := reader.read(_CHUNK_BYTES):
                hasher.update(chunk)
                size_bytes += len(chunk)
                with self._backend("write an artifact"):
                    out.write(chunk)
            with self._backend("write an artifact"):
                if self._local:
                    out.flush()
                    os.fsync(out.fileno())  # durable before the rename makes it visible
                out.close()
        except BaseException:
            with suppress(Exception):
                out.close()
            self._discard(tmp)
            raise
        return tmp, hasher.hexdigest(), size_bytes

    def _publish(self, tmp: str, digest: str) -> None:
        """Move a complete tmp object into place, or drop it when the content is stored."""
        if self.exists(digest):
            self._discard(tmp)
            return
        final = self._path(digest)
        with self._backend("store an artifact"):
            if self._local:
                self._fs.makedirs(final.rpartition("/")[0], exist_ok=True)
            self._fs.mv(tmp, final)

    def put_bytes(self, data: bytes) -> ArtifactRef:
        """Store ``data`` under its sha256 and return its reference; a no-op when present."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidInput(f"put_bytes needs bytes; got {type(data).__name__}.", field="data")
        data = bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        if not self.exists(digest):
            if self._atomic_put:
                with self._backend("store an artifact"):
                    self._fs.pipe_file(self._path(digest), data)
            else:
                self._publish(self._write_tmp(io.BytesIO(data))[0], digest)
        return self._ref(digest, len(data))

    def put_file(self, source: str | os.PathLike[str] | _Reader) -> ArtifactRef:
        """Stream a file into the store in 1 MiB chunks, hashing while it copies.

        Parameters
        ----------
        source : str, os.PathLike or binary reader
            A local file path, or an object with ``read(size) -> bytes``; errors it
            raises propagate unchanged and leave nothing visible in the store.

        Returns
        -------
        ArtifactRef
            Digest, size and URL of the stored object.

        Raises
        ------
        InvalidInput
            When ``source`` is a path that is not an existing file.
        """
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.is_file():
                raise InvalidInput(
                    f"put_file needs an existing file; got {str(path)!r}.",
                    field="source",
                    value=str(path),
                    hint="Check the path.",
                )
            with path.open("rb") as reader:
                tmp, digest, size_bytes = self._write_tmp(reader)
        else:
            tmp, digest, size_bytes = self._write_tmp(source)
        self._publish(tmp, digest)
        return self._ref(digest, size_bytes)

    def _corrupt(self, digest: str, got: str) -> ArtifactCorrupt:
        return ArtifactCorrupt(
            f"artifact {digest} at {self.uri_for(digest)} is corrupt: "
            f"expected sha256 {digest}, got {got}.",
            field="digest",
            value=digest,
            hint=_RESTORE_HINT,
        )

    def get_bytes(self, digest: str) -> bytes:
        """Return the bytes of ``digest`` after checking their sha256."""
        _validate_digest(digest)
        with self._backend("read an artifact", digest=digest):
            data: bytes = self._fs.cat_file(self._path(digest))
        if (got := hashlib.sha256(data).hexdigest()) != digest:
            raise self._corrupt(digest, got)
        return data

    def get_file(self, digest: str, dest_path: str | os.PathLike[str]) -> None:
        """Stream ``digest`` to ``dest_path``, which appears only once its sha256 checks out.

        Parameters
        ----------
        digest : str
            sha256 of the content, 64 lowercase hex characters.
        dest_path : str or os.PathLike
            Local file to create or replace; its folder must exist. It is left untouched
            when the object is missing or corrupt.
        """
        _validate_digest(digest)
        dest = Path(dest_path)
        part = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        hasher = hashlib.sha256()
        try:
            with self._backend("read an artifact", digest=digest):
                src = self._fs.open(self._path(digest), "rb")
            with src, part.open("wb") as out:
                while True:
                    with self._backend("read an artifact", digest=digest):
                        chunk = src.read(_CHUNK_BYTES)
                    if not chunk:
                        break
                    hasher.update(chunk)
                    out.write(chunk)
            if (got := hasher.hexdigest()) != digest:
                raise self._corrupt(digest, got)
            os.replace(part, dest)
        finally:
            part.unlink(missing_ok=True)

    def exists(self, digest: str) -> bool:
        """Return whether an object is stored for ``digest``, without verifying it."""
        _validate_digest(digest)
        try:
            with self._backend("look up an artifact", digest=digest):
                info = self._fs.info(self._path(digest))
        except ArtifactMissing:
            return False
        return bool(info.get("type") == "file")

    def size(self, digest: str) -> int:
        """Return the stored size of ``digest`` in bytes (``ArtifactMissing`` if absent)."""
        _validate_digest(digest)
        with self._backend("look up an artifact", digest=digest):
            return int(self._fs.info(self._path(digest))["size"])

    def delete(self, digest: str) -> bool:
        """Remove the object of ``digest`` (garbage collection); return whether there was one."""
        if not self.exists(digest):
            return False
        try:
            with self._backend("delete an artifact", digest=digest):
                self._fs.rm_file(self._path(digest))
        except ArtifactMissing:  # a concurrent collector got there first
            return False
        return True

    def uri_for(self, digest: str) -> str:
        """Return the fsspec URL where ``digest`` is, or would be, stored."""
        return str(self._fs.unstrip_protocol(self._path(_validate_digest(digest))))

    def list_digests(self) -> Iterator[str]:
        """Yield the digests of all stored objects, sorted; unfinished writes are not listed."""
        with self._backend("list artifacts"):
            paths: list[str] = sorted(self._fs.find(f"{self._root}/sha256"))
            # Drop the listings cache (s3fs) so exists/size see other writers' later changes.
            self._fs.invalidate_cache(f"{self._root}/sha256")
        for path in paths:
            parent, _, name = path.rpartition("/")
            if _DIGEST_RE.fullmatch(name) and parent.endswith(f"sha256/{name[:2]}"):
                yield name

    def sweep(
        self,
        keep: Collection[str],
        *,
        min_age_s: float,
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> GcReport:
        """Delete unreferenced objects and leftover partial writes older than ``min_age_s``.

        A registration stores its artifacts before it commits the row that refers to them,
        so an object missing from ``keep`` may belong to a write still in flight:
        ``min_age_s`` keeps those. An object whose modification time the backend does not
        report is kept unless ``min_age_s`` is 0. Files under ``sha256/`` whose names are not
        digests in their shard are never touched.

        Parameters
        ----------
        keep : Collection[str]
            Digests that records refer to; these are never deleted.
        min_age_s : float
            Seconds since last modification below which nothing is deleted (>= 0).
        dry_run : bool, default False
            Report what would go, delete nothing.
        now : datetime or None, default None
            The time ages are measured from (aware); default the current time.

        Returns
        -------
        GcReport
            Counts, bytes and the (capped) list of deleted digests.

        Raises
        ------
        InvalidInput
            When ``min_age_s`` is negative or not a finite number.
        StoreUnavailable
            When the backend cannot be listed or an object cannot be deleted.
        """
        min_age = _validate_min_age(min_age_s)
        now_s = (now or utc_now()).timestamp()
        with self._backend("list artifacts"):
            blobs: dict[str, dict[str, Any]] = self._fs.find(f"{self._root}/sha256", detail=True)
            leftovers: dict[str, dict[str, Any]] = self._fs.find(f"{self._root}/tmp", detail=True)

        def old_enough(info: Mapping[str, Any]) -> bool:
            modified = _modified_at(info)
            return min_age == 0 if modified is None else now_s - modified >= min_age

        deleted: list[str] = []
        bytes_freed = kept_referenced = kept_young = tmp_deleted = 0
        for path, info in sorted(blobs.items()):
            parent, _, name = path.rpartition("/")
            if not (_DIGEST_RE.fullmatch(name) and parent.endswith(f"sha256/{name[:2]}")):
                continue
            if name in keep:
                kept_referenced += 1
            elif not old_enough(info):
                kept_young += 1
            elif dry_run or self._remove(path):
                deleted.append(name)
                bytes_freed += int(info.get("size") or 0)
        for path, info in sorted(leftovers.items()):
            if not old_enough(info):
                kept_young += 1
            elif dry_run or self._remove(path):
                tmp_deleted += 1
                bytes_freed += int(info.get("size") or 0)
        if not dry_run:
            self._fs.invalidate_cache(f"{self._root}/sha256")
            self._fs.invalidate_cache(f"{self._root}/tmp")
        return GcReport(
            blobs_deleted=len(deleted),
            bytes_freed=bytes_freed,
            tmp_deleted=tmp_deleted,
            kept_referenced=kept_referenced,
            kept_young=kept_young,
            dry_run=dry_run,
            digests=tuple(deleted[:_GC_LISTED_DIGESTS_MAX]),
        )

    def _remove(self, path: str) -> bool:
        """Delete one file; return False when it was already gone (a concurrent collector)."""
        with self._backend("delete an artifact"):
            try:
                self._fs.rm_file(path)
            except FileNotFoundError:
                return False
        return True
