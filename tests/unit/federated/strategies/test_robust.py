"""Coordinate median, trimmed mean, Krum and Multi-Krum against hand computations."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import pytest

from fedloop.core import AggregationError, InvalidInput
from fedloop.federated.strategies import (
    ClientUpdate,
    CoordinateMedian,
    Krum,
    MultiKrum,
    TrimmedMean,
)

CURRENT = OrderedDict(w=np.zeros(2))


def _clients(*rows: list[float], examples: list[int] | None = None) -> list[ClientUpdate]:
    """One update per row, ids a, b, c, ... and 1 example each unless given."""
    counts = examples or [1] * len(rows)
    return [
        ClientUpdate(chr(ord("a") + i), OrderedDict(w=np.array(row, dtype=np.float64)), n)
        for i, (row, n) in enumerate(zip(rows, counts, strict=True))
    ]


# Krum fixture: squared distances a-b 1, a-c 1, a-d 8, b-c 2, b-d 5, c-d 5, e far from all.
# With f = 1, each score sums the n - f - 2 = 2 nearest: a 1+1=2, b 1+2=3, c 1+2=3, d 5+5=10.
KRUM_ROWS = ([0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [100.0, 100.0])


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        pytest.param(([1.0, 5.0], [2.0, -90.0], [1000.0, 6.0]), [2.0, 5.0], id="odd"),
        pytest.param(([1.0, 0.0], [2.0, 1.0], [3.0, 2.0], [100.0, 3.0]), [2.5, 1.5], id="even"),
    ],
)
def test_median_ignores_outliers(rows: tuple[list[float], ...], expected: list[float]) -> None:
    """The coordinate-wise median; with an even count, the mean of the two middle values."""
    # Act
    result = CoordinateMedian().aggregate_train(1, CURRENT, _clients(*rows))

    # Assert
    np.testing.assert_array_equal(result["w"], expected)


def test_median_ignores_example_counts() -> None:
    """The median is unweighted: a client with many examples is still one vote."""
    # Arrange
    updates = _clients([0.0, 0.0], [1.0, 1.0], [9.0, 9.0], examples=[1, 1, 1000])

    # Act
    result = CoordinateMedian().aggregate_train(1, CURRENT, updates)

    # Assert
    np.testing.assert_array_equal(result["w"], [1.0, 1.0])


def test_median_rounds_integer_tensors() -> None:
    """An integer tensor's even-count median (1.5) is rounded half to even (2)."""
    # Arrange
    current = OrderedDict(n=np.array([0], dtype=np.int32))
    updates = [
        ClientUpdate(c, OrderedDict(n=np.array([v], dtype=np.int32)), 1)
        for c, v in (("a", 1), ("b", 2))
    ]

    # Act
    result = CoordinateMedian().aggregate_train(1, current, updates)

    # Assert
    assert result["n"].dtype == np.int32
    assert result["n"].tolist() == [2]


def test_trimmed_mean_drops_the_extremes_per_coordinate() -> None:
    """With beta = 0.2 of 5, the largest and smallest value of each coordinate are dropped."""
    # Arrange
    updates = _clients([1.0, -100.0], [2.0, 5.0], [3.0, 6.0], [4.0, 7.0], [100.0, 8.0])

    # Act
    result = TrimmedMean(0.2).aggregate_train(1, CURRENT, updates)

    # Assert
    # w[0]: mean(2, 3, 4) = 3; w[1]: mean(5, 6, 7) = 6
    np.testing.assert_array_equal(result["w"], [3.0, 6.0])


@pytest.mark.parametrize(
    "beta",
    [pytest.param(0.0, id="zero"), pytest.param(0.1, id="floor-0.5-is-0")],
)
def test_trimmed_mean_without_trimming_is_the_plain_mean(beta: float) -> None:
    """When floor(beta * n) is 0 nothing is dropped and the mean is unweighted."""
    # Arrange
    updates = _clients([1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0], [10.0, 5.0])

    # Act
    result = TrimmedMean(beta).aggregate_train(1, CURRENT, updates)

    # Assert
    # mean(1, 2, 3, 4, 10) = 4 and mean(0, 0, 0, 0, 5) = 1
    np.testing.assert_array_equal(result["w"], [4.0, 1.0])


@pytest.mark.parametrize(
    "beta",
    [
        pytest.param(0.5, id="half"),
        pytest.param(-0.1, id="negative"),
        pytest.param("0.1", id="string"),
    ],
)
def test_trimmed_mean_refuses_beta_outside_range(beta: object) -> None:
    """The trimmed fraction beta must be in [0, 0.5)."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=r"strategy\.beta.*\[0, 0\.5\)") as info:
        TrimmedMean(beta)  # type: ignore[arg-type]
    assert info.value.field == "strategy.beta"


def test_krum_picks_the_client_closest_to_its_neighbours() -> None:
    """Among 5 clients with one far outlier, Krum returns client a (score 2) unchanged."""
    # Arrange
    updates = _clients(*KRUM_ROWS)

    # Act
    result = Krum(1).aggregate_train(1, CURRENT, updates)

    # Assert
    np.testing.assert_array_equal(result["w"], [0.0, 0.0])
    assert result["w"] is not updates[0].parameters["w"]


def test_krum_measures_distance_over_floating_tensors_only() -> None:
    """A huge integer counter on the honest client does not change Krum's choice."""
    # Arrange
    current = OrderedDict(w=np.zeros(2), n=np.array(0, dtype=np.int64))
    updates = [
        ClientUpdate(u.client_id, OrderedDict(w=u.parameters["w"], n=np.array(10**9 * i)), 1)
        for i, u in enumerate(_clients(*KRUM_ROWS), start=1)
    ]

    # Act
    result = Krum(1).aggregate_train(1, current, updates)

    # Assert
    assert int(result["n"]) == 10**9


def test_krum_needs_2f_plus_3_updates() -> None:
    """Four updates cannot tolerate one Byzantine client (needs 5)."""
    # Arrange
    updates = _clients(*KRUM_ROWS[:4])

    # Act / Assert
    with pytest.raises(AggregationError, match=r"at least 5 updates") as info:
        Krum(1).aggregate_train(1, CURRENT, updates)
    assert info.value.field == "strategy.num_byzantine"


def test_multikrum_averages_the_best_scored_by_examples() -> None:
    """num_selected = 3 keeps a, b, c (scores 2, 3, 3) and weights them by examples."""
    # Arrange
    updates = _clients(*KRUM_ROWS, examples=[1, 1, 2, 1, 1])

    # Act
    result = MultiKrum(1, 3).aggregate_train(1, CURRENT, updates)

    # Assert
    # (1 * [0, 0] + 1 * [1, 0] + 2 * [0, 1]) / 4
    np.testing.assert_array_equal(result["w"], [0.25, 0.5])


def test_multikrum_breaks_score_ties_by_client_id() -> None:
    """Clients b and c tie at 3; with num_selected = 2 the lower id, b, is kept with a."""
    # Arrange
    updates = list(reversed(_clients(*KRUM_ROWS)))

    # Act
    result = MultiKrum(1, 2).aggregate_train(1, CURRENT, updates)

    # Assert
    # ([0, 0] + [1, 0]) / 2
    np.testing.assert_array_equal(result["w"], [0.5, 0.0])


def test_multikrum_cannot_select_more_than_n_minus_f() -> None:
    """Selecting 5 of 5 with f = 1 would include a possible Byzantine model."""
    # Arrange
    updates = _clients(*KRUM_ROWS)

    # Act / Assert
    with pytest.raises(AggregationError, match=r"at most n - f = 4") as info:
        MultiKrum(1, 5).aggregate_train(1, CURRENT, updates)
    assert info.value.field == "strategy.num_selected"


@pytest.mark.parametrize(
    ("make", "field"),
    [
        pytest.param(lambda: Krum(-1), "num_byzantine", id="krum-negative"),
        pytest.param(lambda: Krum(1.5), "num_byzantine", id="krum-float"),  # type: ignore[arg-type]
        pytest.param(lambda: Krum(True), "num_byzantine", id="krum-bool"),
        pytest.param(lambda: MultiKrum(-1, 2), "num_byzantine", id="multikrum-f"),
        pytest.param(lambda: MultiKrum(1, 0), "num_selected", id="multikrum-m"),
    ],
)
def test_krum_refuses_bad_counts(make: Callable[[], object], field: str) -> None:
    """num_byzantine must be an integer >= 0 and num_selected >= 1."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=rf"strategy\.{field}.*integer >= ") as info:
        make()
    assert info.value.field == f"strategy.{field}"


def test_robust_rules_store_params_unchanged() -> None:
    """get_params returns the constructor arguments as given."""
    # Act
    params = [s.get_params() for s in (CoordinateMedian(), TrimmedMean(0.1), Krum(2))]

    # Assert
    assert params == [{}, {"beta": 0.1}, {"num_byzantine": 2}]
    assert MultiKrum(1, 3).get_params() == {"num_byzantine": 1, "num_selected": 3}
