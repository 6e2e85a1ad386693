"""Normalized Wasserstein from bins: scipy's value on fine bins, shifts read in std units."""

from __future__ import annotations

import numpy as np
import pytest
from _summaries import numeric, numeric_pair
from scipy.stats import wasserstein_distance

from fedloop.monitoring.drift import WassersteinTest, bin_representatives


def test_close_to_scipy_on_fine_bins() -> None:
    """On 1000 bins the distance is within 5% of scipy's raw one (divided by the std)."""
    # Arrange
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(size=20_000), rng.normal(0.2, 1.3, size=20_000)
    reference, current = numeric_pair(ref, cur, num_bins=1_000)

    # Act
    result = WassersteinTest()(reference, current)

    # Assert
    assert result.statistic == pytest.approx(wasserstein_distance(ref, cur) / ref.std(), rel=0.05)


@pytest.mark.parametrize("scale", [pytest.param(s, id=f"unit-{s}") for s in (0.001, 1.0, 1e4)])
def test_mean_shift_reads_in_reference_stds(scale: float) -> None:
    """A 0.5-std shift reads about 0.5 whatever the column's unit."""
    # Arrange
    rng = np.random.default_rng(1)
    ref = rng.normal(size=50_000) * scale
    reference, current = numeric_pair(ref, ref + 0.5 * ref.std())

    # Act
    result = WassersteinTest()(reference, current)

    # Assert
    assert result.statistic == pytest.approx(0.5, abs=0.01)


def test_mean_difference_bounds_the_distance() -> None:
    """A shift beyond the outer bins is not lost: |mean difference| is a lower bound."""
    # Arrange
    edges = [1.0, 2.0]
    reference = numeric([0.0, 1.5, 3.0, 0.5, 2.5], edges)
    current = numeric([100.0, 101.5, 103.0, 100.5, 102.5], edges)

    # Act
    result = WassersteinTest()(reference, current)

    # Assert
    assert result.statistic * np.sqrt(reference.m2 / reference.count) == pytest.approx(100.0)


def test_constant_reference_does_not_divide_by_zero() -> None:
    """A constant reference column is scaled by the current std instead."""
    # Arrange
    reference = numeric([1.0] * 50, [0.5, 1.5])
    current = numeric([1.0] * 25 + [2.0] * 25, [0.5, 1.5])

    # Act
    result = WassersteinTest()(reference, current)

    # Assert
    assert np.isfinite(result.statistic)
    assert result.statistic > 0


def test_noise_matches_the_brownian_bridge_formula() -> None:
    """The noise of two 1k normal samples is 0.054 std, as the asymptotic formula says."""
    # Arrange
    rng = np.random.default_rng(2)
    reference, current = numeric_pair(rng.normal(size=1_000), rng.normal(size=1_000))

    # Act
    result = WassersteinTest()(reference, current)

    # Assert
    assert result.effect_noise == pytest.approx(0.054, abs=0.004)


def test_representatives_extend_past_the_outer_edges() -> None:
    """Interior bins use midpoints; the outer bins sit half a neighbouring width outside."""
    # Act
    points = bin_representatives(np.array([0.0, 1.0, 3.0]))

    # Assert
    assert points.tolist() == [-0.5, 0.5, 2.0, 4.0]
