"""Adjusted p-values: scipy's BH, textbook Holm and Bonferroni, and their ordering."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import false_discovery_control

from fedloop.core import InvalidInput
from fedloop.monitoring.drift import adjust_p_values

P = [0.04, 0.001, 0.205, 0.039, 0.008, 0.06, 0.042, 0.074]


def test_bh_matches_scipy() -> None:
    """Benjamini-Hochberg equals scipy.stats.false_discovery_control, in input order."""
    # Act
    adjusted = adjust_p_values(P, "bh")

    # Assert
    np.testing.assert_allclose(adjusted, false_discovery_control(P))


def test_holm_and_bonferroni_match_the_textbook() -> None:
    """Holm is the step-down running maximum; Bonferroni multiplies by m, capped at 1."""
    # Arrange
    p = [0.01, 0.02, 0.03, 0.04, 0.05]

    # Act / Assert
    np.testing.assert_allclose(adjust_p_values(p, "holm"), [0.05, 0.08, 0.09, 0.09, 0.09])
    np.testing.assert_allclose(adjust_p_values(p, "bonferroni"), [0.05, 0.1, 0.15, 0.2, 0.25])
    np.testing.assert_allclose(adjust_p_values(p, "none"), p)


def test_empty_input_gives_empty_output() -> None:
    """No p-values, nothing to adjust."""
    # Act / Assert
    assert adjust_p_values([], "bh").size == 0


@settings(derandomize=True, max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=40))
def test_corrections_are_ordered(p: list[float]) -> None:
    """Raw <= BH <= Holm <= Bonferroni <= 1 for every p-value."""
    # Act
    bh, holm, bonf = (adjust_p_values(p, m) for m in ("bh", "holm", "bonferroni"))

    # Assert
    raw = np.asarray(p)
    assert np.all(raw <= bh + 1e-12)
    assert np.all(bh <= holm + 1e-12)
    assert np.all(holm <= bonf + 1e-12)
    assert np.all(bonf <= 1.0)


@pytest.mark.parametrize(
    ("p", "method", "field"),
    [
        pytest.param([0.5, 1.5], "bh", "p_values", id="above-one"),
        pytest.param([float("nan")], "bh", "p_values", id="nan"),
        pytest.param([0.5], "sidak", "method", id="method"),
    ],
)
def test_bad_input_names_the_field(p: list[float], method: str, field: str) -> None:
    """Out-of-range p-values and unknown methods raise InvalidInput naming the field."""
    # Act / Assert
    with pytest.raises(InvalidInput, match=field) as err:
        adjust_p_values(p, method)  # type: ignore[arg-type]
    assert err.value.field == field
