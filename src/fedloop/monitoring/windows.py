"""Profiles of served traffic over tumbling windows (by rows or by time), in bounded memory."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

from fedloop.core import InvalidInput
from fedloop.learn import (
    CategoricalSummary,
    DataProfile,
    NumericSummary,
    columns_from_tensors,
    merge_profiles,
    profile_like,
)

__all__ = ["ClosedWindow", "ProfileAccumulator", "WindowedProfiles", "columns_from_tensors"]

_Array = npt.NDArray[np.generic]
_Floats = npt.NDArray[np.float64]
_State = TypeVar("_State")


class ProfileAccumulator:
    """A profile on a reference's bins, updated batch by batch without keeping rows.

    Memory is ``O(bins x columns + sample_size)`` whatever the number of rows added: counts
    and moments merge exactly (as :func:`fedloop.learn.merge_profiles`), and the sample is a
    bottom-k reservoir (each row draws a uniform key; the ``sample_size`` smallest keys stay),
    which is a uniform sample without replacement of every row added.

    Parameters
    ----------
    reference : DataProfile
        The stored profile whose edges and column kinds are used.
    sample_size : int, default 2000
        Rows of the numeric columns kept as a sample (0: none).
    seed : int, default 0
        Seed of the sample's keys.

    Raises
    ------
    InvalidInput
        When ``reference`` is not a DataProfile or ``sample_size`` is negative.

    Example
    -------
    >>> acc = ProfileAccumulator(reference)  # doctest: +SKIP
    >>> acc.add({"amount": amounts})  # doctest: +SKIP
    >>> current = acc.snapshot()  # doctest: +SKIP
    """

    def __init__(self, reference: DataProfile, *, sample_size: int = 2000, seed: int = 0) -> None:
        if not isinstance(reference, DataProfile):
            raise InvalidInput(
                f"`reference` must be a DataProfile; got {type(reference).__name__}.",
                field="reference",
            )
        _check_count("sample_size", sample_size, minimum=0)
        self._reference = reference
        self._sample_size = int(sample_size)
        self._numeric = [n for n, s in reference.columns.items() if isinstance(s, NumericSummary)]
        self._rng = np.random.default_rng(seed)
        self._profile = profile_like(reference, _empty_columns(reference), sample_size=0)
        self._keys: _Floats = np.empty(0, dtype=np.float64)
        self._sample: _Floats = np.empty((0, len(self._numeric)), dtype=np.float64)

    @property
    def rows(self) -> int:
        """Rows added so far."""
        return int(self._profile.num_rows)

    def add(self, columns: Mapping[str, npt.ArrayLike]) -> None:
        """Add a batch of rows.

        Parameters
        ----------
        columns : Mapping[str, array-like]
            Column name -> 1-D values; every reference column is needed.

        Raises
        ------
        InvalidInput
            As :func:`fedloop.learn.profile_like`; nothing is added then.
        """
        batch = profile_like(self._reference, columns, sample_size=0)
        self._profile = merge_profiles([self._profile, batch])
        if self._sample_size and self._numeric and batch.num_rows:
            self._update_sample(columns, batch.num_rows)

    def snapshot(self) -> DataProfile:
        """Return the profile of every row added so far.

        Returns
        -------
        DataProfile
            On the reference's edges; ``sample`` holds up to ``sample_size`` rows (None when
            ``sample_size`` is 0 or there is no numeric column).
        """
        sample = self._sample.copy() if self._sample_size and self._numeric else None
        return DataProfile(
            columns=self._profile.columns, num_rows=self._profile.num_rows, sample=sample
        )

    def _update_sample(self, columns: Mapping[str, npt.ArrayLike], rows: int) -> None:
        keys = self._rng.random(rows)
        if self._keys.size >= self._sample_size:
            # only rows whose key beats the current k-th smallest can enter
            candidates = np.flatnonzero(keys < self._keys.max())
        else:
            candidates = np.arange(rows)
        if candidates.size > self._sample_size:
            best = np.argpartition(keys[candidates], self._sample_size - 1)
            candidates = np.sort(candidates[best[: self._sample_size]])
        if candidates.size == 0:
            return
        block = np.empty((candidates.size, len(self._numeric)), dtype=np.float64)
        for j, name in enumerate(self._numeric):
            block[:, j] = np.asarray(columns[name], dtype=np.float64)[candidates]
        block[~np.isfinite(block)] = np.nan
        all_keys = np.concatenate([self._keys, keys[candidates]])
        all_rows = np.concatenate([self._sample, block], axis=0)
        if all_keys.size > self._sample_size:
            keep = np.argpartition(all_keys, self._sample_size - 1)[: self._sample_size]
            all_keys, all_rows = all_keys[keep], all_rows[keep]
        self._keys, self._sample = all_keys, all_rows


@dataclass(frozen=True, eq=False)
class ClosedWindow:
    """A window of traffic that is complete, with its profile.

    Attributes
    ----------
    start_time, end_time : float
        Epoch seconds: the window's bounds for time windows (``[start, end)``), the first and
        last row times for count windows.
    rows : int
        Rows in the window.
    profile : DataProfile
        The rows' profile on the reference's edges.
    late_rows : int
        Rows older than the window that were counted in it (time windows only).
    """

    start_time: float
    end_time: float
    rows: int
    profile: DataProfile
    late_rows: int = 0


class WindowedProfiles:
    """Tumbling windows over the payload log, by row count or by time, each profiled.

    Give exactly one of ``size_rows`` and ``length_s``. Count windows close when they hold
    ``size_rows`` rows (a batch that straddles the boundary is split exactly). Time windows
    are aligned to multiples of ``length_s`` (epoch seconds); rows are assigned by their own
    time, a window closes when a row of a later window arrives, and rows older than the open
    window go into it and are counted in ``late_rows``. Windows without rows are not emitted.

    Parameters
    ----------
    reference : DataProfile
        The stored profile whose edges and column kinds are used.
    size_rows : int or None, default None
        Rows per window (>= 1).
    length_s : float or None, default None
        Seconds per window (> 0).
    sample_size : int, default 2000
        Sample rows kept per window (0: none).
    seed : int, default 0
        Seed of the samples (window ``i`` uses ``seed + i``).

    Raises
    ------
    InvalidInput
        When both or neither of ``size_rows`` and ``length_s`` are given, or one is out of range.

    Example
    -------
    >>> windows = WindowedProfiles(reference, length_s=3600)  # doctest: +SKIP
    >>> for closed in windows.add(columns, times):  # doctest: +SKIP
    ...     check_drift(reference, closed.profile)
    """

    def __init__(
        self,
        reference: DataProfile,
        *,
        size_rows: int | None = None,
        length_s: float | None = None,
        sample_size: int = 2000,
        seed: int = 0,
    ) -> None:
        ProfileAccumulator(reference, sample_size=sample_size, seed=seed)  # validates both
        self._reference = reference

        def new(index: int) -> ProfileAccumulator:
            return ProfileAccumulator(reference, sample_size=sample_size, seed=seed + index)

        self._windows = _Tumbling(
            new, ProfileAccumulator.add, size_rows=size_rows, length_s=length_s
        )

    @property
    def late_rows(self) -> int:
        """Rows counted in a later window than their time's, in all windows so far."""
        return self._windows.late_total

    @property
    def open_rows(self) -> int:
        """Rows in the window that is still open."""
        return self._windows.rows

    def add(self, columns: Mapping[str, npt.ArrayLike], times: npt.ArrayLike) -> list[ClosedWindow]:
        """Add a batch of rows with their times; return the windows it closed, oldest first.

        Parameters
        ----------
        columns : Mapping[str, array-like]
            Column name -> 1-D values; every reference column is needed.
        times : array-like of float
            Epoch seconds per row (or one number for the whole batch).

        Returns
        -------
        list[ClosedWindow]
            Possibly empty.

        Raises
        ------
        InvalidInput
            When a column is missing or malformed or ``times`` is not finite or of another
            length; nothing is added then.
        """
        stamps = _check_times(times, _batch_rows(columns))
        batch = _check_batch(self._reference, columns, stamps.size)
        return [self._closed(span) for span in self._windows.add(batch, stamps)]

    def flush(self) -> ClosedWindow | None:
        """Close the open window now (e.g. at shutdown).

        Returns
        -------
        ClosedWindow or None
            None when the open window has no row.
        """
        span = self._windows.flush()
        return None if span is None else self._closed(span)

    @staticmethod
    def _closed(span: _Span[ProfileAccumulator]) -> ClosedWindow:
        return ClosedWindow(
            start_time=span.start_time,
            end_time=span.end_time,
            rows=span.rows,
            profile=span.state.snapshot(),
            late_rows=span.late_rows,
        )


def _check_count(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidInput(
            f"`{name}` must be an integer >= {minimum}; got {value!r}.", field=name, value=value
        )


def _positive_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    return math.isfinite(value) and float(value) > 0


def _empty_columns(reference: DataProfile) -> dict[str, _Array]:
    return {
        name: np.empty(0, dtype=object if isinstance(s, CategoricalSummary) else np.float64)
        for name, s in reference.columns.items()
    }


def _batch_rows(columns: Mapping[str, npt.ArrayLike]) -> int | None:
    """Return the length of the first column, if there is one, for a scalar ``times``."""
    if isinstance(columns, Mapping):
        for values in columns.values():
            shape = np.shape(values)
            return int(shape[0]) if shape else None
    return None


def _check_times(times: npt.ArrayLike, rows: int | None, field: str = "times") -> _Floats:
    """Return ``times`` as finite float64 epoch seconds, one per row."""
    try:
        stamps = np.asarray(times, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InvalidInput(
            f"`{field}` must be numbers (epoch seconds): {err}.", field=field
        ) from err
    if stamps.ndim == 0 and rows is not None:
        stamps = np.full(rows, float(stamps))
    if stamps.ndim != 1 or (rows is not None and stamps.size != rows):
        raise InvalidInput(
            f"`{field}` must be 1-D with one time per row ({rows}); got shape {stamps.shape}.",
            field=field,
        )
    if not np.isfinite(stamps).all():
        raise InvalidInput(f"`{field}` must be finite epoch seconds.", field=field)
    return stamps


def _check_batch(
    reference: DataProfile, columns: Mapping[str, npt.ArrayLike], rows: int
) -> dict[str, _Array]:
    """Check the reference's columns up front, so that no window half-takes a batch."""
    if not isinstance(columns, Mapping):
        raise InvalidInput(
            f"`columns` must be a mapping of name -> 1-D array; got {type(columns).__name__}.",
            field="columns",
        )
    batch: dict[str, _Array] = {}
    for name, summary in reference.columns.items():
        if name not in columns:
            raise InvalidInput(
                f"column {name!r} is missing.",
                field=f"columns.{name}",
                hint="Pass every column of the reference profile (extra columns are ignored).",
            )
        array = np.asarray(columns[name])
        if array.shape != (rows,):
            raise InvalidInput(
                f"column {name!r} must be 1-D with {rows} rows (one per time); got {array.shape}.",
                field=f"columns.{name}",
            )
        if isinstance(summary, NumericSummary) and array.dtype.kind not in "biuf":
            raise InvalidInput(
                f"column {name!r} is numeric in the reference; got dtype {array.dtype}.",
                field=f"columns.{name}",
            )
        batch[name] = array
    return batch


@dataclass(frozen=True)
class _Span(Generic[_State]):
    """A window that closed: its bounds, rows, late rows and accumulated state."""

    start_time: float
    end_time: float
    rows: int
    late_rows: int
    state: _State


class _Tumbling(Generic[_State]):
    """Splits batches of rows into tumbling windows by count or by aligned time.

    The state of each window (a profile, a performance accumulator) is made by ``new(i)``
    for the ``i``-th window and fed sub-batches by ``add(state, batch)``; a batch is a
    mapping of equal-length 1-D arrays the caller has already checked.
    """

    def __init__(
        self,
        new: Callable[[int], _State],
        add: Callable[[_State, Mapping[str, _Array]], None],
        *,
        size_rows: int | None,
        length_s: float | None,
    ) -> None:
        if (size_rows is None) == (length_s is None):
            raise InvalidInput(
                "give exactly one of `size_rows` and `length_s`.",
                field="size_rows" if size_rows is not None else "length_s",
                hint="Count windows: size_rows=100_000; time windows: length_s=3600.",
            )
        if size_rows is not None:
            _check_count("size_rows", size_rows, minimum=1)
        if length_s is not None and not _positive_number(length_s):
            raise InvalidInput(
                f"`length_s` must be a finite number of seconds > 0; got {length_s!r}.",
                field="length_s",
                value=length_s,
            )
        self._new, self._add = new, add
        self._size_rows, self._length_s = size_rows, length_s
        self._opened = 0
        self._state: _State | None = None
        self._window: float | None = None  # id of the open time window: floor(t / length_s)
        self.rows = 0
        self._late = 0
        self.late_total = 0
        self._first, self._last = math.inf, -math.inf

    def add(self, batch: Mapping[str, _Array], times: _Floats) -> list[_Span[_State]]:
        """Feed a checked batch; return the windows it closed."""
        if times.size == 0:
            return []
        if self._size_rows is not None:
            return self._add_by_count(batch, times, self._size_rows)
        assert self._length_s is not None  # one of the two is set (checked in __init__)
        return self._add_by_time(batch, times, self._length_s)

    def flush(self) -> _Span[_State] | None:
        """Close the open window, if it has rows."""
        if self._state is None:
            return None
        if self._window is None or self._length_s is None:
            return self._close(self._first, self._last)
        return self._close(self._window * self._length_s, (self._window + 1) * self._length_s)

    def _add_by_count(
        self, batch: Mapping[str, _Array], times: _Floats, size: int
    ) -> list[_Span[_State]]:
        closed: list[_Span[_State]] = []
        start = 0
        while start < times.size:
            stop = min(times.size, start + size - self.rows)
            self._feed(batch, slice(start, stop), times[start:stop])
            start = stop
            if self.rows == size:
                closed.append(self._close(self._first, self._last))
        return closed

    def _add_by_time(
        self, batch: Mapping[str, _Array], times: _Floats, length: float
    ) -> list[_Span[_State]]:
        ids = np.floor(times / length)
        if self._window is None:
            self._window = float(ids.min())
        late = ids < self._window
        if late.any():
            count = int(late.sum())
            self._late += count
            self.late_total += count
            ids = np.where(late, self._window, ids)
        if (ids == self._window).all():
            self._feed(batch, slice(None), times)
            return []
        closed: list[_Span[_State]] = []
        order = np.argsort(ids, kind="stable")  # rows grouped by window, in arrival order
        starts = np.flatnonzero(np.diff(ids[order])) + 1
        for rows in np.split(order, starts):
            window = float(ids[rows[0]])
            if window != self._window:
                if self._state is not None:
                    closed.append(self._close(self._window * length, (self._window + 1) * length))
                self._window = window
            self._feed(batch, rows, times[rows])
        return closed

    def _feed(
        self, batch: Mapping[str, _Array], rows: slice | npt.NDArray[np.intp], times: _Floats
    ) -> None:
        if self._state is None:
            self._state = self._new(self._opened)
            self._opened += 1
        self._add(self._state, {name: values[rows] for name, values in batch.items()})
        self.rows += times.size
        self._first = min(self._first, float(times.min()))
        self._last = max(self._last, float(times.max()))

    def _close(self, start: float, end: float) -> _Span[_State]:
        assert self._state is not None  # only called with an open window
        span = _Span(start, end, self.rows, self._late, self._state)
        self._state, self.rows, self._late = None, 0, 0
        self._first, self._last = math.inf, -math.inf
        return span
