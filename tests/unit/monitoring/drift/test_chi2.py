"""Chi-square homogeneity: scipy's value on dense tables, merging of sparse bins, Cramér's V."""

from __future__ import annotations

import numpy as np
import pytest
from _summaries import categorical, numeric_pair
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2_contingency

from fedloop.monitoring.drift import ChiSquareTest, merge_sparse_bins


def test_dense_categorical_table_matches_scipy() -> None:
    """With every expected count >= 5 the statistic and p-value equal scipy's."""
    # Arrange
    ref_counts, cur_counts = [120, 80, 50], [90, 100, 60]
    reference = categorical(["a"] * 120 + ["b"] * 80 + ["c"] * 50)
    current = categorical(["a"] * 90 + ["b"] * 100 + ["c"] * 60)
    expected = chi2_contingency([ref_counts, cur_counts], correction=False)

    # Act
    result = ChiSquareTest()(reference, current)

    # Assert
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.effect == pytest.approx(np.sqrt(expected.statistic / 500))


def test_sparse_numeric_bins_are_merged() -> None:
    """100 bins over 100 rows per side are merged until expected counts reach 5."""
    # Arrange
    rng = np.random.default_rng(0)
    reference, current = numeric_pair(rng.normal(size=1_000), rng.normal(size=100))

    # Act
    result = ChiSquareTest()(reference, current)

    # Assert
    assert 2 <= result.bins <= 20  # each group needs 5 * 1100 / 100 = 55 rows of 1100
    assert result.p_value is not None
    assert result.p_value > 0.01


def test_rare_categories_are_pooled() -> None:
    """Rare categories are pooled into one group rather than dropped."""
    # Arrange
    reference = categorical(["a"] * 100 + ["b"] * 100 + ["x", "y"])
    current = categorical(["a"] * 100 + ["b"] * 100 + ["z"])

    # Act
    result = ChiSquareTest()(reference, current)

    # Assert
    assert result.bins == 2
    assert result.p_value is not None
    assert result.p_value > 0.5


def test_everything_merged_gives_p_one() -> None:
    """When all bins merge into one, the statistic is 0 and the p-value 1."""
    # Arrange
    reference, current = categorical(["a", "b", "c"]), categorical(["c", "d"])

    # Act
    result = ChiSquareTest()(reference, current)

    # Assert
    assert (result.bins, result.statistic, result.p_value) == (1, 0.0, 1.0)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    ref=st.lists(st.integers(0, 50), min_size=2, max_size=30),
    ordered=st.booleans(),
    data=st.data(),
)
def test_merge_keeps_totals_and_expected_counts(
    ref: list[int], ordered: bool, data: st.DataObject
) -> None:
    """Merging keeps both totals and leaves no expected count under 5 unless one bin is left."""
    # Arrange
    cur = data.draw(st.lists(st.integers(0, 50), min_size=len(ref), max_size=len(ref)))
    a, b = np.array(ref, dtype=float) + 1, np.array(cur, dtype=float) + 1

    # Act
    ma, mb = merge_sparse_bins(a, b, ordered=ordered)

    # Assert
    assert (ma.sum(), mb.sum()) == (a.sum(), b.sum())
    expected = min(a.sum(), b.sum()) * (ma + mb) / (a.sum() + b.sum())
    assert ma.size == 1 or expected.min() >= 5 - 1e-9
