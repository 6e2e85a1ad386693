"""Two-proportion Z-test: textbook z, 0/1 numeric columns, Cohen's h and non-binary refusal."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _summaries import categorical, numeric_pair

from fedloop.core import InvalidInput
from fedloop.monitoring.drift import ProportionZTest, cohens_h


def test_z_matches_the_pooled_formula_without_correction() -> None:
    """Without continuity correction z is the pooled two-proportion statistic."""
    # Arrange
    reference = categorical(["no"] * 900 + ["yes"] * 100)
    current = categorical(["no"] * 850 + ["yes"] * 150)
    pooled = 250 / 2000
    z = (0.15 - 0.10) / math.sqrt(pooled * (1 - pooled) * (2 / 1000))

    # Act
    result = ProportionZTest(continuity=False)(reference, current)

    # Assert
    assert result.statistic == pytest.approx(z)
    assert result.p_value == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert result.effect == pytest.approx(cohens_h(0.10, 0.15))


def test_continuity_correction_is_conservative() -> None:
    """Yates' correction gives a larger p-value."""
    # Arrange
    reference = categorical(["no"] * 90 + ["yes"] * 10)
    current = categorical(["no"] * 80 + ["yes"] * 20)

    # Act
    plain = ProportionZTest(continuity=False)(reference, current)
    corrected = ProportionZTest()(reference, current)

    # Assert
    assert plain.p_value is not None
    assert corrected.p_value is not None
    assert corrected.p_value > plain.p_value


def test_numeric_zero_one_column_is_binary() -> None:
    """A numeric 0/1 column is read from its exact moments."""
    # Arrange
    rng = np.random.default_rng(0)
    reference, current = numeric_pair(
        (rng.random(10_000) < 0.02).astype(float), (rng.random(10_000) < 0.04).astype(float)
    )

    # Act
    result = ProportionZTest()(reference, current)

    # Assert
    assert result.statistic > 5
    assert result.effect == pytest.approx(cohens_h(0.02, 0.04), abs=0.02)


def test_non_binary_column_is_refused() -> None:
    """A column with three values raises InvalidInput naming it."""
    # Arrange
    reference, current = numeric_pair([0.0, 1.0, 2.0] * 20, [0.0, 1.0] * 30)

    # Act / Assert
    with pytest.raises(InvalidInput, match=r"'amount' is not two-valued") as err:
        ProportionZTest()(reference, current, column="amount")
    assert err.value.field == "amount"


def test_cohens_h_weighs_rare_rates() -> None:
    """Cohen's h of 1% -> 3% exceeds that of 50% -> 52%."""
    # Act / Assert
    assert cohens_h(0.01, 0.03) > 3 * cohens_h(0.50, 0.52)
