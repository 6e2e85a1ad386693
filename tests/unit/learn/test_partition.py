"""Partitioners: exact covers, determinism, label and quantity skew, summaries and errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedloop.core import InvalidInput
from fedloop.learn import (
    dirichlet_partition,
    iid_partition,
    partition_summary,
    quantity_skew_partition,
)

Parts = list[npt.NDArray[np.int64]]

#: 2,000 rows with 30% positives, in a fixed order.
LABELS = np.r_[np.zeros(1400, dtype=np.int64), np.ones(600, dtype=np.int64)]

PARTITIONERS: list[Any] = [
    pytest.param(lambda seed: iid_partition(len(LABELS), 7, seed=seed), id="iid"),
    pytest.param(lambda seed: dirichlet_partition(LABELS, 7, alpha=0.5, seed=seed), id="dirichlet"),
    pytest.param(
        lambda seed: quantity_skew_partition(len(LABELS), 7, alpha=0.5, seed=seed),
        id="quantity-skew",
    ),
]


@st.composite
def rows_and_clients(draw: st.DrawFn) -> tuple[int, int]:
    """Draw a row count and a client count no larger than it."""
    num_rows = draw(st.integers(min_value=1, max_value=300))
    return num_rows, draw(st.integers(min_value=1, max_value=num_rows))


@st.composite
def labels_and_clients(draw: st.DrawFn) -> tuple[npt.NDArray[np.int64], int]:
    """Draw 1-D labels of up to 4 classes and a client count no larger than the row count."""
    labels = draw(st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=300))
    return np.array(labels, dtype=np.int64), draw(st.integers(min_value=1, max_value=len(labels)))


seeds = st.integers(min_value=0, max_value=2**32 - 1)
alphas = st.floats(min_value=0.01, max_value=100.0)


def _assert_exact_cover(parts: Parts, num_rows: int, num_clients: int) -> None:
    """Check one sorted int64 array per client, together holding each row exactly once."""
    assert len(parts) == num_clients
    assert all(p.dtype == np.int64 and np.all(np.diff(p) > 0) for p in parts)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(num_rows))


def _label_fractions(parts: Parts) -> npt.NDArray[np.float64]:
    """Return the fraction of positives of each non-empty client."""
    return np.array([LABELS[p].mean() for p in parts if len(p)])


# -- exact covers --------------------------------------------------------------------------------


@given(shape=rows_and_clients(), seed=seeds)
def test_iid_partition_is_an_exact_cover(shape: tuple[int, int], seed: int) -> None:
    """iid_partition gives every row to exactly one client, in sorted int64 arrays."""
    # Arrange
    num_rows, num_clients = shape

    # Act
    parts = iid_partition(num_rows, num_clients, seed=seed)

    # Assert
    _assert_exact_cover(parts, num_rows, num_clients)


@given(shape=rows_and_clients(), seed=seeds)
def test_iid_partition_sizes_differ_by_at_most_one(shape: tuple[int, int], seed: int) -> None:
    """iid_partition splits the rows as evenly as possible."""
    # Arrange
    num_rows, num_clients = shape

    # Act
    sizes = [len(p) for p in iid_partition(num_rows, num_clients, seed=seed)]

    # Assert
    assert max(sizes) - min(sizes) <= 1


@given(data=labels_and_clients(), alpha=alphas, seed=seeds)
def test_dirichlet_partition_is_an_exact_cover(
    data: tuple[npt.NDArray[np.int64], int], alpha: float, seed: int
) -> None:
    """dirichlet_partition gives every row to exactly one client, in sorted int64 arrays."""
    # Arrange
    labels, num_clients = data

    # Act
    parts = dirichlet_partition(labels, num_clients, alpha=alpha, seed=seed)

    # Assert
    _assert_exact_cover(parts, len(labels), num_clients)


@given(shape=rows_and_clients(), alpha=alphas, seed=seeds)
def test_quantity_skew_partition_is_an_exact_cover_without_empty_clients(
    shape: tuple[int, int], alpha: float, seed: int
) -> None:
    """quantity_skew_partition covers every row once and leaves no client empty."""
    # Arrange
    num_rows, num_clients = shape

    # Act
    parts = quantity_skew_partition(num_rows, num_clients, alpha=alpha, seed=seed)

    # Assert
    _assert_exact_cover(parts, num_rows, num_clients)
    assert min(len(p) for p in parts) >= 1


# -- determinism ---------------------------------------------------------------------------------


@pytest.mark.parametrize("partition", PARTITIONERS)
def test_same_seed_gives_the_same_partition(partition: Callable[[int], Parts]) -> None:
    """Two calls with one seed return identical index arrays."""
    # Act
    first, second = partition(0), partition(0)

    # Assert
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("partition", PARTITIONERS)
def test_different_seeds_give_different_partitions(partition: Callable[[int], Parts]) -> None:
    """Seeds 0 and 1 split the rows differently."""
    # Act
    first, second = partition(0), partition(1)

    # Assert
    assert not all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def test_dirichlet_partition_does_not_use_the_global_numpy_state() -> None:
    """The split depends on `seed` only, not on np.random.seed."""
    # Arrange
    np.random.seed(123)
    first = dirichlet_partition(LABELS, 5, alpha=0.5, seed=0)
    np.random.seed(456)

    # Act
    second = dirichlet_partition(LABELS, 5, alpha=0.5, seed=0)

    # Assert
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


# -- skew ----------------------------------------------------------------------------------------


def test_dirichlet_small_alpha_skews_label_mix() -> None:
    """With alpha=0.05 clients' positive fractions stray far from the global 30%."""
    # Act
    parts = dirichlet_partition(LABELS, 10, alpha=0.05, seed=0)

    # Assert
    assert np.mean(np.abs(_label_fractions(parts) - 0.3)) > 0.2


def test_dirichlet_huge_alpha_gives_near_uniform_clients() -> None:
    """With alpha=1e4 every client has about 1/K of the rows and the global 30% positives."""
    # Act
    parts = dirichlet_partition(LABELS, 10, alpha=1e4, seed=0)

    # Assert
    assert np.all(np.abs(_label_fractions(parts) - 0.3) < 0.03)
    assert all(abs(len(p) - 200) <= 10 for p in parts)


def test_dirichlet_partition_accepts_string_labels() -> None:
    """Labels of any sortable dtype are split per class."""
    # Arrange
    labels = np.array(["fraud", "ok", "ok", "ok", "fraud", "ok"])

    # Act
    parts = dirichlet_partition(labels, 2, alpha=1.0, seed=0)

    # Assert
    _assert_exact_cover(parts, len(labels), 2)


def test_dirichlet_min_size_is_met() -> None:
    """min_size resamples until every client has at least that many rows."""
    # Arrange
    unconstrained = dirichlet_partition(LABELS, 20, alpha=0.5, seed=0)

    # Act
    parts = dirichlet_partition(LABELS, 20, alpha=0.5, seed=0, min_size=10)

    # Assert
    assert min(len(p) for p in unconstrained) < 10
    assert min(len(p) for p in parts) >= 10


def test_dirichlet_unreachable_min_size_is_refused() -> None:
    """When no draw gives every client min_size rows, InvalidInput blames alpha or K."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=r"alpha is too small") as info:
        dirichlet_partition(LABELS, 200, alpha=0.01, seed=0, min_size=5)
    assert info.value.field == "min_size"


def test_quantity_skew_small_alpha_gives_one_dominant_client() -> None:
    """With alpha=0.05 one client holds most of the rows."""
    # Act
    sizes = [len(p) for p in quantity_skew_partition(2000, 10, alpha=0.05, seed=0)]

    # Assert
    assert max(sizes) > 1000


def test_quantity_skew_huge_alpha_gives_near_equal_sizes() -> None:
    """With alpha=1e4 every client holds about 1/K of the rows."""
    # Act
    sizes = [len(p) for p in quantity_skew_partition(2000, 10, alpha=1e4, seed=0)]

    # Assert
    assert max(sizes) - min(sizes) <= 20


# -- summary -------------------------------------------------------------------------------------


def test_partition_summary_counts_rows_and_positives() -> None:
    """Each client's entry holds its index, rows, positives and positive fraction."""
    # Arrange
    labels = np.array([1, 0, 1, 1, 0])
    parts = [np.array([0, 1]), np.array([], dtype=np.int64), np.array([2, 3, 4])]

    # Act
    summary = partition_summary(parts, labels)

    # Assert
    assert summary == [
        {"client": 0, "rows": 2, "positives": 1, "fraction_positive": 0.5},
        {"client": 1, "rows": 0, "positives": 0, "fraction_positive": 0.0},
        {"client": 2, "rows": 3, "positives": 2, "fraction_positive": pytest.approx(2 / 3)},
    ]


def test_partition_summary_refuses_indices_outside_labels() -> None:
    """An index past the end of labels raises InvalidInput naming the client."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        partition_summary([np.array([0]), np.array([5])], np.array([0, 1]))
    assert info.value.field == "parts[1]"


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field"),
    [
        pytest.param(lambda: iid_partition(0, 1, seed=0), "num_rows", id="iid-no-rows"),
        pytest.param(lambda: iid_partition(10, 0, seed=0), "num_clients", id="iid-no-clients"),
        pytest.param(
            lambda: iid_partition(3, 4, seed=0), "num_clients", id="iid-more-clients-than-rows"
        ),
        pytest.param(
            lambda: dirichlet_partition(LABELS, 0, alpha=0.5, seed=0),
            "num_clients",
            id="dirichlet-no-clients",
        ),
        pytest.param(
            lambda: dirichlet_partition(LABELS[:3], 4, alpha=0.5, seed=0),
            "num_clients",
            id="dirichlet-more-clients-than-rows",
        ),
        pytest.param(
            lambda: dirichlet_partition(LABELS, 2, alpha=0.0, seed=0), "alpha", id="alpha-zero"
        ),
        pytest.param(
            lambda: dirichlet_partition(LABELS, 2, alpha=-1.0, seed=0),
            "alpha",
            id="alpha-negative",
        ),
        pytest.param(
            lambda: dirichlet_partition(LABELS, 2, alpha=float("nan"), seed=0),
            "alpha",
            id="alpha-nan",
        ),
        pytest.param(
            lambda: quantity_skew_partition(10, 2, alpha=float("inf"), seed=0),
            "alpha",
            id="alpha-inf",
        ),
        pytest.param(
            lambda: dirichlet_partition(LABELS.reshape(-1, 2), 2, alpha=0.5, seed=0),
            "labels",
            id="labels-2d",
        ),
        pytest.param(
            lambda: dirichlet_partition(LABELS, 2, alpha=0.5, seed=0, min_size=-1),
            "min_size",
            id="min-size-negative",
        ),
        pytest.param(
            lambda: dirichlet_partition(LABELS, 10, alpha=0.5, seed=0, min_size=201),
            "min_size",
            id="min-size-above-rows-per-client",
        ),
        pytest.param(
            lambda: quantity_skew_partition(5, 6, alpha=0.5, seed=0),
            "num_clients",
            id="quantity-more-clients-than-rows",
        ),
    ],
)
def test_bad_arguments_are_refused(call: Callable[[], Parts], field: str) -> None:
    """Out-of-range sizes, alpha or min_size, or 2-D labels raise InvalidInput naming them."""
    # Act / Assert
    with pytest.raises(InvalidInput) as info:
        call()
    assert info.value.field == field
