"""PSI: the textbook value, coarsening of numeric bins, category union and parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _summaries import categorical, numeric_pair

from fedloop.core import InvalidInput
from fedloop.monitoring.drift import PSITest


def test_categorical_value_matches_the_formula() -> None:
    """PSI of two categorical summaries is sum((q - p) ln(q / p))."""
    # Arrange
    reference = categorical(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    current = categorical(["a"] * 30 + ["b"] * 30 + ["c"] * 40)
    expected = (0.3 - 0.5) * math.log(0.3 / 0.5) + (0.4 - 0.2) * math.log(0.4 / 0.2)

    # Act
    result = PSITest()(reference, current)

    # Assert
    assert result.statistic == pytest.approx(expected)
    assert result.p_value is None
    assert result.bins == 3


def test_category_missing_on_one_side_stays_finite() -> None:
    """A category seen only in the current data is floored at epsilon, not infinite."""
    # Arrange
    reference = categorical(["a"] * 60 + ["b"] * 40)
    current = categorical(["a"] * 50 + ["b"] * 40 + ["new"] * 10)

    # Act
    result = PSITest()(reference, current)

    # Assert
    assert result.bins == 3
    assert 0.2 < result.statistic < 2.0


def test_numeric_bins_are_merged_into_ten_groups() -> None:
    """A 100-bin numeric column is scored on 10 groups of equal reference mass."""
    # Arrange
    rng = np.random.default_rng(0)
    reference, current = numeric_pair(rng.normal(size=1_000), rng.normal(size=1_000))

    # Act
    result = PSITest()(reference, current)

    # Assert
    assert result.bins == 10
    assert result.statistic < 0.1
    assert result.effect_noise == pytest.approx(9 * (2 / 1_000))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        pytest.param({"num_bins": 1}, "num_bins", id="num-bins"),
        pytest.param({"epsilon": 0.0}, "epsilon", id="epsilon"),
    ],
)
def test_bad_parameters_name_the_field(kwargs: dict[str, float], field: str) -> None:
    """Out-of-range parameters raise InvalidInput naming the parameter."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=field) as err:
        PSITest(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == field
