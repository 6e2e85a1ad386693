"""Default choice of test: kind classification and the rule table of the docstring."""

from __future__ import annotations

import numpy as np
import pytest
from _summaries import categorical, numeric_pair

from fedloop.core.config import DriftConfig
from fedloop.monitoring.drift import DRIFT_TESTS, DriftTest, choose_rule, column_kind


def test_column_kinds() -> None:
    """Two values make a column binary whatever its type; otherwise the summary kind counts."""
    # Arrange
    rng = np.random.default_rng(0)
    flags = numeric_pair([0.0, 1.0] * 50, [1.0, 0.0, 0.0] * 30)
    amounts = numeric_pair(rng.normal(size=200), rng.normal(size=200))
    two = (categorical(["a", "b"] * 5), categorical(["b"] * 5))
    three = (categorical(["a", "b"] * 5), categorical(["c"] * 5))

    # Act / Assert
    assert column_kind(*flags) == "binary"
    assert column_kind(*amounts) == "numeric"
    assert column_kind(*two) == "binary"
    assert column_kind(*three) == "categorical"


def test_almost_binary_numeric_column_is_numeric() -> None:
    """One value strictly between the minimum and the maximum makes a column numeric."""
    # Arrange
    reference, current = numeric_pair([0.0, 1.0] * 500 + [0.5], [0.0, 1.0] * 500)

    # Act / Assert
    assert column_kind(reference, current) == "numeric"


@pytest.mark.parametrize(
    ("kind", "test", "effect_test", "threshold"),
    [
        pytest.param("numeric", "ks", "wasserstein", 0.1, id="numeric"),
        pytest.param("binary", "ztest", None, 0.1, id="binary"),
        pytest.param("categorical", "chi2", "jensen_shannon", 0.1, id="categorical"),
    ],
)
def test_default_rules(kind: str, test: str, effect_test: str | None, threshold: float) -> None:
    """'auto' picks KS+Wasserstein, Z-test+Cohen's h and chi-square+Jensen-Shannon."""
    # Act
    rule = choose_rule(kind, DriftConfig())  # type: ignore[arg-type]

    # Assert
    assert rule.test.name == test
    assert (rule.effect_test.name if rule.effect_test else None) == effect_test
    assert rule.threshold == threshold


@pytest.mark.parametrize(
    ("overrides", "kind", "test", "threshold"),
    [
        pytest.param({"numeric_test": "psi"}, "numeric", "psi", 0.2, id="numeric-psi"),
        pytest.param({"numeric_test": "chi2"}, "numeric", "chi2", 0.1, id="numeric-chi2"),
        pytest.param(
            {"numeric_test": "wasserstein", "min_effect_numeric": 0.3},
            "numeric",
            "wasserstein",
            0.3,
            id="numeric-wasserstein",
        ),
        pytest.param(
            {"categorical_test": "jensen_shannon"},
            "categorical",
            "jensen_shannon",
            0.1,
            id="categorical-js",
        ),
        pytest.param({"binary_test": "chi2"}, "binary", "chi2", 0.1, id="binary-chi2"),
    ],
)
def test_configured_rules(
    overrides: dict[str, object], kind: str, test: str, threshold: float
) -> None:
    """A configured test replaces the default, with its own threshold."""
    # Act
    rule = choose_rule(kind, DriftConfig(**overrides))  # type: ignore[arg-type]

    # Assert
    assert (rule.test.name, rule.threshold) == (test, threshold)


def test_registry_holds_every_test() -> None:
    """DRIFT_TESTS has the six tests, each a DriftTest under its own name."""
    # Act / Assert
    assert sorted(DRIFT_TESTS) == ["chi2", "jensen_shannon", "ks", "psi", "wasserstein", "ztest"]
    assert all(isinstance(t, DriftTest) and t.name == n for n, t in DRIFT_TESTS.items())
