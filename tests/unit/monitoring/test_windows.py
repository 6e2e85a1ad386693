"""Windows over the payload log: accumulation, count and time windows, memory and tensors."""

from __future__ import annotations

import tracemalloc

import numpy as np
import numpy.typing as npt
import pytest

from fedloop.core import InvalidInput
from fedloop.learn import (
    CategoricalSummary,
    DataProfile,
    NumericSummary,
    merge_profiles,
    profile_columns,
    profile_like,
)
from fedloop.monitoring.windows import (
    ClosedWindow,
    ProfileAccumulator,
    WindowedProfiles,
    columns_from_tensors,
)

Columns = dict[str, npt.NDArray[np.generic]]


def _reference(seed: int = 0, rows: int = 5_000) -> DataProfile:
    rng = np.random.default_rng(seed)
    return profile_columns(
        {
            "a": rng.normal(size=rows),
            "b": rng.exponential(size=rows),
            "c": rng.choice(["x", "y"], rows),
        },
        categorical=["c"],
    )


def _batch(rng: np.random.Generator, rows: int) -> Columns:
    return {
        "a": rng.normal(size=rows),
        "b": rng.exponential(size=rows),
        "c": rng.choice(["x", "y", "z"], rows),
    }


def _assert_counts_equal(got: DataProfile, want: DataProfile) -> None:
    assert got.num_rows == want.num_rows
    for name, expected in want.columns.items():
        actual = got.columns[name]
        if isinstance(expected, NumericSummary):
            assert isinstance(actual, NumericSummary)
            np.testing.assert_array_equal(actual.counts, expected.counts)
            assert actual.mean == pytest.approx(expected.mean, rel=1e-9, abs=1e-12)
            assert actual.m2 == pytest.approx(expected.m2, rel=1e-9)
        else:
            assert isinstance(actual, CategoricalSummary)
            assert isinstance(expected, CategoricalSummary)
            assert actual.categories == expected.categories
            np.testing.assert_array_equal(actual.counts, expected.counts)


def _concat(batches: list[Columns]) -> Columns:
    return {name: np.concatenate([b[name] for b in batches]) for name in batches[0]}


def test_accumulator_equals_profile_of_all_rows() -> None:
    """Batches added one by one give the profile of all rows on the reference's edges."""
    # Arrange
    reference = _reference()
    rng = np.random.default_rng(1)
    batches = [_batch(rng, n) for n in (10, 0, 700, 3, 1200)]
    acc = ProfileAccumulator(reference, sample_size=100)

    # Act
    for batch in batches:
        acc.add(batch)

    # Assert
    assert acc.rows == 1913
    _assert_counts_equal(acc.snapshot(), profile_like(reference, _concat(batches)))


def test_accumulator_sample_is_bounded_rows_of_the_input() -> None:
    """The sample never exceeds sample_size and holds actual rows of the numeric columns."""
    # Arrange
    reference = _reference()
    acc = ProfileAccumulator(reference, sample_size=50, seed=4)
    rows = np.arange(3000.0)

    # Act
    for start in range(0, 3000, 300):
        chunk = rows[start : start + 300]
        acc.add({"a": chunk, "b": -chunk, "c": np.array(["x"] * chunk.size)})

    # Assert
    sample = acc.snapshot().sample
    assert sample is not None
    assert sample.shape == (50, 2)
    np.testing.assert_array_equal(sample[:, 1], -sample[:, 0])
    assert len(np.unique(sample[:, 0])) == 50


def test_accumulator_sample_is_uniform_over_batches() -> None:
    """Early and late batches are equally likely to be in the sample."""
    # Arrange
    reference = _reference()
    acc = ProfileAccumulator(reference, sample_size=1000, seed=5)

    # Act
    for start in range(0, 100_000, 10_000):
        chunk = np.arange(start, start + 10_000, dtype=np.float64)
        acc.add({"a": chunk, "b": chunk, "c": np.array(["x"] * chunk.size)})

    # Assert
    sample = acc.snapshot().sample
    assert sample is not None
    per_batch = np.bincount((sample[:, 0] // 10_000).astype(int), minlength=10)
    assert per_batch.min() > 60
    assert per_batch.max() < 140


def test_accumulator_without_sample() -> None:
    """sample_size=0 keeps no rows."""
    # Arrange
    acc = ProfileAccumulator(_reference(), sample_size=0)

    # Act
    acc.add(_batch(np.random.default_rng(0), 100))

    # Assert
    assert acc.snapshot().sample is None


def test_accumulator_refuses_bad_batch_without_changing() -> None:
    """A batch missing a column raises InvalidInput and adds nothing."""
    # Arrange
    acc = ProfileAccumulator(_reference())
    acc.add(_batch(np.random.default_rng(0), 10))

    # Act / Assert
    with pytest.raises(InvalidInput) as err:
        acc.add({"a": np.zeros(3), "c": np.array(["x"] * 3)})
    assert err.value.field == "columns.b"
    assert acc.rows == 10


def test_count_windows_split_batches_exactly() -> None:
    """Count windows hold exactly size_rows rows, batches straddling a boundary are split."""
    # Arrange
    reference = _reference()
    rng = np.random.default_rng(2)
    batches = [_batch(rng, 75) for _ in range(10)]
    windows = WindowedProfiles(reference, size_rows=100, sample_size=0)

    # Act
    closed: list[ClosedWindow] = []
    for i, batch in enumerate(batches):
        closed += windows.add(batch, np.arange(75.0) + 75 * i)
    last = windows.flush()

    # Assert
    rows = _concat(batches)
    assert [w.rows for w in closed] == [100] * 7
    assert last is not None
    assert last.rows == 50
    assert (last.start_time, last.end_time) == (700.0, 749.0)
    for i, window in enumerate(closed):
        part = {name: values[100 * i : 100 * (i + 1)] for name, values in rows.items()}
        _assert_counts_equal(window.profile, profile_like(reference, part))
        assert (window.start_time, window.end_time) == (100.0 * i, 100.0 * i + 99)
    assert windows.flush() is None


def test_count_windows_one_batch_closes_several() -> None:
    """A large batch closes as many windows as it fills and leaves the rest open."""
    # Arrange
    windows = WindowedProfiles(_reference(), size_rows=100, sample_size=0)

    # Act
    closed = windows.add(_batch(np.random.default_rng(3), 350), 0.0)

    # Assert
    assert [w.rows for w in closed] == [100, 100, 100]
    assert windows.open_rows == 50
    flushed = windows.flush()
    assert flushed is not None
    assert flushed.rows == 50


def test_time_windows_are_aligned_and_late_rows_counted() -> None:
    """Time windows align to multiples of length_s; older rows join the open window as late."""
    # Arrange
    windows = WindowedProfiles(_reference(), length_s=60.0, sample_size=0)
    rng = np.random.default_rng(4)

    # Act
    first = windows.add(_batch(rng, 4), np.array([130.0, 170.0, 125.0, 179.9]))
    second = windows.add(_batch(rng, 4), np.array([185.0, 100.0, 250.0, 245.0]))
    third = windows.add(_batch(rng, 2), np.array([110.0, 260.0]))
    last = windows.flush()

    # Assert
    assert first == []
    assert [(w.start_time, w.end_time, w.rows, w.late_rows) for w in second] == [
        (120.0, 180.0, 5, 1),
        (180.0, 240.0, 1, 0),
    ]
    assert second[0].profile.num_rows == 5
    assert third == []
    assert last is not None
    assert (last.start_time, last.end_time, last.rows, last.late_rows) == (240.0, 300.0, 4, 1)
    assert windows.late_rows == 2


def test_time_windows_skip_empty_windows() -> None:
    """A gap in traffic emits no empty window."""
    # Arrange
    windows = WindowedProfiles(_reference(), length_s=10.0, sample_size=0)
    rng = np.random.default_rng(5)

    # Act
    windows.add(_batch(rng, 2), np.array([1.0, 2.0]))
    closed = windows.add(_batch(rng, 2), np.array([95.0, 96.0]))

    # Assert
    assert [(w.start_time, w.rows) for w in closed] == [(0.0, 2)]
    assert windows.open_rows == 2


def test_windows_profiles_merge_into_the_whole() -> None:
    """Merging every window's profile gives the profile of all rows (windows are exact)."""
    # Arrange
    reference = _reference()
    rng = np.random.default_rng(6)
    batches = [_batch(rng, 333) for _ in range(9)]
    times = [np.sort(rng.uniform(100.0 * i, 100.0 * (i + 1), 333)) for i in range(9)]
    windows = WindowedProfiles(reference, length_s=37.0, sample_size=0)

    # Act
    closed = [w for b, t in zip(batches, times, strict=True) for w in windows.add(b, t)]
    flushed = windows.flush()
    assert flushed is not None
    merged = merge_profiles([w.profile for w in [*closed, flushed]])

    # Assert
    _assert_counts_equal(merged, profile_like(reference, _concat(batches)))


def test_million_row_window_memory_does_not_grow_with_rows() -> None:
    """A 1M-row window fed in chunks keeps its memory far below the rows' size."""
    # Arrange
    reference = _reference(rows=20_000)
    windows = WindowedProfiles(reference, size_rows=1_000_000, sample_size=2000)
    rng = np.random.default_rng(7)
    chunk_rows, chunks = 20_000, 50
    fed_bytes = chunk_rows * chunks * (8 + 8 + 4)

    # Act
    tracemalloc.start()
    try:
        for i in range(chunks):
            batch = {
                "a": rng.normal(size=chunk_rows),
                "b": rng.exponential(size=chunk_rows),
                "c": np.where(rng.random(chunk_rows) < 0.5, "x", "y"),
            }
            closed = windows.add(batch, np.full(chunk_rows, float(i)))
            del batch
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Assert
    assert [w.rows for w in closed] == [1_000_000]
    assert current < 1_000_000  # what is held: bins and a 2,000-row sample
    assert peak < fed_bytes / 10  # about one chunk's temporaries, not the rows


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({}, "length_s", id="neither"),
        pytest.param({"size_rows": 10, "length_s": 1.0}, "size_rows", id="both"),
        pytest.param({"size_rows": 0}, "size_rows", id="zero-rows"),
        pytest.param({"length_s": -1.0}, "length_s", id="negative-length"),
        pytest.param({"length_s": float("nan")}, "length_s", id="nan-length"),
        pytest.param({"size_rows": 10, "sample_size": -1}, "sample_size", id="sample-size"),
    ],
)
def test_windowed_profiles_refuses_bad_options(kwargs: dict[str, object], field: str) -> None:
    """Window options out of range raise InvalidInput naming the option."""
    # Act / Assert
    with pytest.raises(InvalidInput) as err:
        WindowedProfiles(_reference(), **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


@pytest.mark.parametrize(
    ("columns", "times", "field"),
    [
        pytest.param({"a": np.zeros(2), "b": np.zeros(2)}, [1.0, 2.0], "columns.c", id="missing"),
        pytest.param(
            {"a": np.zeros(2), "b": np.zeros(3), "c": np.array(["x", "y"])},
            [1.0, 2.0],
            "columns.b",
            id="length",
        ),
        pytest.param(
            {"a": np.array(["p", "q"]), "b": np.zeros(2), "c": np.array(["x", "y"])},
            [1.0, 2.0],
            "columns.a",
            id="not-numeric",
        ),
        pytest.param(
            {"a": np.zeros(2), "b": np.zeros(2), "c": np.array(["x", "y"])},
            [1.0, np.nan],
            "times",
            id="nan-time",
        ),
        pytest.param(
            {"a": np.zeros(2), "b": np.zeros(2), "c": np.array(["x", "y"])},
            [1.0],
            "times",
            id="times-length",
        ),
    ],
)
def test_windowed_profiles_refuses_bad_batches_before_any_change(
    columns: Columns, times: list[float], field: str
) -> None:
    """A malformed batch raises InvalidInput naming the field and leaves the window as it was."""
    # Arrange
    windows = WindowedProfiles(_reference(), size_rows=3, sample_size=0)
    windows.add(_batch(np.random.default_rng(0), 2), [0.0, 0.0])

    # Act / Assert
    with pytest.raises(InvalidInput) as err:
        windows.add(columns, times)
    assert err.value.field == field
    assert windows.open_rows == 2


def test_columns_from_tensors_names_columns() -> None:
    """1-D and (n, 1) tensors keep their name; (n, d) tensors become name[j]."""
    # Arrange
    tensors = {
        "features": np.arange(12.0).reshape(4, 3),
        "score": np.zeros((4, 1)),
        "id": np.arange(4),
    }

    # Act
    columns = columns_from_tensors(tensors)

    # Assert
    assert list(columns) == ["features[0]", "features[1]", "features[2]", "score", "id"]
    np.testing.assert_array_equal(columns["features[1]"], [1.0, 4.0, 7.0, 10.0])
    assert columns["score"].shape == (4,)


@pytest.mark.parametrize(
    ("tensors", "field"),
    [
        pytest.param({"image": np.zeros((2, 3, 3))}, "tensors.image", id="rank-3"),
        pytest.param({"scalar": np.float64(1.0)}, "tensors.scalar", id="rank-0"),
        pytest.param({"a": np.zeros(3), "b": np.zeros(2)}, "tensors", id="rows"),
        pytest.param({"x[0]": np.zeros(2), "x": np.zeros((2, 2))}, "tensors.x", id="clash"),
    ],
)
def test_columns_from_tensors_refuses_other_shapes(
    tensors: dict[str, npt.NDArray[np.generic]], field: str
) -> None:
    """Tensors that do not map to columns raise InvalidInput naming the tensor."""
    # Act / Assert
    with pytest.raises(InvalidInput) as err:
        columns_from_tensors(tensors)
    assert err.value.field == field
