"""Jensen-Shannon distance: scipy's value, bounds, and merged numeric bins."""

from __future__ import annotations

import numpy as np
import pytest
from _summaries import categorical, numeric_pair
from scipy.spatial.distance import jensenshannon

from fedloop.monitoring.drift import JensenShannonTest, js_distance


def test_matches_scipy_base_two() -> None:
    """The distance equals scipy's jensenshannon with base 2."""
    # Arrange
    a, b = np.array([10.0, 20.0, 30.0, 0.0]), np.array([5.0, 5.0, 30.0, 10.0])

    # Act
    distance = js_distance(a, b)

    # Assert
    assert distance == pytest.approx(jensenshannon(a, b, base=2))


def test_disjoint_categories_are_one_apart() -> None:
    """Summaries with no category in common are at distance 1."""
    # Arrange
    reference, current = categorical(["a", "b"] * 10), categorical(["c", "d"] * 10)

    # Act
    result = JensenShannonTest()(reference, current)

    # Assert
    assert result.statistic == pytest.approx(1.0)
    assert result.p_value is None


def test_numeric_noise_is_small_after_merging() -> None:
    """Same-distribution 1k samples sit below 0.1 apart once bins are merged into 10."""
    # Arrange
    rng = np.random.default_rng(0)
    reference, current = numeric_pair(rng.normal(size=1_000), rng.normal(size=1_000))

    # Act
    result = JensenShannonTest()(reference, current)

    # Assert
    assert result.bins == 10
    assert result.statistic < 0.1
    assert result.effect_noise == pytest.approx(np.sqrt(9 * 0.002 / (8 * np.log(2))))
