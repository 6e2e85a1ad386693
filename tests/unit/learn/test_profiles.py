"""Data profiles: binning, moments, merging, federated edges, tensors and bytes, and errors."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedloop.core import InvalidInput, decode_parameters, encode_parameters
from fedloop.learn import (
    CategoricalSummary,
    DataProfile,
    NumericSummary,
    decode_profile,
    edges_from_sketches,
    encode_profile,
    merge_profiles,
    profile_columns,
    profile_from_arrays,
    profile_like,
    profile_to_arrays,
    quantile_sketch,
)

Floats = npt.NDArray[np.float64]

#: Values where moments stay well conditioned (no overflow of squares).
FINITE = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)
#: Values a payload log may hold, missing ones included.
WITH_MISSING = st.one_of(FINITE, st.sampled_from([math.nan, math.inf, -math.inf]))


def _searchsorted_counts(edges: Floats, values: Floats) -> npt.NDArray[np.int64]:
    finite = values[np.isfinite(values)]
    return np.bincount(np.searchsorted(edges, finite, side="left"), minlength=edges.size + 1)


def _numeric(profile: DataProfile, name: str) -> NumericSummary:
    summary = profile.columns[name]
    assert isinstance(summary, NumericSummary)
    return summary


def _categorical(profile: DataProfile, name: str) -> CategoricalSummary:
    summary = profile.columns[name]
    assert isinstance(summary, CategoricalSummary)
    return summary


def _assert_same_profile(got: DataProfile, want: DataProfile, *, rel: float = 0.0) -> None:
    assert list(got.columns) == list(want.columns)
    assert got.num_rows == want.num_rows
    for name, expected in want.columns.items():
        actual = got.columns[name]
        assert type(actual) is type(expected)
        if isinstance(expected, NumericSummary) and isinstance(actual, NumericSummary):
            np.testing.assert_array_equal(actual.edges, expected.edges)
            np.testing.assert_array_equal(actual.counts, expected.counts)
            assert (actual.count, actual.missing) == (expected.count, expected.missing)
            assert (actual.minimum, actual.maximum) == (expected.minimum, expected.maximum)
            scale = 1.0 + expected.count * max(abs(expected.minimum), abs(expected.maximum), 0) ** 2
            assert actual.mean == pytest.approx(expected.mean, rel=rel, abs=rel * math.sqrt(scale))
            assert actual.m2 == pytest.approx(expected.m2, rel=rel, abs=rel * scale)
        elif isinstance(expected, CategoricalSummary) and isinstance(actual, CategoricalSummary):
            assert actual.categories == expected.categories
            np.testing.assert_array_equal(actual.counts, expected.counts)
            assert actual.missing == expected.missing


DISTRIBUTIONS: list[object] = [
    pytest.param(lambda rng, n: rng.normal(size=n), id="normal"),
    pytest.param(lambda rng, n: rng.lognormal(sigma=2.0, size=n), id="lognormal"),
    pytest.param(lambda rng, n: rng.pareto(0.5, size=n), id="heavy-tail"),
    pytest.param(lambda rng, n: rng.integers(0, 7, size=n).astype(float), id="discrete"),
    pytest.param(lambda rng, n: 1e9 + rng.normal(scale=1e-6, size=n), id="narrow"),
    pytest.param(
        lambda rng, n: np.where(rng.random(n) < 0.05, np.nan, rng.normal(size=n)), id="missing"
    ),
]


@pytest.mark.parametrize("draw", DISTRIBUTIONS)
def test_profile_like_counts_equal_searchsorted(
    draw: Callable[[np.random.Generator, int], Floats],
) -> None:
    """Binning on reference edges equals np.searchsorted on every kind of data."""
    # Arrange
    rng = np.random.default_rng(0)
    reference = profile_columns({"x": draw(rng, 20_000)})
    current = np.concatenate([draw(rng, 30_000) * 1.5, [-1e308, 1e308, 0.0]])

    # Act
    profile = profile_like(reference, {"x": current})

    # Assert
    summary = _numeric(profile, "x")
    np.testing.assert_array_equal(summary.counts, _searchsorted_counts(summary.edges, current))


@settings(max_examples=150, deadline=None)
@given(
    edges=st.lists(FINITE, min_size=2, max_size=6, unique=True).map(sorted),
    picks=st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=30),
    noise=st.lists(WITH_MISSING, max_size=30),
)
@example(edges=[0.0, 1.1125369292536007e-308], picks=[0], noise=[])  # a subnormal span
def test_bin_counts_equal_searchsorted_on_edge_values(
    edges: list[float], picks: list[int], noise: list[float]
) -> None:
    """Values equal to an edge fall in the lower bin, on the fast path as on the slow one."""
    # Arrange
    cut = np.array(edges)
    # repeated to 800 rows: enough for the lookup path (4 x 16 cells per bin)
    values = np.resize(np.r_[cut[np.array(picks) % cut.size], noise], 800)
    reference = profile_columns({"x": np.zeros(1)}, edges={"x": cut})

    # Act
    summary = _numeric(profile_like(reference, {"x": values}), "x")

    # Assert
    np.testing.assert_array_equal(summary.counts, _searchsorted_counts(cut, values))


def test_profile_columns_moments_and_missing() -> None:
    """Moments cover the finite values; NaN and infinities count as missing."""
    # Arrange
    values = np.array([1.0, 2.0, np.nan, 4.0, np.inf, -np.inf, 8.0])
    finite = values[np.isfinite(values)]

    # Act
    summary = _numeric(profile_columns({"x": values}), "x")

    # Assert
    assert (summary.count, summary.missing) == (4, 3)
    assert summary.mean == pytest.approx(finite.mean())
    assert summary.m2 / summary.count == pytest.approx(finite.var())
    assert (summary.minimum, summary.maximum) == (1.0, 8.0)
    assert summary.counts.sum() == summary.count


def test_profile_columns_quantile_edges() -> None:
    """Edges are the data values at the quantiles k / num_bins, so bins hold equal shares."""
    # Arrange
    values = np.arange(10_000, dtype=np.float64)

    # Act
    summary = _numeric(profile_columns({"x": values}, num_bins=20), "x")

    # Assert
    np.testing.assert_array_equal(summary.edges, np.arange(499.0, 9500.0, 500.0))
    assert summary.counts.tolist() == [500] * 20


@pytest.mark.parametrize(
    ("values", "max_edges"),
    [
        pytest.param(np.r_[np.zeros(900), np.ones(100)], 2, id="binary"),
        pytest.param(np.full(500, 3.0), 1, id="constant"),
        pytest.param(np.arange(55, dtype=np.float64), 4, id="small-reference"),
    ],
)
def test_profile_columns_fewer_bins_when_data_is_poor(values: Floats, max_edges: int) -> None:
    """Few distinct values or few rows give fewer bins, but at least two."""
    # Act
    summary = _numeric(profile_columns({"x": values}), "x")

    # Assert
    assert 1 <= summary.edges.size <= max_edges
    assert np.all(np.diff(summary.edges) > 0)


def test_profile_columns_categorical_counts() -> None:
    """Categorical values are counted per str(value), sorted; None and NaN are missing."""
    # Arrange
    values = np.array(["b", 1, None, "a", 1, math.nan, "b", "b"], dtype=object)

    # Act
    summary = _categorical(profile_columns({"c": values}, categorical=["c"]), "c")

    # Assert
    assert summary.categories == ("1", "a", "b")
    assert summary.counts.tolist() == [2, 1, 3]
    assert summary.missing == 2


def test_profile_columns_sample_is_seeded_rows() -> None:
    """The sample holds distinct rows of the numeric columns and depends only on the seed."""
    # Arrange
    columns = {"a": np.arange(1000.0), "c": np.array(["x"] * 1000), "b": -np.arange(1000.0)}

    # Act
    first = profile_columns(columns, categorical=["c"], sample_size=50, seed=3)
    again = profile_columns(columns, categorical=["c"], sample_size=50, seed=3)

    # Assert
    assert first.sample is not None
    assert again.sample is not None
    assert first.sample.shape == (50, 2)
    np.testing.assert_array_equal(first.sample, again.sample)
    np.testing.assert_array_equal(first.sample[:, 1], -first.sample[:, 0])
    assert len(np.unique(first.sample[:, 0])) == 50


def test_profile_columns_refuses_unlisted_text_column() -> None:
    """A text column must be listed in categorical."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=r"categorical") as err:
        profile_columns({"x": np.arange(3.0), "country": np.array(["de", "fr", "it"])})
    assert err.value.field == "columns.country"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"num_bins": 1}, "num_bins", id="num-bins"),
        pytest.param({"sample_size": -1}, "sample_size", id="sample-size"),
        pytest.param({"categorical": ["nope"]}, "categorical", id="categorical"),
        pytest.param({"edges": {"x": [2.0, 1.0]}}, "edges.x", id="edges-order"),
        pytest.param({"edges": {"y": [1.0]}}, "edges.y", id="edges-column"),
    ],
)
def test_profile_columns_refuses_bad_arguments(kwargs: dict[str, object], field: str) -> None:
    """Out-of-range arguments raise InvalidInput naming the argument."""
    # Act / Assert
    with pytest.raises(InvalidInput) as err:
        profile_columns({"x": np.arange(10.0)}, **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field


def test_profile_columns_refuses_ragged_columns() -> None:
    """Columns of different lengths are refused."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=r"length") as err:
        profile_columns({"x": np.arange(10.0), "y": np.arange(9.0)})
    assert err.value.field == "columns"


def test_profile_like_keeps_reference_kinds_and_order() -> None:
    """profile_like reuses the reference's edges and kinds and ignores extra columns."""
    # Arrange
    rng = np.random.default_rng(1)
    reference = profile_columns(
        {"a": rng.normal(size=500), "c": rng.choice(["x", "y"], 500)}, categorical=["c"]
    )

    # Act
    profile = profile_like(
        reference, {"c": np.array(["z", "x"]), "a": np.array([0.0, 9.0]), "extra": np.ones(2)}
    )

    # Assert
    assert list(profile.columns) == ["a", "c"]
    np.testing.assert_array_equal(_numeric(profile, "a").edges, _numeric(reference, "a").edges)
    assert _categorical(profile, "c").categories == ("x", "z")


def test_profile_like_missing_column_names_it() -> None:
    """A reference column absent from the input raises InvalidInput naming it."""
    # Arrange
    reference = profile_columns({"a": np.arange(100.0), "b": np.arange(100.0)})

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"'b'") as err:
        profile_like(reference, {"a": np.arange(5.0)})
    assert err.value.field == "columns.b"
    assert err.value.hint


def test_profile_like_sample_size_follows_reference() -> None:
    """Without sample_size, the current profile keeps as many rows as the reference's sample."""
    # Arrange
    with_sample = profile_columns({"a": np.arange(1000.0)}, sample_size=30)
    without = profile_columns({"a": np.arange(1000.0)})

    # Act
    sampled = profile_like(with_sample, {"a": np.arange(500.0)})
    unsampled = profile_like(without, {"a": np.arange(500.0)})

    # Assert
    assert sampled.sample is not None
    assert sampled.sample.shape == (30, 1)
    assert unsampled.sample is None


@st.composite
def split_columns(draw: st.DrawFn) -> tuple[dict[str, npt.NDArray[np.generic]], list[int]]:
    """Draw a numeric and a categorical column and cut points splitting their rows."""
    rows = draw(st.integers(min_value=0, max_value=200))
    numeric = draw(hnp.arrays(np.float64, rows, elements=WITH_MISSING))
    labels = draw(hnp.arrays(object, rows, elements=st.sampled_from(["a", "b", "c", None])))
    cuts = sorted(draw(st.lists(st.integers(min_value=0, max_value=rows), max_size=4)))
    return {"x": numeric, "c": labels}, cuts


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=split_columns())
def test_merge_of_split_data_equals_profile_of_whole(
    data: tuple[dict[str, npt.NDArray[np.generic]], list[int]],
) -> None:
    """Merging the profiles of any split equals profiling the whole (moments to 1e-9)."""
    # Arrange
    columns, cuts = data
    edges = {"x": np.array([-100.0, 0.0, 0.5, 250.0])}
    bounds = [0, *cuts, len(columns["x"])]
    parts = [
        profile_columns({k: v[a:b] for k, v in columns.items()}, edges=edges, categorical=["c"])
        for a, b in itertools.pairwise(bounds)
    ]

    # Act
    merged = merge_profiles(parts)

    # Assert
    whole = profile_columns(columns, edges=edges, categorical=["c"])
    _assert_same_profile(merged, whole, rel=1e-9)


def test_merge_profiles_refuses_different_edges() -> None:
    """Profiles binned on other edges do not merge; the error names the column."""
    # Arrange
    a = profile_columns({"x": np.arange(100.0)})
    b = profile_columns({"x": np.arange(100.0) + 0.5})

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"edges") as err:
        merge_profiles([a, b])
    assert err.value.field == "columns.x.edges"


@pytest.mark.parametrize(
    ("other", "field"),
    [
        pytest.param({"y": np.arange(10.0)}, "columns.x", id="other-column"),
        pytest.param({"x": np.array(["a"] * 10)}, "columns.x", id="other-kind"),
    ],
)
def test_merge_profiles_refuses_other_columns(
    other: dict[str, npt.NDArray[np.generic]], field: str
) -> None:
    """Profiles with other columns or kinds do not merge."""
    # Arrange
    a = profile_columns({"x": np.arange(10.0)})
    kinds = ["x"] if other.get("x", np.zeros(1)).dtype.kind == "U" else []
    b = profile_columns(other, categorical=kinds)

    # Act / Assert
    with pytest.raises(InvalidInput) as err:
        merge_profiles([a, b])
    assert err.value.field in (field, "columns.y")


def test_merge_profiles_refuses_empty_list() -> None:
    """An empty list is refused."""
    # Act / Assert
    with pytest.raises(InvalidInput) as err:
        merge_profiles([])
    assert err.value.field == "profiles"


def test_merge_profiles_sample_is_weighted_by_rows() -> None:
    """A part with nine times the rows supplies about nine tenths of the merged sample."""
    # Arrange
    edges = {"x": np.array([0.5])}
    small = profile_columns({"x": np.zeros(1000)}, edges=edges, sample_size=500, seed=1)
    large = profile_columns({"x": np.ones(9000)}, edges=edges, sample_size=500, seed=2)

    # Act
    merged = merge_profiles([small, large], seed=3)

    # Assert
    assert merged.sample is not None
    assert merged.sample.shape == (500, 1)
    assert merged.sample[:, 0].mean() == pytest.approx(0.9, abs=0.04)


def test_merge_profiles_sample_tops_up_from_larger_samples() -> None:
    """A large part with a small sample gives all it has; the others fill the sample."""
    # Arrange
    edges = {"x": np.array([0.5])}
    thin = profile_columns({"x": np.zeros(10_000)}, edges=edges, sample_size=10, seed=1)
    full = profile_columns({"x": np.ones(100)}, edges=edges, sample_size=100, seed=2)

    # Act
    merged = merge_profiles([thin, full], seed=3)

    # Assert
    assert merged.sample is not None
    assert merged.sample.shape == (100, 1)
    assert int((merged.sample[:, 0] == 0).sum()) == 10


def test_merge_profiles_sample_none_if_any_part_has_none() -> None:
    """A part without a sample makes the merged sample None."""
    # Arrange
    edges = {"x": np.array([0.5])}
    a = profile_columns({"x": np.zeros(10)}, edges=edges, sample_size=5)
    b = profile_columns({"x": np.ones(10)}, edges=edges)

    # Act / Assert
    assert merge_profiles([a, b]).sample is None


def _client_data(rng: np.random.Generator) -> list[Floats]:
    """Five clients of different sizes, locations and shapes (non-IID)."""
    return [
        rng.normal(0.0, 1.0, size=20_000),
        rng.normal(3.0, 0.5, size=5_000),
        rng.exponential(2.0, size=12_000),
        rng.uniform(-4.0, 1.0, size=3_000),
        rng.lognormal(0.0, 1.0, size=8_000),
    ]


def test_federated_edges_are_close_to_central_quantiles() -> None:
    """Edges from five clients' sketches sit within 1.5 / (P - 1) in CDF of the pooled quantiles.

    The tolerance: each client's piecewise-linear CDF is within 1 / (P - 1) of its empirical
    CDF, so their n-weighted mixture is too; the extra half covers np.quantile's interpolation.
    """
    # Arrange
    rng = np.random.default_rng(7)
    clients = _client_data(rng)
    pooled = np.sort(np.concatenate(clients))
    num_points, num_bins = 256, 100

    # Act
    sketches = [quantile_sketch({"x": data}, num_points=num_points) for data in clients]
    edges = edges_from_sketches(sketches, num_bins=num_bins)["x"]

    # Assert
    assert edges.size == num_bins - 1
    cdf = np.searchsorted(pooled, edges, side="right") / pooled.size
    tolerance = 1.5 / (num_points - 1)
    np.testing.assert_allclose(cdf, np.arange(1, num_bins) / num_bins, atol=tolerance)


def test_federated_profile_equals_central_profile_on_the_same_edges() -> None:
    """Clients' profiles on shared edges merge into the central profile of the pooled rows."""
    # Arrange
    rng = np.random.default_rng(8)
    clients = _client_data(rng)
    edges = edges_from_sketches([quantile_sketch({"x": data}) for data in clients])

    # Act
    received = [profile_to_arrays(profile_columns({"x": d}, edges=edges)) for d in clients]
    merged = merge_profiles([profile_from_arrays(arrays) for arrays in received])

    # Assert
    central = profile_columns({"x": np.concatenate(clients)}, edges=edges)
    _assert_same_profile(merged, central, rel=1e-9)


def test_federated_edges_put_atoms_on_their_values() -> None:
    """A discrete column's federated edges include its values, as central edges do."""
    # Arrange
    rng = np.random.default_rng(9)
    clients = [(rng.random(n) < 0.3).astype(float) for n in (1000, 4000, 2500)]

    # Act
    edges = edges_from_sketches([quantile_sketch({"flag": c}) for c in clients])["flag"]

    # Assert
    assert edges[0] == 0.0
    assert edges[-1] == 1.0
    profile = merge_profiles([profile_columns({"flag": c}, edges={"flag": edges}) for c in clients])
    counts = _numeric(profile, "flag").counts
    assert counts[0] == sum(int((c == 0).sum()) for c in clients)
    assert counts[-1] == 0


def test_quantile_sketch_of_a_column_without_values() -> None:
    """A column with no finite value sends n = 0, and the merged edges skip it."""
    # Arrange
    empty = quantile_sketch({"x": np.array([np.nan, np.inf])}, num_points=4)
    full = quantile_sketch({"x": np.arange(100.0)}, num_points=4)

    # Act
    edges = edges_from_sketches([empty, full], num_bins=2)

    # Assert
    assert empty["x"].tolist() == [0.0, 0.0, 0.0, 0.0, 0.0]
    np.testing.assert_allclose(edges["x"], [49.5])


@pytest.mark.parametrize(
    ("sketches", "field"),
    [
        pytest.param([], "sketches", id="empty"),
        pytest.param([{"x": np.array([5.0, 2.0, 1.0])}], "sketches[0].x", id="decreasing"),
        pytest.param([{"x": np.array([-1.0, 0.0, 1.0])}], "sketches[0].x", id="negative-n"),
        pytest.param([{"x": np.array([1.0, np.nan, 1.0])}], "sketches[0].x", id="nan"),
        pytest.param(
            [{"x": np.array([1.0, 0.0, 1.0])}, {"y": np.array([1.0, 0.0, 1.0])}],
            "sketches[1].x",
            id="other-columns",
        ),
    ],
)
def test_edges_from_sketches_refuses_malformed_sketches(
    sketches: list[dict[str, Floats]], field: str
) -> None:
    """Sketches that quantile_sketch could not have made raise InvalidInput naming them."""
    # Act / Assert
    with pytest.raises(InvalidInput) as err:
        edges_from_sketches(sketches)
    assert err.value.field == field


def test_profile_arrays_round_trip() -> None:
    """A numeric profile survives profile_to_arrays / profile_from_arrays, without its sample."""
    # Arrange
    rng = np.random.default_rng(2)
    profile = profile_columns(
        {"a/b": rng.normal(size=300), "c": np.r_[np.nan, rng.random(299)]}, sample_size=10
    )

    # Act
    arrays = profile_to_arrays(profile)
    back = profile_from_arrays(decode_parameters(encode_parameters(arrays)))

    # Assert
    assert "sample" not in arrays
    assert back.sample is None
    _assert_same_profile(back, profile)


def test_profile_to_arrays_refuses_categorical_columns() -> None:
    """Categorical columns do not travel as tensors."""
    # Arrange
    profile = profile_columns({"c": np.array(["a", "b"])}, categorical=["c"])

    # Act / Assert
    with pytest.raises(InvalidInput) as err:
        profile_to_arrays(profile)
    assert err.value.field == "columns.c"


def _tamper(key: str, value: object) -> dict[str, object]:
    arrays: dict[str, object] = dict(profile_to_arrays(profile_columns({"x": np.arange(100.0)})))
    if value is None:
        del arrays[key]
    else:
        arrays[key] = value
    return arrays


@pytest.mark.parametrize(
    ("arrays", "field"),
    [
        pytest.param(_tamper("num_rows", None), "profile.num_rows", id="no-num-rows"),
        pytest.param(_tamper("x/edges", None), "profile.x/edges", id="no-edges"),
        pytest.param(_tamper("x/edges", np.array([3.0, 1.0])), "profile.x/edges", id="unsorted"),
        pytest.param(_tamper("x/counts", np.full(3, 50)), "profile.x/counts", id="counts-size"),
        pytest.param(
            _tamper("x/counts", np.r_[-1, np.zeros(9, np.int64), 101]),
            "profile.x/counts",
            id="negative-count",
        ),
        pytest.param(
            _tamper("x/counts", np.full(10, 9, np.int64)), "profile.x/stats", id="sum-mismatch"
        ),
        pytest.param(
            _tamper("x/stats", np.array([100.0, 0, np.nan, 1, 0, 99])),
            "profile.x/stats",
            id="nan-mean",
        ),
        pytest.param(_tamper("x/stats", np.zeros(3)), "profile.x/stats", id="stats-shape"),
        pytest.param(_tamper("x/counts", [10] * 10), "profile.x/counts", id="not-array"),
        pytest.param(_tamper("x/weird", np.zeros(1)), "profile.x/weird", id="unexpected"),
    ],
)
def test_profile_from_arrays_refuses_bad_tensors(arrays: dict[str, object], field: str) -> None:
    """Malformed tensors raise InvalidInput naming the tensor."""
    # Act / Assert
    with pytest.raises(InvalidInput) as err:
        profile_from_arrays(arrays)  # type: ignore[arg-type]
    assert err.value.field == field


@st.composite
def profiles(draw: st.DrawFn) -> DataProfile:
    """Draw a profile of numeric and categorical columns, with or without a sample."""
    rows = draw(st.integers(min_value=0, max_value=60))
    numeric = draw(hnp.arrays(np.float64, rows, elements=WITH_MISSING))
    text = draw(hnp.arrays(object, rows, elements=st.one_of(st.none(), st.text(max_size=5))))
    return profile_columns(
        {"n/um": numeric, "txt": text},
        categorical=["txt"],
        num_bins=draw(st.integers(min_value=2, max_value=20)),
        sample_size=draw(st.integers(min_value=0, max_value=10)),
    )


@settings(max_examples=100, deadline=None)
@given(profile=profiles())
def test_encode_decode_round_trip(profile: DataProfile) -> None:
    """decode_profile(encode_profile(p)) equals p, sample included."""
    # Act
    back = decode_profile(encode_profile(profile))

    # Assert
    _assert_same_profile(back, profile)
    if profile.sample is None:
        assert back.sample is None
    else:
        assert back.sample is not None
        np.testing.assert_array_equal(back.sample, profile.sample)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300))
def test_decode_profile_refuses_random_bytes(data: bytes) -> None:
    """Random bytes raise InvalidInput, never another error."""
    # Act / Assert
    with pytest.raises(InvalidInput):
        decode_profile(data)


@settings(max_examples=200, deadline=None)
@given(position=st.integers(min_value=0), value=st.integers(min_value=0, max_value=255))
def test_decode_profile_survives_corrupted_bytes(position: int, value: int) -> None:
    """A valid payload with one byte changed decodes or raises InvalidInput."""
    # Arrange
    columns = {"x": np.arange(50.0), "c": np.array(["a", "b"] * 25)}
    data = bytearray(encode_profile(profile_columns(columns, categorical=["c"], sample_size=3)))
    data[position % len(data)] = value

    # Act / Assert
    try:
        decoded = decode_profile(bytes(data))
    except InvalidInput:
        return
    assert isinstance(decoded, DataProfile)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        pytest.param(lambda t: t.pop("meta"), "profile.meta", id="no-meta"),
        pytest.param(
            lambda t: t.update(meta=np.frombuffer(b"[1, 2]", dtype=np.uint8)),
            "profile.meta",
            id="meta-not-object",
        ),
        pytest.param(
            lambda t: t.update({"c/counts": np.array([1, 1])}), "profile.c/counts", id="cat-sum"
        ),
        pytest.param(
            lambda t: t.update(sample=np.zeros((2, 3))), "profile.sample", id="sample-width"
        ),
        pytest.param(lambda t: t.update(extra=np.zeros(1)), "profile.extra", id="extra-tensor"),
    ],
)
def test_decode_profile_names_the_bad_part(
    edit: Callable[[dict[str, npt.NDArray[np.generic]]], object], field: str
) -> None:
    """A well-formed safetensors payload with a bad part names that part."""
    # Arrange
    columns = {"x": np.arange(50.0), "c": np.array(["a", "b"] * 25)}
    profile = profile_columns(columns, categorical=["c"], sample_size=3)
    tensors = dict(decode_parameters(encode_profile(profile)))
    edit(tensors)

    # Act / Assert
    with pytest.raises(InvalidInput) as err:
        decode_profile(encode_parameters(tensors))
    assert err.value.field == field
