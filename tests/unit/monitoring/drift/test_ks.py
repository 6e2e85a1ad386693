"""KS on binned CDFs: never above the raw D, close to it on fine bins, scipy-like p-values."""

from __future__ import annotations

import numpy as np
import pytest
from _summaries import categorical, numeric, numeric_pair
from scipy.stats import ks_2samp

from fedloop.core import InvalidInput
from fedloop.monitoring.drift import KSTest, ks_p_value


@pytest.mark.parametrize("shift", [pytest.param(s, id=f"shift-{s}") for s in (0.0, 0.1, 0.5)])
def test_binned_d_is_at_most_the_raw_d(shift: float) -> None:
    """The binned D never exceeds scipy's raw D and is within 0.01 of it on 1000 bins."""
    # Arrange
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(size=5_000), rng.normal(shift, size=4_000)
    reference, current = numeric_pair(ref, cur, num_bins=1_000)

    # Act
    binned = KSTest()(reference, current)
    raw = ks_2samp(ref, cur)

    # Assert
    assert binned.statistic <= raw.statistic + 1e-12
    assert raw.statistic - binned.statistic < 0.01


def test_p_value_is_close_to_scipy_asymptotic() -> None:
    """On fine bins the p-value is close to ks_2samp's asymptotic one."""
    # Arrange
    rng = np.random.default_rng(2)
    ref, cur = rng.normal(size=2_000), rng.normal(0.08, size=2_000)
    reference, current = numeric_pair(ref, cur, num_bins=1_000)

    # Act
    result = KSTest()(reference, current)
    raw = ks_2samp(ref, cur, method="asymp")

    # Assert
    assert result.p_value == pytest.approx(raw.pvalue, rel=0.3)


def test_binned_test_is_conservative_on_coarse_bins() -> None:
    """On 10 bins the p-value is never smaller than the raw test's."""
    # Arrange
    rng = np.random.default_rng(3)
    ref, cur = rng.normal(size=3_000), rng.normal(0.05, 1.1, size=3_000)
    reference, current = numeric_pair(ref, cur, num_bins=10)

    # Act
    result = KSTest()(reference, current)

    # Assert
    assert result.p_value is not None
    assert result.p_value >= ks_2samp(ref, cur, method="asymp").pvalue


def test_p_value_limits() -> None:
    """D = 0 gives p = 1 and D = 1 on large samples gives p = 0."""
    # Act / Assert
    assert ks_p_value(0.0, 100, 100) == 1.0
    assert ks_p_value(1.0, 10_000, 10_000) == 0.0


def test_effect_is_d_with_its_noise() -> None:
    """The effect is D and its noise is 0.87 / sqrt(en)."""
    # Arrange
    reference = numeric(np.arange(1_000.0), [249.5, 499.5, 749.5])
    current = numeric(np.arange(500.0, 1_500.0), [249.5, 499.5, 749.5])

    # Act
    result = KSTest()(reference, current)

    # Assert
    assert result.statistic == pytest.approx(0.5)
    assert result.effect == result.statistic
    assert result.effect_noise == pytest.approx(0.8687 / np.sqrt(500), rel=1e-3)


def test_categorical_columns_are_refused() -> None:
    """KS does not read categorical summaries and names the column."""
    # Arrange
    summary = categorical(["a", "b", "c"])

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"'colour'.*ks") as err:
        KSTest()(summary, summary, column="colour")
    assert err.value.field == "colour"
